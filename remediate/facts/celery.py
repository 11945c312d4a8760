"""What a host's Celery says: the state query, beat's own probe, `celery inspect registered`, the source tree,
beat's leftover files, and the whole read-only pass diagnose and drift judge (`gather`).

Each question is asked here once, for the steps that plan or verify with it and for diagnose alike; what the
answers mean is celery/'s (pure).
"""
from __future__ import annotations

import io
import json
import posixpath
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..celery.beat import DATABASE_SCHEDULER, BeatProbe, parse_beat_probe
from ..celery.schedules import Task, parse_time, parse_tasks
from ..celery.state_faults import BeatEvents, parse_beat_events
from ..core.errors import RemediateError, StepError, Unreachable
from ..inputs import resources, templating
from ..transport.base import CommandResult, Transport
from . import compose as cf
from . import containers as fc
from .base import Probe
from .django import ShellQuery

# the variables diagnose reads, and their defaults (the shipped playbooks' defaults)
DEFAULTS: Mapping[str, Any] = {
    "compose_files": [], "backend_service": "backend", "beat_service": "celery_beat",
    "worker_service": "celery_worker", "celery_app": "edms", "source_dir": "backend",
    "beat_scheduler": DATABASE_SCHEDULER,
}
STATE_TEMPLATE = "celery_state.py.j2"
PROBE_TEMPLATE = "celery_beat_probe.py.j2"
# how much of a restarting or dead beat's log diagnose reads: celery 5.7.0 logs its traceback after the exception
# line a finding quotes (relation ... does not exist), a line per fragment, which pushed it out of 40 lines
BEAT_LOG_LINES = 300
QUEUES_TEMPLATE = "celery_queues.py.j2"
BANNER = re.compile(r"scheduler -> (\S+)")


@dataclass(frozen=True)
class CeleryState:
    """The state query's answer (templates/celery_state.py.j2): the settings and app.conf beat loads, every
    PeriodicTask row, TaskResult counts, and the host's clock."""

    settings: Mapping[str, Any] | None
    settings_module: str | None
    settings_file: str | None
    app: Mapping[str, Any]
    tasks: tuple[Task, ...]
    task_results: Mapping[str, Any] | None
    now: datetime | None
    doc: Mapping[str, Any] = field(default_factory=dict)  # the whole answer (the catalogue's faults read it)

    @property
    def code_schedule(self) -> Mapping[str, Any]:
        """app.conf.beat_schedule: schedules set in code."""
        schedule = self.app.get("beat_schedule")
        return schedule if isinstance(schedule, Mapping) else {}

    def results_since(self, task: str, any_backend: bool = False) -> int | None:
        """TaskResult rows of a task since the query's REMEDIATE_SINCE, when the django-db backend keeps them (or,
        `any_backend`, whenever the table is there: a row shows a worker ran the task, whatever this container's
        own app.conf says)."""
        results = self.task_results or {}
        if not results.get("available"):
            return None
        if not any_backend and not str(self.app.get("result_backend", "")).startswith("django-db"):
            return None
        return int((results.get("since") or {}).get(task, 0))

    def row_runs(self) -> tuple[dict[str, tuple[datetime, ...]], str]:
        """The asked rows' TaskResult `date_done` times (REMEDIATE_RESULTS_OF), and why they cannot be told ("")."""
        rows = self.doc.get("row_results")
        if not isinstance(rows, Mapping):
            return {}, "the state query listed no rows' runs"
        if rows.get("error"):
            return {}, f"TaskResult rows could not be read: {rows['error']}"
        if not rows.get("extended"):
            return {}, ("TaskResults name no PeriodicTask here (result_extended is off: set CELERY_RESULT_EXTENDED = "
                        "True): one row's runs cannot be told from another's")
        done = rows.get("done") or {}
        return {name: tuple(t for t in (parse_time(v) for v in times) if t is not None)
                for name, times in done.items()}, ""


