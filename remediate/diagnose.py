"""`remediate diagnose`: the seed's diagnostic as one read-only pass per host, over that host's one connection."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from . import celery as cel
from .facts import compose as cf
from .inputs import resources, templating
from .core.errors import RemediateError, StepError, Unreachable
from .inputs.inventory import Host, Inventory
from .steps.celery import SourceTree, _parse_registered
from .steps.compose import exec_action, run_query
from .transport.base import Transport

DEFAULTS = {
    "compose_files": [], "backend_service": "backend", "beat_service": "celery_beat",
    "worker_service": "celery_worker", "celery_app": "edms", "source_dir": "backend",
    "beat_scheduler": cel.DATABASE_SCHEDULER,
}
# Only when beat's container cannot say (templates/celery_beat_probe.py.j2): celery's Scheduler.sync_every (180 s,
# unchanged from 5.4.0 to 5.7.0) plus the DatabaseScheduler's 5 s tick, and the finding says it was assumed.
UNKNOWN_LAG = timedelta(seconds=185)
BANNER = re.compile(r"scheduler -> (\S+)")


@dataclass(frozen=True)
class Finding:
    """One thing diagnose noticed: a problem (exit 2), a warning (no effect on the exit code) or info."""

    severity: str
    code: str
    message: str


@dataclass(frozen=True)
class HostDiagnosis:
    """Everything diagnose saw on one host."""

    host: str
    findings: tuple[Finding, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def problems(self) -> tuple[Finding, ...]:
        """Findings that make the host unhealthy."""
        return tuple(f for f in self.findings if f.severity == "problem")


def diagnose_host(host: Host, transport: Transport, extra: Mapping[str, Any] | None = None) -> HostDiagnosis:
    """Read-only: containers, beat's scheduler, schedules vs rows, task health, registrations, stale files."""
    v = {**DEFAULTS, **host.vars, **(extra or {})}
    findings: list[Finding] = []
    facts: dict[str, Any] = {}

    def add(severity: str, code: str, message: str) -> None:
        findings.append(Finding(severity, code, message))

    try:
        if not v.get("compose_dir"):
            raise StepError("the compose_dir variable is not set for this host")
        project = cf.Project(str(v["compose_dir"]), tuple(v.get("compose_files") or ()), v.get("compose_project"))
        compose = cf.detect(transport)
        model = cf.gather_model(transport, compose, project)
        beat, worker, backend = v["beat_service"], v["worker_service"], v["backend_service"]
        containers: dict[str, Any] = {}
        beat_started = None
        project_state = cf.gather_containers(transport, model.name)  # every service's containers in one round trip
        for name in model.services:
            service_state = cf.ServiceState(project_state.now,
                                            tuple(c for c in project_state.containers if c.service == name))
            running = [c for c in service_state.containers if c.running]
            containers[name] = [c.describe() for c in service_state.containers] or ["no container"]
            if not running:
                add("problem", "container_down", f"{name}: not running ({'; '.join(containers[name])})")
            elif any(c.health == "unhealthy" for c in running):
                add("problem", "container_unhealthy", f"{name}: unhealthy")
            if name == beat and running:
                beat_started = max(c.started_at for c in running if c.started_at)
                c = max(running, key=lambda c: c.started_at or service_state.now)
                logs = transport.run(["docker", "logs", "--since", c.started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if c.started_at else "0", c.id])
                found = BANNER.findall(logs.out + logs.err)
                facts["beat_banner_scheduler"] = found[-1] if found else None
        facts["containers"] = containers
        now = None

        if beat in model.services:
            command = model.services[beat].command
            if any(a in ("-S", "--scheduler") or a.startswith("--scheduler=") for a in command):
                add("problem", "beat_scheduler_forced", f"{beat}'s command forces a scheduler: {' '.join(command)}")
        banner = facts.get("beat_banner_scheduler")
        if banner and "DatabaseScheduler" not in banner:
            add("problem", "beat_scheduler", f"{beat} runs {banner}, not django_celery_beat's DatabaseScheduler: "
                                             "PeriodicTask rows never get last_run_at")

        templates = resources.template_path()
        script = templating.render_file("celery_state.py.j2", templates, v)
        # the settings beat really loads are read in beat's own container: the backend may run an older image
        query_service = beat if beat_started is not None else backend if backend in model.services else beat
        app_env = {"REMEDIATE_CELERY_APP": str(v["celery_app"])}
        state = run_query(transport, exec_action(compose, project, query_service, ("python", "manage.py", "shell"),
                                                 app_env, script), f"state query in {query_service}")
        # what this host's celery and django-celery-beat do with each enabled row, and when beat saves runs
        probe = None
        try:
            doc = run_query(transport, exec_action(
                compose, project, query_service, ("python", "manage.py", "shell"),
                {**app_env, "REMEDIATE_BEAT_SCHEDULER": str(v["beat_scheduler"])},
                templating.render_file("celery_beat_probe.py.j2", templates, v)), f"beat probe in {query_service}")
            probe = cel.parse_beat_probe(doc)
            if probe.error:
                add("warning", "beat_probe", f"{query_service}: {probe.error}")
                probe = None
        except StepError as exc:
            add("warning", "beat_probe", f"{query_service} could not say what its beat does with each PeriodicTask: {exc}")
        if probe is not None:
            facts["beat"] = {"versions": dict(probe.versions), "scheduler": probe.scheduler, "effective": probe.effective,
                             "sync_every": probe.sync_every, "sync_every_tasks": probe.sync_every_tasks,
                             "max_interval": probe.max_interval, "sync_lag": probe.lag().total_seconds(),
                             "lag": probe.lag_words(), "asked": query_service}
        facts["settings"] = state.get("settings")
        # the module beat's process loaded (from environment:, an env_file, .env, the image or code) and its file
        answer_of: Mapping[str, Any] = cast(Mapping[str, Any], state)
        module, module_file = answer_of.get("settings_module"), answer_of.get("settings_file")
        facts["settings_module"], facts["settings_file"] = module, module_file
        loaded = f"{module}" + (f" ({module_file} in {query_service})" if module_file else "")
        facts["app"] = {k: v2 for k, v2 in state.get("app", {}).items() if k != "beat_schedule"}
        now = cel.parse_time(state.get("now"))
        setting = (state.get("settings") or {}).get("CELERY_BEAT_SCHEDULER")
        if not setting or "DatabaseScheduler" not in str(setting):
            add("problem", "beat_scheduler_setting",
                f"CELERY_BEAT_SCHEDULER is {setting!r} in {loaded}: beat falls back to "
                f"{state.get('app', {}).get('beat_scheduler')}")
        elif "DatabaseScheduler" not in str(state.get("app", {}).get("beat_scheduler")):
            add("problem", "beat_scheduler_code", f"settings say {setting} but app.conf.beat_scheduler is "
                                                  f"{state['app']['beat_scheduler']} (set in code)")
        code_schedule = state.get("app", {}).get("beat_schedule") or {}
        rows = state.get("periodic_tasks") or []
        if code_schedule and rows:
            add("warning", "dual_configuration",
                f"{len(code_schedule)} schedule(s) in code (app.conf.beat_schedule) and {len(rows)} PeriodicTask row(s): "
                "with the DatabaseScheduler the rows rule; keep one source")

        tasks = cel.parse_tasks(rows)
        lag = probe.lag() if probe is not None else UNKNOWN_LAG
        health = cel.assess(tasks, now or cf.parse_time("2000-01-01T00:00:00Z"), beat_started, lag, probe)  # type: ignore[arg-type]
        facts["periodic_tasks"] = [
            {"name": h.task.name, "task": h.task.task, "schedule": h.task.schedule_words, "enabled": h.task.enabled,
             "last_run_at": cel.iso(h.task.last_run_at), "total_run_count": h.task.total_run_count,
             "last_due": cel.iso(h.last_due) if h.last_due else None, "next_due": cel.iso(h.next_due),
             "status": h.status, "detail": h.detail} for h in health
        ]
        for h in health:
            if h.status in ("never_run", "overdue"):
                add("problem", h.status, f"PeriodicTask {h.task.name!r}: {h.detail}")
            elif h.status == "never_fires":
                add("warning", "never_fires", f"PeriodicTask {h.task.name!r}: {h.detail}")
        for verdict in probe.rows if probe is not None else ():
            if probe is not None and verdict.outcome != "ok" and not verdict.never_fires:
                # a row that could fire but that this beat cannot schedule; beat is down already when it runs
                # the probed scheduler and dies on it
                severity = "problem" if verdict.outcome == "dies" and probe.runs_probed else "warning"
                add(severity, "beat_row", f"PeriodicTask {verdict.name!r}: {probe.words(verdict)}")
        facts["task_results"] = state.get("task_results")

        files = SourceTree(f"{project.dir}/{v['source_dir']}").gather(transport)
        modules = cel.find_unimported_task_modules(files)
        for m in modules:
            add("problem", "unimported_task_module",
                f"{m.module} defines {', '.join(t.rsplit('.', 1)[-1] for t in m.tasks)} but nothing imports it when "
                f"{m.app_config_class} loads (autodiscovery only imports tasks.py)")
        referenced = sorted({t.task for t in tasks} | {e.get("task") for e in code_schedule.values() if e.get("task")})
        if worker in model.services:
            reg = exec_action(compose, project, worker,
                              ("celery", "-A", str(v["celery_app"]), "inspect", "registered", "--json", "--timeout", "5"), {}, None)
            answer = transport.run(reg.argv, timeout=60)
            registered = _parse_registered(answer.out) if answer.ok else None
            if registered is None:
                add("problem", "worker_silent", f"{worker} did not answer `celery inspect registered`")
            else:
                missing = cel.unregistered(referenced, registered, probe.builtin_tasks if probe is not None else None)
                facts["registered_tasks"] = sorted(registered)
                if missing:
                    add("problem", "unregistered_tasks", f"scheduled but not registered with {worker}: {', '.join(missing)}")
        if beat in model.services and beat_started is not None:
            _stale_files(transport, compose, project, beat, state, beat_started, banner, add)
    except Unreachable as exc:
        return HostDiagnosis(host.name, (), facts, f"unreachable: {exc}")
    except RemediateError as exc:
        return HostDiagnosis(host.name, tuple(findings), facts, str(exc))
    return HostDiagnosis(host.name, tuple(findings), facts)


