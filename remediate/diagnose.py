"""`remediate diagnose`: the seed's diagnostic as one read-only pass per host (facts/celery.py gathers), judged
by a pure function of what it saw (`judge`); drift sorts the same findings into its health checks."""
from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from .celery import commands
from .celery.health import TaskHealth, assess
from .celery.schedules import iso, parse_time
from .celery.state_faults import (Evidence, future_rows, migrations_evidence, result_backend_evidence, timezone_evidence,
                                  unseen_evidence, unseen_rows)
from .celery.tasks import find_unimported_task_modules, unregistered
from .core.audit import RunAudit
from .core.results import ExitCode
from .facts import compose as cf
from .facts.celery import CeleryFacts, facts_json, gather
from .inputs.inventory import Host
from .transport.base import Transport

# Only when beat's container cannot say (templates/celery_beat_probe.py.j2): celery's Scheduler.sync_every (180 s,
# unchanged from 5.4.0 to 5.7.0) plus the DatabaseScheduler's 5 s tick, and the finding says it was assumed.
UNKNOWN_LAG = timedelta(seconds=185)
# a host whose state query gave no clock is judged at a time before any schedule's first due time
NO_CLOCK = datetime(2000, 1, 1, tzinfo=timezone.utc)


class Severity(enum.Enum):
    """How much a finding weighs: a problem makes the host unhealthy (exit 2), a warning is only shown."""

    PROBLEM = "problem"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One thing diagnose noticed: `code` is its stable id (a catalogue fault's id, `FAULTS`), `evidence` what
    was seen, quoted (the value, the log line, the counts)."""

    severity: Severity
    code: str
    message: str
    evidence: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """As `--format json` shows it."""
        doc: dict[str, Any] = {"severity": self.severity.value, "code": self.code, "message": self.message}
        if self.evidence:
            doc["evidence"] = list(self.evidence)
        return doc


@dataclass(frozen=True)
class HostDiagnosis:
    """Everything diagnose saw and judged on one host."""

    host: str
    findings: tuple[Finding, ...] = ()
    facts: CeleryFacts = field(default_factory=CeleryFacts)
    error: str = ""
    tasks: tuple[TaskHealth, ...] = ()  # each PeriodicTask's state, as judged
    duration: float | None = None  # seconds the host's pass took

    @property
    def problems(self) -> tuple[Finding, ...]:
        """Findings that make the host unhealthy."""
        return tuple(f for f in self.findings if f.severity is Severity.PROBLEM)


@dataclass(frozen=True)
class DiagnoseReport:
    """A diagnose run; it owns its exit code."""

    hosts: tuple[HostDiagnosis, ...]

    def exit_code(self) -> ExitCode:
        """0 healthy, 2 problems found, 1 errors (unreachable host, failed probe)."""
        if any(r.error for r in self.hosts):
            return ExitCode.FAILED
        return ExitCode.PROBLEMS if any(r.problems for r in self.hosts) else ExitCode.OK


def judge(facts: CeleryFacts) -> tuple[tuple[Finding, ...], tuple[TaskHealth, ...]]:
    """The findings and each PeriodicTask's state, from what one pass saw (pure); a part not seen says nothing:
    the write-ups' findings, then one judgement per catalogue fault (`FAULTS`)."""
    if facts.unreachable:
        return (), ()
    findings, health = _judge_seeds(facts)
    return findings + tuple(f for fault in FAULTS for f in fault.judge(facts)), health


def _judge_seeds(facts: CeleryFacts) -> tuple[tuple[Finding, ...], tuple[TaskHealth, ...]]:
    """The write-ups' findings (beat's scheduler, task modules), containers, and task health."""
    out: list[Finding] = []

    def add(severity: Severity, code: str, message: str) -> None:
        out.append(Finding(severity, code, message))

    problem, warning = Severity.PROBLEM, Severity.WARNING
    beat = facts.beat
    for name, containers in (facts.services or {}).items():
        running = [c for c in containers if c.running]
        if not running:
            states = [c.describe() for c in containers] or ["no container"]
            add(problem, "container_down", f"{name}: not running ({'; '.join(states)})")
        elif any(c.health == "unhealthy" for c in running):
            add(problem, "container_unhealthy", f"{name}: unhealthy")
    command = facts.beat_command
    if command is not None and any(a in ("-S", "--scheduler") or a.startswith("--scheduler=") for a in command):
        add(problem, "beat_scheduler_forced", f"{beat}'s command forces a scheduler: {' '.join(command)}")
    banner = facts.banner
    if banner and "DatabaseScheduler" not in banner:
        add(problem, "beat_scheduler", f"{beat} runs {banner}, not django_celery_beat's DatabaseScheduler: "
                                       "PeriodicTask rows never get last_run_at")
    state, probe = facts.state, facts.probe
    if state is None:
        return tuple(out), ()
    if facts.probe_warning:
        add(warning, "beat_probe", facts.probe_warning)
    setting = (state.settings or {}).get("CELERY_BEAT_SCHEDULER")
    if not setting or "DatabaseScheduler" not in str(setting):
        add(problem, "beat_scheduler_setting", f"CELERY_BEAT_SCHEDULER is {setting!r} in {facts.settings_loaded()}: "
                                               f"beat falls back to {state.app.get('beat_scheduler')}")
    elif "DatabaseScheduler" not in str(state.app.get("beat_scheduler")):
        add(problem, "beat_scheduler_code", f"settings say {setting} but app.conf.beat_scheduler is "
                                            f"{state.app['beat_scheduler']} (set in code)")
    code_schedule = state.code_schedule
    if code_schedule and state.tasks:
        add(warning, "dual_configuration",
            f"{len(code_schedule)} schedule(s) in code (app.conf.beat_schedule) and {len(state.tasks)} PeriodicTask "
            "row(s): with the DatabaseScheduler the rows rule; keep one source")
    lag = probe.lag() if probe is not None else UNKNOWN_LAG
    loaded = facts.beat_events.loaded(facts.beat_started) if facts.beat_events is not None else None
    health = assess(state.tasks, state.now or NO_CLOCK, facts.beat_started, lag, probe, loaded)
    for h in health:
        if h.status in ("never_run", "overdue"):
            add(problem, h.status, f"PeriodicTask {h.task.name!r}: {h.detail}")
        elif h.status == "never_fires":
            add(warning, "never_fires", f"PeriodicTask {h.task.name!r}: {h.detail}")
    for verdict in probe.rows if probe is not None else ():
        if probe is not None and verdict.outcome != "ok" and not verdict.never_fires:
            # a row that could fire but that this beat cannot schedule; beat is down already when it runs
            # the probed scheduler and dies on it
            severity = problem if verdict.outcome == "dies" and probe.runs_probed else warning
            add(severity, "beat_row", f"PeriodicTask {verdict.name!r}: {probe.words(verdict)}")
    if facts.source is None:
        return tuple(out), health
    for m in find_unimported_task_modules(facts.source):
        add(problem, "unimported_task_module",
            f"{m.module} defines {', '.join(t.rsplit('.', 1)[-1] for t in m.tasks)} but nothing imports it when "
            f"{m.app_config_class} loads (autodiscovery only imports tasks.py)")
    if facts.worker_present:
        if facts.registered is None:
            add(problem, "worker_silent", f"{facts.worker} did not answer `celery inspect registered`")
        else:
            referenced = sorted({t.task for t in state.tasks} | {e.get("task") for e in code_schedule.values() if e.get("task")})
            missing = unregistered(referenced, facts.registered, probe.builtin_tasks if probe is not None else None)
            if missing:
                add(problem, "unregistered_tasks", f"scheduled but not registered with {facts.worker}: {', '.join(missing)}")
    started = facts.beat_started
    for mtime, path in facts.stale:
        if started is not None and path.endswith(".pid") and mtime < started.timestamp() - 5:
            add(warning, "stale_pid_file", f"{beat}: {path} is older than the running container")
        elif "celerybeat-schedule" in path and banner and "DatabaseScheduler" in banner:
            add(warning, "stale_schedule_file", f"{beat}: {path} is left from the PersistentScheduler; unused now")
    return tuple(out), health


# --- the catalogue (issue 16; README "The catalogue") ------------------------------------------------------
# One fault = one row of FAULTS: its stable id (the code of every finding it makes, the drift health check it
# reports under, `lab/break` names it with dashes), the playbook that fixes it, and its judgement: a pure
# function of the pass's facts that returns nothing when the fault is absent or a part it needs was not seen.


@dataclass(frozen=True)
class Fault:
    """One fault of the catalogue."""

    id: str
    playbook: str  # playbooks/<playbook>.yml fixes it; site.yml imports it
    title: str
    judge: Callable[[CeleryFacts], tuple[Finding, ...]]


PIDFILE_EXISTS = re.compile(r"Pidfile \((?P<path>[^)]*)\) already exists")


def _mount_words(model: cf.Model, service: str, path: str) -> str:
    """Where a path in a service's container lives: on which mount, or the container's own layer."""
    m = cf.mount_of(model.service(service).mounts, path)
    if m is None:
        return f"{path} is in the container's own layer, which docker's restart of the same container keeps"
    if m.type == "tmpfs":
        return f"{path} is on a tmpfs at {m.target} (emptied on each start)"
    return f"{path} is on the {m.type} {m.source or '(anonymous)'} at {m.target}, which outlives the container"


def _beat_pidfile(facts: CeleryFacts) -> tuple[Finding, ...]:
    """Beat refuses to start on a pidfile an unclean death left (celery 5.4.0: exit 73, a restart loop)."""
    model = facts.model
    if model is None or facts.beat not in model.services:
        return ()
    command = commands.parse(model.services[facts.beat].command)
    option = command.get("--pidfile") if command is not None else None
    containers = (facts.services or {}).get(facts.beat, ())
    lines = facts.beat_log.splitlines()
    refused = [i for i, line in enumerate(lines) if PIDFILE_EXISTS.search(line)]
    started = [i for i, line in enumerate(lines) if "beat: Starting" in line]
    # its last start refused on the pidfile (docker shows it running for a moment between attempts)
    last_refused = bool(refused) and (not started or refused[-1] > started[-1])
    looping = [c for c in containers if c.status == "restarting" or (not c.running and c.exit_code == 73)
               or (c.restart_count and last_refused)]
    logged = [m.group(0) for m in map(PIDFILE_EXISTS.search, lines) if m] if last_refused else []
    path = option.value if option is not None and option.value else None
    where = _mount_words(model, facts.beat, path) if path else ""
    if looping and (logged or any(c.exit_code == 73 for c in looping)):
        evidence = tuple(f"container {c.name}: {c.status}, exit code {c.exit_code}, {c.restart_count} restart(s)"
                         if c.exit_code or not c.running else
                         f"container {c.name}: running for a moment between restart attempts, {c.restart_count} restart(s)"
                         for c in looping)
        evidence += tuple(dict.fromkeys(logged))[-1:] + ((f"command: {' '.join(command.argv)}", where) if command and path else ())
        return (Finding(Severity.PROBLEM, "beat_pidfile",
                        f"{facts.beat} cannot start: a pidfile left by an unclean death says it is already running"
                        + (f" ({path})" if path else ""), evidence),)
    if path and "tmpfs" not in where:
        version = facts.probe.versions.get("celery") if facts.probe is not None else None
        return (Finding(Severity.WARNING, "beat_pidfile",
                        f"{facts.beat} writes --pidfile {path}: after an unclean death (OOM kill, stop timeout) it "
                        "survives the restart; celery 5.4.0 then refuses to start (exit 73); 5.7.0 removes a pidfile "
                        "holding its own pid but refuses one holding another live pid (beat as PID 1 killed, then run "
                        "under `init: true` or a wrapper: pid 1 is alive)" + (f" (this beat runs celery {version})" if version else ""),
                        (f"command: {' '.join(command.argv) if command else ''}", where)),)
    return ()


def _worker_queues(facts: CeleryFacts, default: str) -> dict[str, tuple[str, ...]]:
    """The queues each worker service's command consumes (compose model)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, service in (facts.model.services if facts.model is not None else {}).items():
        command = commands.parse(service.command)
        queues = command.queues(default) if command is not None else None
        if queues is not None:
            out[name] = queues
    return out


def _unconsumed_queue(facts: CeleryFacts) -> tuple[Finding, ...]:
    """Tasks are sent to a queue no worker's command consumes: they wait in the broker forever."""
    q = facts.queues
    if q is None or not q.nodes or facts.model is None:
        return ()
    configured = _worker_queues(facts, q.default_queue)
    if not configured:
        return ()
    listened = {queue for queues in configured.values() for queue in queues}
    out = []
    for queue, senders in q.routed.items():
        if queue in listened or queue in q.consumed:
            continue
        out.append(Finding(Severity.PROBLEM, "unconsumed_queue",
                           f"tasks are sent to queue {queue!r}, which no worker consumes: {q.waiting(queue)} message(s) wait",
                           (f"sent there by: {', '.join(senders)}",
                            *(f"{name} consumes: {','.join(queues)} (command: {' '.join(facts.model.services[name].command)})"
                              for name, queues in configured.items()),
                            "workers answering: " + "; ".join(f"{n}: {','.join(qs) or 'nothing'}" for n, qs in q.nodes.items()),
                            f"messages waiting in {queue!r}: {q.lengths.get(queue)}")))
    return tuple(out)


def _two_beats(facts: CeleryFacts) -> tuple[Finding, ...]:
    """More than one beat runs: every periodic task is sent once per beat."""
    model = facts.model
    if model is None:
        return ()
    beats = []
    for name, service in model.services.items():
        command = commands.parse(service.command)
        if command is not None and command.runs_beat:
            # what runs now: a service that is down sends nothing (a replica count alone is not a running beat)
            running = sum(1 for c in (facts.services or {}).get(name, ()) if c.running)
            beats.append((name, service, running))
    if sum(n for _, _, n in beats) <= 1:
        return ()
    return (Finding(Severity.PROBLEM, "two_beats",
                    f"{sum(n for _, _, n in beats)} beats run: every periodic task is sent once by each",
                    tuple(f"{name}: {n} container(s), command: {' '.join(s.command)}" for name, s, n in beats)),)


def _worker_not_consuming(facts: CeleryFacts) -> tuple[Finding, ...]:
    """A worker answers but consumes none of the queues its command names, while messages wait there."""
    q = facts.queues
    if q is None or not q.nodes or facts.model is None:
        return ()
    configured = _worker_queues(facts, q.default_queue)
    stuck = [queue for queue in dict.fromkeys(x for qs in configured.values() for x in qs)
             if queue not in q.consumed and queue in q.routed]
    if not stuck:
        return ()
    return (Finding(Severity.PROBLEM, "worker_not_consuming",
                    f"the worker answers but consumes no {', '.join(repr(x) for x in stuck)}, which its command names: "
                    + ", ".join(f"{q.waiting(x)} message(s) wait in {x!r}" for x in stuck),
                    ("workers answering (active_queues): " + "; ".join(f"{n}: {','.join(qs) or 'nothing'}" for n, qs in q.nodes.items()),
                     *(f"{name} consumes: {','.join(queues)}" for name, queues in configured.items()),
                     *(f"messages waiting in {x!r}: {q.lengths.get(x)}" for x in stuck))),)


# catalogue2's faults (issue 16 items 3-6): the pure evidence is celery/state_faults.py's
def _finding(code: str, seen: Evidence | None) -> tuple[Finding, ...]:
    return () if seen is None else (Finding(Severity.PROBLEM, code, seen.message, seen.evidence),)


def _timezone(facts: CeleryFacts) -> tuple[Finding, ...]:
    """TIME_ZONE / USE_TZ / DJANGO_CELERY_BEAT_TZ_AWARE make beat read its last runs in the future."""
    state = facts.state
    if state is None or not state.settings:
        return ()
    return _finding("timezone", timezone_evidence(state.settings, state.app, state.doc.get("periodic_tasks") or (),
                                                  state.now))


def _unseen_change(facts: CeleryFacts) -> tuple[Finding, ...]:
    """An enabled row beat never loaded: PeriodicTasks.last_update was not bumped."""
    state, events = facts.state, facts.beat_events
    if state is None or events is None or state.now is None or facts.banner is None or "DatabaseScheduler" not in facts.banner:
        return ()
    probe = facts.probe
    schedulable = frozenset(v.name for v in probe.rows if v.outcome == "ok") if probe is not None else None
    tick = timedelta(seconds=probe.max_interval or 5) if probe is not None and probe.max_interval else timedelta(seconds=5)
    last_update = parse_time(state.doc.get("periodic_tasks_last_update"))
    ahead = frozenset(name for name, _, _ in future_rows(state.doc.get("periodic_tasks") or (), state.now))
    rows = unseen_rows(state.tasks, events, state.now, facts.beat_started, schedulable, last_update, tick, ahead)
    return _finding("unseen_change", unseen_evidence(rows, last_update))


def _migrations(facts: CeleryFacts) -> tuple[Finding, ...]:
    """django_celery_beat / django_celery_results migrations not applied."""
    state = facts.state
    if state is None:
        return ()
    # beat exited, or in docker's restart loop (a restart policy: "running" for a moment between attempts)
    beat = [c.describe() if not c.running else f"{c.name}: {c.status}, {c.restart_count} restart(s)"
            for c in (facts.services or {}).get(facts.beat, ())
            if not c.running or c.status == "restarting" or (c.restart_count and "does not exist" in facts.beat_log)]
    results = state.task_results or {}
    return _finding("migrations", migrations_evidence(state.doc.get("migrations"), "; ".join(beat), facts.beat_log,
                                                      "" if results.get("available") else str(results.get("error") or "")))


def _result_backend(facts: CeleryFacts) -> tuple[Finding, ...]:
    """The result backend is not django-db while django_celery_results is installed: TaskResult stays empty."""
    state = facts.state
    if state is None or not state.settings:
        return ()
    return _finding("result_backend", result_backend_evidence(state.settings, state.app, state.doc.get("installed") or {},
                                                              state.task_results))


FAULTS: tuple[Fault, ...] = (
    Fault("beat_pidfile", "celery-beat-pidfile", "stale beat pidfile", _beat_pidfile),
    Fault("unconsumed_queue", "celery-unconsumed-queue", "a queue no worker consumes", _unconsumed_queue),
    Fault("timezone", "celery-timezone", "time zone mismatch", _timezone),
    Fault("unseen_change", "celery-unseen-change", "schedule changes beat never sees", _unseen_change),
    Fault("migrations", "celery-migrations", "migrations not applied", _migrations),
    Fault("result_backend", "celery-result-backend", "result backend misconfigured", _result_backend),
    Fault("two_beats", "celery-two-beats", "two beats", _two_beats),
    Fault("worker_not_consuming", "celery-worker-not-consuming", "worker alive but not consuming", _worker_not_consuming),
)


def diagnose_host(host: Host, transport: Transport) -> HostDiagnosis:
    """Read-only: containers, beat's scheduler, schedules vs rows, task health, registrations, stale files."""
    facts = gather(transport, host.vars)
    findings, tasks = judge(facts)
    return HostDiagnosis(host.name, findings, facts, facts.error, tasks)


def diagnose(hosts: tuple[Host, ...], connect: Callable[[Host], Transport], forks: int = 10,
             audit: RunAudit | None = None) -> DiagnoseReport:
    """Diagnose hosts in parallel, one connection each; with `audit`, each host's outcome is recorded."""
    def one(host: Host) -> HostDiagnosis:
        started = time.monotonic()
        transport = connect(host)
        try:
            result = diagnose_host(host, transport)
        finally:
            transport.close()
        result = replace(result, duration=time.monotonic() - started)
        if audit is not None:
            audit.record(
                "diagnosis", host.name, **transport.identity().audit_fields(),
                problems=len(result.problems), error=result.error,
                findings=[f"{f.severity.value} {f.code}: {f.message}" for f in result.findings],
            )
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
        return DiagnoseReport(tuple(pool.map(one, hosts)))


def task_json(h: TaskHealth) -> dict[str, Any]:
    """One PeriodicTask's state as the JSON facts and drift's task list show it."""
    return {"name": h.task.name, "task": h.task.task, "schedule": h.task.schedule_words, "enabled": h.task.enabled,
            "last_run_at": iso(h.task.last_run_at), "total_run_count": h.task.total_run_count,
            "last_due": iso(h.last_due) if h.last_due else None, "next_due": iso(h.next_due),
            "status": h.status, "detail": h.detail}


def render_text(report: DiagnoseReport) -> str:
    """What a person reads."""
    lines = []
    for r in report.hosts:
        lines.append(f"== {r.host}")
        facts = r.facts
        for name, containers in (facts.services or {}).items():
            lines.append(f"  container {name}: {'; '.join([c.describe() for c in containers] or ['no container'])}")
        if facts.beat_started is not None:
            lines.append(f"  beat banner: scheduler -> {facts.banner}")
        if facts.probe is not None:
            p = facts.probe
            lines.append(f"  beat's own packages ({facts.asked}): "
                         + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in p.versions.items()) + f"; {p.lag_words()}")
        state = facts.state
        if state is not None and state.settings:
            lines.append(f"  settings.CELERY_BEAT_SCHEDULER = {state.settings.get('CELERY_BEAT_SCHEDULER')!r}; "
                         f"app.conf.beat_scheduler = {state.app.get('beat_scheduler')!r}")
        for t in map(task_json, r.tasks):
            lines.append(f"  task {t['name']!r} [{t['status']}] {t['schedule']}, enabled={t['enabled']}, "
                         f"last run {t['last_run_at']}, runs {t['total_run_count']}, next due {t['next_due']}")
        results_info: Mapping[str, Any] = (state.task_results if state is not None else None) or {}
        if results_info.get("available"):
            newest = results_info.get("newest") or {}
            lines.append(f"  task results: {results_info.get('count')} (newest: {newest.get('task_name', '-')} "
                         f"{newest.get('status', '')} {newest.get('date_done', '')})")
        for f in r.findings:
            lines.append(f"  {f.severity.value.upper():8} {f.code}: {f.message}")
            lines += [f"             | {e}" for e in f.evidence]
        if r.error:
            lines.append(f"  ERROR    {r.error}")
        if not r.findings and not r.error:
            lines.append("  healthy")
    code = report.exit_code()
    lines.append({0: "healthy", 1: "errors", 2: "problems found"}[int(code)] + f"; exit {int(code)}")
    return "\n".join(lines)


def render_json(report: DiagnoseReport) -> str:
    """One JSON document."""
    return json.dumps({
        "hosts": {
            r.host: {
                "status": "error" if r.error else "problems" if r.problems else "healthy",
                "error": r.error,
                "problems": [f.as_json() for f in r.findings if f.severity is Severity.PROBLEM],
                "warnings": [f.as_json() for f in r.findings if f.severity is Severity.WARNING],
                "facts": facts_json(r.facts, [task_json(h) for h in r.tasks]),
            } for r in report.hosts
        },
        "exit_code": int(report.exit_code()),
    }, indent=2, default=str)