def parse_state(doc: Mapping[str, Any]) -> CeleryState:
    """The state query's JSON line as a CeleryState."""
    app = doc.get("app")
    return CeleryState(doc.get("settings"), doc.get("settings_module"), doc.get("settings_file"),
                       app if isinstance(app, Mapping) else {}, parse_tasks(doc.get("periodic_tasks") or []),
                       doc.get("task_results"), parse_time(doc.get("now")), doc)


def state_query(compose: cf.Compose, project: cf.Project, service: str, app: str, variables: Mapping[str, Any],
                template_path: tuple[str, ...], manage: str = "manage.py") -> ShellQuery:
    """The state query in a service's container (REMEDIATE_SINCE: TaskResult rows counted since then)."""
    script = templating.render_file(STATE_TEMPLATE, template_path, variables)
    return ShellQuery(compose, project, service, script, {"REMEDIATE_CELERY_APP": app}, manage)


def beat_query(compose: cf.Compose, project: cf.Project, service: str, app: str, variables: Mapping[str, Any],
               template_path: tuple[str, ...], scheduler: str | None = None, manage: str = "manage.py") -> ShellQuery:
    """Beat's own probe in a service's container: its versions, sync settings and a verdict per enabled row."""
    script = templating.render_file(PROBE_TEMPLATE, template_path, variables)
    env = {"REMEDIATE_CELERY_APP": app, **({"REMEDIATE_BEAT_SCHEDULER": scheduler} if scheduler is not None else {})}
    return ShellQuery(compose, project, service, script, env, manage)


def ask_beat(transport: Transport, query: ShellQuery) -> BeatProbe:
    """What beat's own container says (StepError when the probe printed no answer)."""
    return parse_beat_probe(query.ask(transport, f"beat probe in {query.service}"))


def registered_argv(compose: cf.Compose, project: cf.Project, worker: str, app: str) -> tuple[str, ...]:
    """`celery inspect registered --json` in the worker's container."""
    return compose.exec_argv(project, worker, ("celery", "-A", app, "inspect", "registered", "--json", "--timeout", "5"))


def registered(result: CommandResult) -> set[str] | None:
    """The task names a worker registered, from `inspect registered`'s result; None when it did not answer."""
    return parse_registered(result.out) if result.ok else None