def _stale_files(transport: Transport, compose: cf.Compose, project: cf.Project, beat: str, state: Mapping[str, Any],
                 started: Any, banner: str | None, add: Any) -> None:
    schedule = str(state.get("app", {}).get("beat_schedule_filename") or "celerybeat-schedule")
    candidates = [schedule, schedule + ".db", "celerybeat.pid", "/tmp/celerybeat.pid"]
    script = 'for f in "$@"; do [ -e "$f" ] && echo "$(stat -c %Y "$f") $f"; done; exit 0'
    probe = exec_action(compose, project, beat, ("sh", "-c", script, "sh", *candidates), {}, None)
    result = transport.run(probe.argv, timeout=60)
    for line in result.out.splitlines():
        mtime, _, path = line.partition(" ")
        if not mtime.isdigit():
            continue
        if path.endswith(".pid") and int(mtime) < started.timestamp() - 5:
            add("warning", "stale_pid_file", f"{beat}: {path} is older than the running container")
        elif "celerybeat-schedule" in path and banner and "DatabaseScheduler" in banner:
            add("warning", "stale_schedule_file", f"{beat}: {path} is left from the PersistentScheduler; unused now")


def diagnose(
    inventory: Inventory, hosts: tuple[Host, ...], make_transport: Any, forks: int = 10, audit: Any = None
) -> tuple[HostDiagnosis, ...]:
    """Diagnose hosts in parallel, one connection each; with `audit` (a RunAudit), each host's outcome is recorded."""
    def one(host: Host) -> HostDiagnosis:
        transport = make_transport(host)
        try:
            result = diagnose_host(host, transport)
        finally:
            transport.close()
        if audit is not None:
            audit.record(
                "diagnosis", host.name, ssh_user=None if host.is_local else host.user,
                address=None if host.is_local else f"{host.address}:{host.port}",
                host_key_fingerprint=getattr(transport, "host_key_fingerprint", None),
                client_key_fingerprint=getattr(transport, "client_key_fingerprint", None),
                problems=len(result.problems), error=result.error,
                findings=[f"{f.severity} {f.code}: {f.message}" for f in result.findings],
            )
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
        return tuple(pool.map(one, hosts))