def parse_registered(stdout: str) -> set[str] | None:
    """Task names from `celery inspect registered --json` (one JSON object: node -> list)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            names = set()
            for tasks in doc.values():
                for entry in tasks or ():
                    names.add(str(entry).split(" ")[0])
            return names
    return None


def beat_log_stamped(transport: Transport, container: fc.Container) -> str:
    """Beat's log lines about its schedule since its container started, with the engine's UTC timestamps."""
    text = fc.logs_since(transport, container, timestamps=True)
    return "\n".join(line for line in text.splitlines()
                     if "beat: Starting" in line or "Schedule changed" in line or "Sending due task" in line)


@dataclass(frozen=True)
class QueueFacts:
    """The queue query's answer (templates/celery_queues.py.j2): where tasks are sent, what each worker node
    consumes, how many messages wait in each queue, TaskResult rows since REMEDIATE_SINCE."""

    default_queue: str
    routed: Mapping[str, tuple[str, ...]]  # queue -> what sends there (task_default_queue, a route, a row)
    nodes: Mapping[str, tuple[str, ...]] | None  # worker node -> the queues it consumes; None: nobody answered
    lengths: Mapping[str, int | None]  # queue -> messages waiting (None: the broker would not say)
    results_since: Mapping[str, int] | None = None  # task name -> TaskResult rows since REMEDIATE_SINCE
    now: datetime | None = None
    # the enabled PeriodicTask rows when the app's beat_scheduler is django-celery-beat's (beat's schedule then);
    # None: another scheduler, or no django-celery-beat
    beat_rows: tuple[Task, ...] | None = None

    @property
    def consumed(self) -> frozenset[str]:
        """Every queue some answering node consumes."""
        return frozenset(q for qs in (self.nodes or {}).values() for q in qs)

    def unconsumed(self) -> tuple[str, ...]:
        """Queues tasks are sent to that no answering node consumes (none when no node answered)."""
        if not self.nodes:
            return ()
        return tuple(q for q in self.routed if q not in self.consumed)

    def idle_nodes(self) -> tuple[str, ...]:
        """Nodes that answer but consume no queue at all."""
        return tuple(n for n, qs in (self.nodes or {}).items() if not qs)

    def waiting(self, queue: str) -> int:
        """Messages waiting in a queue (0 when the broker would not say)."""
        return self.lengths.get(queue) or 0

    def as_json(self) -> dict[str, Any]:
        """As a step registers it and `diagnose --format json` shows it."""
        return {"default_queue": self.default_queue, "routed": {q: list(w) for q, w in self.routed.items()},
                "nodes": None if self.nodes is None else {n: list(q) for n, q in self.nodes.items()},
                "lengths": dict(self.lengths), "consumed": sorted(self.consumed), "unconsumed": list(self.unconsumed()),
                "idle_nodes": list(self.idle_nodes()), "results_since": self.results_since,
                "now": self.now.isoformat() if self.now else None}


def parse_queues(doc: Mapping[str, Any]) -> QueueFacts:
    """The queue query's JSON line as QueueFacts."""
    nodes = doc.get("nodes")
    routed = doc.get("routed") or {}
    results = doc.get("results_since")
    return QueueFacts(
        str(doc.get("default_queue") or "celery"),
        {str(q): tuple(str(w) for w in why) for q, why in routed.items()},
        None if not isinstance(nodes, Mapping) else {str(n): tuple(str(q) for q in qs) for n, qs in nodes.items()},
        {str(q): (None if n is None else int(n)) for q, n in (doc.get("lengths") or {}).items()},
        {str(t): int(n) for t, n in results.items()} if isinstance(results, Mapping) else None,
        parse_time(doc.get("now")),
        parse_tasks(doc["beat_rows"]) if isinstance(doc.get("beat_rows"), list) else None,
    )


def queues_query(compose: cf.Compose, project: cf.Project, service: str, app: str, variables: Mapping[str, Any],
                 template_path: tuple[str, ...], manage: str = "manage.py") -> ShellQuery:
    """The queue query in a service's container (REMEDIATE_SINCE: TaskResult rows counted since then)."""
    script = templating.render_file(QUEUES_TEMPLATE, template_path, variables)
    return ShellQuery(compose, project, service, script, {"REMEDIATE_CELERY_APP": app}, manage)


@dataclass(frozen=True)
class SourceTree(Probe):
    """Every .py file under a directory (migrations excluded), read in one round trip as a tar stream."""

    root: str

    def gather(self, transport: Transport) -> dict[str, str]:
        script = (
            'cd "$1" || exit 66; '
            "find . -name '*.py' -not -path '*/migrations/*' -not -path '*/node_modules/*' -size -512k -print0 "
            "| tar --null -T - -cf -"
        )
        result = transport.run(["sh", "-c", script, "sh", self.root])
        if result.rc == 66:
            raise StepError(f"source directory {self.root} does not exist")
        if result.rc != 0:
            raise StepError(f"cannot read {self.root}: {result.err.strip()[-300:]}")
        files = {}
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    data = tar.extractfile(member)
                    if data is not None:
                        files[posixpath.normpath(member.name)] = data.read().decode("utf-8", "replace")
        return files