def exit_code(results: tuple[HostDiagnosis, ...]) -> int:
    """0 healthy, 2 problems found, 1 errors (unreachable host, failed probe)."""
    if any(r.error for r in results):
        return 1
    return 2 if any(r.problems for r in results) else 0


def render_text(results: tuple[HostDiagnosis, ...]) -> str:
    """What a person reads."""
    lines = []
    for r in results:
        lines.append(f"== {r.host}")
        for name, states in (r.facts.get("containers") or {}).items():
            lines.append(f"  container {name}: {'; '.join(states)}")
        if "beat_banner_scheduler" in r.facts:
            lines.append(f"  beat banner: scheduler -> {r.facts['beat_banner_scheduler']}")
        if r.facts.get("beat"):
            b = r.facts["beat"]
            lines.append(f"  beat's own packages ({b.get('asked')}): " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in b["versions"].items())
                         + f"; {b.get('lag')}")
        if r.facts.get("settings"):
            lines.append(f"  settings.CELERY_BEAT_SCHEDULER = {r.facts['settings'].get('CELERY_BEAT_SCHEDULER')!r}; "
                         f"app.conf.beat_scheduler = {r.facts.get('app', {}).get('beat_scheduler')!r}")
        for t in r.facts.get("periodic_tasks") or ():
            lines.append(f"  task {t['name']!r} [{t['status']}] {t['schedule']}, enabled={t['enabled']}, "
                         f"last run {t['last_run_at']}, runs {t['total_run_count']}, next due {t['next_due']}")
        results_info = r.facts.get("task_results") or {}
        if results_info.get("available"):
            newest = results_info.get("newest") or {}
            lines.append(f"  task results: {results_info.get('count')} (newest: {newest.get('task_name', '-')} "
                         f"{newest.get('status', '')} {newest.get('date_done', '')})")
        for f in r.findings:
            lines.append(f"  {f.severity.upper():8} {f.code}: {f.message}")
        if r.error:
            lines.append(f"  ERROR    {r.error}")
        if not r.findings and not r.error:
            lines.append("  healthy")
    code = exit_code(results)
    lines.append({0: "healthy", 1: "errors", 2: "problems found"}[code] + f"; exit {code}")
    return "\n".join(lines)


def render_json(results: tuple[HostDiagnosis, ...]) -> str:
    """One JSON document."""
    return json.dumps({
        "hosts": {
            r.host: {
                "status": "error" if r.error else "problems" if r.problems else "healthy",
                "error": r.error,
                "problems": [f.__dict__ for f in r.findings if f.severity == "problem"],
                "warnings": [f.__dict__ for f in r.findings if f.severity == "warning"],
                "facts": r.facts,
            } for r in results
        },
        "exit_code": exit_code(results),
    }, indent=2, default=str)