def beat_files(transport: Transport, compose: cf.Compose, project: cf.Project, beat: str,
               schedule_filename: str) -> tuple[tuple[int, str], ...]:
    """(mtime, path) of the schedule and pid files beat may have left in its container."""
    candidates = [schedule_filename, schedule_filename + ".db", "celerybeat.pid", "/tmp/celerybeat.pid"]
    script = 'for f in "$@"; do [ -e "$f" ] && echo "$(stat -c %Y "$f") $f"; done; exit 0'
    result = transport.run(compose.exec_argv(project, beat, ("sh", "-c", script, "sh", *candidates)), timeout=60)
    out = []
    for line in result.out.splitlines():
        mtime, _, path = line.partition(" ")
        if mtime.isdigit():
            out.append((int(mtime), path))
    return tuple(out)


@dataclass(frozen=True)
class CeleryFacts:
    """Everything one read-only pass saw of a host's Celery, in the order it was asked; a part is None when it
    was not asked (its service is missing, or `error` stopped the pass before it)."""

    beat: str = "celery_beat"
    worker: str = "celery_worker"
    services: Mapping[str, tuple[fc.Container, ...]] | None = None  # every service's containers, in model order
    beat_command: tuple[str, ...] | None = None
    beat_started: datetime | None = None
    banner: str | None = None  # beat's `scheduler -> ...` banner since its container started (when it runs)
    asked: str = ""  # the service whose container answered the queries
    state: CeleryState | None = None
    probe: BeatProbe | None = None
    probe_warning: str = ""  # why beat's own probe gave no usable answer
    source: Mapping[str, str] | None = None
    worker_present: bool = False
    registered: frozenset[str] | None = None  # None: the worker did not answer (when present)
    stale: tuple[tuple[int, str], ...] = ()
    # asked for the catalogue's faults (issue 16): the compose model, beat's log tail when its container
    # restarted or is down, and the queue query (in the worker's container)
    model: cf.Model | None = None
    beat_log: str = ""
    queues: QueueFacts | None = None
    queues_warning: str = ""  # why the queue query gave no answer
    beat_events: BeatEvents | None = None  # what beat's log since its start says of its schedule (when it runs)
    error: str = ""
    unreachable: bool = False

    def settings_loaded(self) -> str:
        """The settings module beat's process loaded, and its file in the asked container."""
        state = self.state
        module = state.settings_module if state else None
        file = state.settings_file if state else None
        return f"{module}" + (f" ({file} in {self.asked})" if file else "")


def gather(transport: Transport, variables: Mapping[str, Any]) -> CeleryFacts:
    """Ask a host everything diagnose judges, over its one connection; what could not be asked stops the pass,
    and the error says why (with what was seen until then)."""
    v = {**DEFAULTS, **variables}
    beat, worker, backend = str(v["beat_service"]), str(v["worker_service"]), str(v["backend_service"])
    seen = CeleryFacts(beat, worker)
    try:
        if not v.get("compose_dir"):
            raise StepError("the compose_dir variable is not set for this host")
        project = cf.Project(str(v["compose_dir"]), tuple(v.get("compose_files") or ()), v.get("compose_project"))
        compose = cf.detect(transport)
        model = cf.gather_model(transport, compose, project)
        everything = fc.gather_containers(transport, model.name)  # every service's containers, from the engine
        services = {name: tuple(c for c in everything.containers if c.service == name) for name in model.services}
        command = model.services[beat].command if beat in model.services else None
        # a container docker is restarting reads Running between its attempts: it is not up
        running = [c for c in services.get(beat, ()) if c.running and c.status != "restarting"]
        started = banner = None
        if running:
            started = max(c.started_at for c in running if c.started_at)
            newest = max(running, key=lambda c: c.started_at or everything.now)
            found = BANNER.findall(fc.logs_since(transport, newest))
            banner = found[-1] if found else None
        seen = CeleryFacts(beat, worker, services, command, started, banner, model=model)
        if running:
            seen = _with(seen, beat_events=parse_beat_events(beat_log_stamped(transport, newest)))
        if beat in model.services and any(c.restart_count or not c.running or c.status == "restarting"
                                           for c in services.get(beat, ())):
            newest_beat = max(services[beat], key=lambda c: c.started_at or everything.now)
            seen = _with(seen, beat_log=fc.tail(transport, newest_beat, BEAT_LOG_LINES))
        # the settings beat really loads are read in beat's own container: the backend may run an older image
        asked = beat if seen.beat_started is not None else backend if backend in model.services else beat
        templates = resources.template_path()
        app = str(v["celery_app"])
        try:
            state = parse_state(state_query(compose, project, asked, app, v, templates).ask(transport, f"state query in {asked}"))
        except StepError:
            # beat's container may die under the query (a restart loop reads "running" between attempts): the
            # backend runs the same settings' image more often than not, and says which module it loaded
            if asked != beat or backend not in model.services:
                raise
            asked = backend
            state = parse_state(state_query(compose, project, asked, app, v, templates).ask(transport, f"state query in {asked}"))
        seen = _with(seen, asked=asked, state=state)
        try:
            probe = ask_beat(transport, beat_query(compose, project, asked, app, v, templates, str(v["beat_scheduler"])))
            seen = _with(seen, probe=probe) if not probe.error else _with(seen, probe_warning=f"{asked}: {probe.error}")
        except StepError as exc:
            seen = _with(seen, probe_warning=f"{asked} could not say what its beat does with each PeriodicTask: {exc}")
        seen = _with(seen, source=SourceTree(f"{project.dir}/{v['source_dir']}").gather(transport))
        if worker in model.services:
            answer = transport.run(registered_argv(compose, project, worker, app), timeout=60)
            names = registered(answer)
            seen = _with(seen, worker_present=True, registered=frozenset(names) if names is not None else None)
            where = worker if any(c.running and c.status != "restarting" for c in services.get(worker, ())) else asked
            try:
                queues = parse_queues(queues_query(compose, project, where, app, v, templates).ask(transport, f"queue query in {where}"))
                seen = _with(seen, queues=queues)
            except StepError as exc:
                seen = _with(seen, queues_warning=f"{where} could not say which queues are consumed: {exc}")
        if beat in model.services and seen.beat_started is not None:
            schedule = str(state.app.get("beat_schedule_filename") or "celerybeat-schedule")
            seen = _with(seen, stale=beat_files(transport, compose, project, beat, schedule))
    except Unreachable as exc:
        return _with(seen, error=f"unreachable: {exc}", unreachable=True)
    except RemediateError as exc:
        return _with(seen, error=str(exc))
    return seen


def _with(facts: CeleryFacts, **parts: Any) -> CeleryFacts:
    return replace(facts, **parts)


def facts_json(facts: CeleryFacts, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The facts as `diagnose --format json` shows them (with each PeriodicTask's judged state, `tasks`)."""
    doc: dict[str, Any] = {}
    if facts.beat_started is not None:
        doc["beat_banner_scheduler"] = facts.banner
    if facts.services is not None:
        doc["containers"] = {name: [c.describe() for c in cs] or ["no container"] for name, cs in facts.services.items()}
    if facts.probe is not None:
        p = facts.probe
        doc["beat"] = {"versions": dict(p.versions), "scheduler": p.scheduler, "effective": p.effective,
                       "sync_every": p.sync_every, "sync_every_tasks": p.sync_every_tasks,
                       "max_interval": p.max_interval, "sync_lag": p.lag().total_seconds(), "lag": p.lag_words(),
                       "asked": facts.asked}
    if facts.state is not None:
        s = facts.state
        doc["settings"] = s.settings
        doc["settings_module"], doc["settings_file"] = s.settings_module, s.settings_file
        doc["app"] = {k: v for k, v in s.app.items() if k != "beat_schedule"}
        doc["periodic_tasks"] = list(tasks)
        doc["task_results"] = s.task_results
    if facts.registered is not None:
        doc["registered_tasks"] = sorted(facts.registered)
    if facts.queues is not None:
        doc["queues"] = facts.queues.as_json()
    if facts.model is not None:
        doc["commands"] = {name: list(svc.command) for name, svc in facts.model.services.items()}
    return doc
