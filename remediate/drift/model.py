"""`remediate drift`: the playbooks in check mode plus health assertions, judged as hosts x checks.

The judgement (`assess`) is pure: it takes a check-mode RunReport and diagnose's findings and returns a
DriftReport, which owns the drift exit code. `check` and `fix` do the I/O through api and diagnose.
"""
from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..diagnose import Finding, HostDiagnosis
from ..core.results import HostResult, RunReport, Status

# Health checks, in display order, and the diagnose finding codes each one owns.
HEALTH_CHECKS: Mapping[str, frozenset[str]] = {
    "containers": frozenset({"container_down", "container_unhealthy"}),
    "beat_scheduler": frozenset({
        "beat_scheduler", "beat_scheduler_setting", "beat_scheduler_code", "beat_scheduler_forced",
        "dual_configuration", "stale_pid_file", "stale_schedule_file", "beat_probe",
    }),
    "tasks_registered": frozenset({"unimported_task_module", "unregistered_tasks", "worker_silent"}),
    "tasks_ran": frozenset({"never_run", "overdue", "never_fires", "beat_row"}),
}
OTHER_HEALTH = "celery_health"  # a finding code diagnose learns later still counts, under this check
PLAYBOOK_PREFIX = "playbook:"


class CheckStatus(enum.Enum):
    """Outcome of one check on one host."""

    OK = "ok"
    DRIFT = "drift"
    ERROR = "error"
    SKIPPED = "skipped"


class DriftExit(enum.IntEnum):
    """Drift's exit codes (README's table)."""

    CLEAN = 0
    ERROR = 1
    DRIFT = 2
    INVALID_INPUT = 3


@dataclass(frozen=True)
class Check:
    """One check on one host: its status, what drifted, warnings that do not count as drift, diffs."""

    host: str
    name: str
    status: CheckStatus
    details: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    diff: str = ""
    # seconds it took: a playbook check's steps; a health check, its host's one diagnosis (shared by all four)
    duration: float | None = None
    file: str = ""  # a playbook check's playbook file

    @property
    def key(self) -> str:
        """host/check, the identity of a check across runs."""
        return f"{self.host}/{self.name}"


@dataclass(frozen=True)
class TaskState:
    """A PeriodicTask that is not simply fine: never run, overdue, pending or never firing."""

    host: str
    name: str
    task: str
    status: str
    schedule: str
    last_due: str | None
    last_run_at: str | None
    next_due: str | None
    detail: str


@dataclass(frozen=True)
class DriftReport:
    """One drift assessment of an environment."""

    env: str
    run_id: str
    started_at: datetime
    hosts: tuple[str, ...]
    checks: tuple[Check, ...]
    tasks: tuple[TaskState, ...] = ()
    phase: str = "check"  # check | after-fix
    duration: float | None = None  # seconds, the whole assessment
    playbooks: tuple[str, ...] = ()  # the playbook files it ran (-p), as given to the check

    def exit_code(self) -> DriftExit:
        """1 when any check could not be made, else 2 when anything drifted, else 0; warnings never count."""
        statuses = {c.status for c in self.checks}
        if CheckStatus.ERROR in statuses:
            return DriftExit.ERROR
        return DriftExit.DRIFT if CheckStatus.DRIFT in statuses else DriftExit.CLEAN

    def drifted(self) -> tuple[Check, ...]:
        """Checks that drifted."""
        return tuple(c for c in self.checks if c.status == CheckStatus.DRIFT)

    def drifted_hosts(self) -> tuple[str, ...]:
        """Hosts with at least one drifted check, in inventory order."""
        names = {c.host for c in self.drifted()}
        return tuple(h for h in self.hosts if h in names)

    def check_names(self) -> tuple[str, ...]:
        """Every check name, in first-seen order."""
        return tuple(dict.fromkeys(c.name for c in self.checks))

    def warnings(self) -> tuple[tuple[str, str], ...]:
        """(host/check, warning) pairs."""
        return tuple((c.key, w) for c in self.checks for w in c.warnings)


@dataclass(frozen=True)
class FixOutcome:
    """What `drift --fix` did: the check before, the apply run on drifted hosts, the check after."""

    before: DriftReport
    applied: RunReport | None
    after: DriftReport | None

    def exit_code(self) -> int:
        """An interrupted (130) or failed (1) apply decides; otherwise the check after the fix does."""
        if self.applied is not None and int(self.applied.exit_code()) in (1, 130):
            return int(self.applied.exit_code())
        final = self.after or self.before
        return int(final.exit_code())


# --- the pure judgement ---------------------------------------------------------------------------------------


def playbook_check_name(path: str) -> str:
    """The check a playbook file's steps report under."""
    return PLAYBOOK_PREFIX + Path(path).stem


def playbook_checks(host: HostResult, names: Sequence[str]) -> tuple[Check, ...]:
    """One check per playbook file: drift when a step would change, error when the host failed or was unreachable."""
    by_name: dict[str, list[Any]] = {n: [] for n in names}
    for step in host.steps:
        by_name.setdefault(playbook_check_name(step.where.path), []).append(step)
    out = []
    for name, steps in by_name.items():
        failed = [s for s in steps if s.status == Status.FAILED and not s.data.get("ignored")]
        changes = [s for s in steps if s.status == Status.WOULD_CHANGE]
        if host.status == Status.UNREACHABLE:
            out.append(Check(host.host, name, CheckStatus.ERROR, (f"unreachable: {host.message}",)))
        elif failed:
            out.append(Check(host.host, name, CheckStatus.ERROR,
                             tuple(f"{s.name} [{s.where}]: {s.message}" for s in failed)))
        elif changes:
            details = tuple(
                f"{s.name} [{s.where}]" + (f": {'; '.join(s.actions)}" if s.actions else "") for s in changes
            )
            diff = "".join(s.diff if s.diff.endswith("\n") or not s.diff else s.diff + "\n" for s in changes)
            out.append(Check(host.host, name, CheckStatus.DRIFT, details, (), diff))
        elif host.status == Status.FAILED and not steps:
            out.append(Check(host.host, name, CheckStatus.ERROR, (host.message or "the host failed before this playbook",)))
        else:
            out.append(Check(host.host, name, CheckStatus.OK))
    return tuple(out)


def health_checks(diagnosis: HostDiagnosis) -> tuple[Check, ...]:
    """Diagnose's findings sorted into the health checks: problems drift, warnings stay warnings."""
    grouped: dict[str, list[Finding]] = {name: [] for name in HEALTH_CHECKS}
    for finding in diagnosis.findings:
        name = next((n for n, codes in HEALTH_CHECKS.items() if finding.code in codes), OTHER_HEALTH)
        grouped.setdefault(name, []).append(finding)
    out = []
    for name, findings in grouped.items():
        problems = tuple(f"{f.code}: {f.message}" for f in findings if f.severity == "problem")
        warnings = tuple(f"{f.code}: {f.message}" for f in findings if f.severity == "warning")
        if diagnosis.error:
            out.append(Check(diagnosis.host, name, CheckStatus.ERROR, (diagnosis.error, *problems), warnings))
        else:
            out.append(Check(diagnosis.host, name, CheckStatus.DRIFT if problems else CheckStatus.OK, problems, warnings))
    return tuple(out)


def task_states(diagnosis: HostDiagnosis) -> tuple[TaskState, ...]:
    """The PeriodicTasks worth naming: never run, overdue, pending (beat restarted after they were due), never firing."""
    out = []
    for t in diagnosis.facts.get("periodic_tasks") or ():
        if t.get("status") in ("never_run", "overdue", "pending", "never_fires"):
            out.append(TaskState(
                diagnosis.host, str(t.get("name")), str(t.get("task")), str(t["status"]), str(t.get("schedule") or ""),
                t.get("last_due"), t.get("last_run_at") if t.get("last_run_at") != "never" else None,
                t.get("next_due") if t.get("next_due") != "never" else None, str(t.get("detail") or ""),
            ))
    return tuple(out)


def assess(
    env: str,
    run_id: str,
    started_at: datetime,
    hosts: Sequence[str],
    playbook_names: Sequence[str],
    check_run: RunReport | None,
    diagnoses: Iterable[HostDiagnosis] = (),
    playbook_files: Mapping[str, str] | None = None,
    diagnosis_seconds: Mapping[str, float] | None = None,
) -> DriftReport:
    """Hosts x checks from a check-mode run (None: no playbooks) and diagnose's results (empty: no health checks).

    `playbook_files` names each playbook check's file; `diagnosis_seconds` how long each host's diagnosis took.
    """
    by_host: dict[str, list[Check]] = {h: [] for h in hosts}
    tasks: list[TaskState] = []
    results = {h.host: h for h in check_run.hosts} if check_run else {}
    for name in hosts:
        if name in results:
            by_host[name] += _timed(results[name], playbook_checks(results[name], playbook_names), playbook_files or {})
    for diagnosis in diagnoses:
        seconds = (diagnosis_seconds or {}).get(diagnosis.host)
        by_host.setdefault(diagnosis.host, []).extend(replace(c, duration=seconds) for c in health_checks(diagnosis))
        tasks += task_states(diagnosis)
    checks = tuple(c for h in by_host.values() for c in h)
    return DriftReport(env, run_id, started_at, tuple(by_host), checks, tuple(tasks))


def _timed(host: HostResult, checks: Iterable[Check], files: Mapping[str, str]) -> list[Check]:
    """Each playbook check with the time its steps took on the host (None when none ran) and its file."""
    seconds: dict[str, float] = {}
    for step in host.steps:
        name = playbook_check_name(step.where.path)
        seconds[name] = seconds.get(name, 0.0) + step.duration
    return [replace(c, duration=seconds.get(c.name), file=files.get(c.name, "")) for c in checks]


def shown_path(path: str) -> str:
    """A playbook path as reports show it: relative to the working directory when under it (CI links it)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


# --- doing it ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftOptions:
    """What `remediate drift` was asked to check."""

    env: str
    playbooks: tuple[str, ...] = ()
    inventory: str | None = None
    limit: str | None = None
    health: bool = True
    forks: int = 10
    connect_timeout: float = 10.0
    verify_timeout: float = 900.0
    accept_new_host_keys: bool = False
    extra_vars: Mapping[str, Any] = field(default_factory=dict)


def _run_options(opts: DriftOptions, check: bool, limit: str | None) -> Any:
    from ..engine.host import RunOptions

    return RunOptions(check=check, diff=True, forks=opts.forks, limit=limit, extra_vars=dict(opts.extra_vars),
                      verify_timeout=opts.verify_timeout, connect_timeout=opts.connect_timeout,
                      accept_new_host_keys=opts.accept_new_host_keys)


class _OnePerHost:
    """One transport per host for a whole drift check: the check run and diagnose reuse it; closed once, here."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        self._make = make
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, host: Any) -> Any:
        with self._lock:
            if host.name not in self._open:
                self._open[host.name] = self._make(host)
            return _KeptOpen(self._open[host.name])

    def close(self) -> None:
        """Close every transport opened."""
        for transport in self._open.values():
            transport.close()


class _Stopwatch:
    """Hands out each host's kept-open transport to diagnose and notes how long the host's diagnosis held it."""

    def __init__(self, transports: _OnePerHost) -> None:
        self._transports = transports
        self.seconds: dict[str, float] = {}

    def __call__(self, host: Any) -> Any:
        return _TimedUse(self._transports(host), host.name, self.seconds)


class _KeptOpen:
    """A transport whose close() is left to its owner (the check run and diagnose each close what they get)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        """Kept open for the next user of this host's connection."""


class _TimedUse(_KeptOpen):
    """A kept-open transport whose close() records the seconds since it was handed out."""

    def __init__(self, transport: Any, host: str, seconds: dict[str, float]) -> None:
        super().__init__(transport)
        self._host, self._seconds, self._started = host, seconds, time.monotonic()

    def close(self) -> None:
        """Record how long this user had the host."""
        self._seconds[self._host] = time.monotonic() - self._started


def check(opts: DriftOptions, clock: Callable[[], datetime] | None = None, run_id: str | None = None) -> DriftReport:
    """One drift assessment: the playbooks in check mode, then diagnose on the same hosts."""
    from .. import api, diagnose

    now = clock or (lambda: datetime.now(timezone.utc))
    started = now()
    timer = time.monotonic()
    run_id = run_id or api.new_run_id()
    options = _run_options(opts, True, opts.limit)
    loaded = api.load(opts.env, opts.playbooks, options, opts.inventory)
    names = tuple(dict.fromkeys(playbook_check_name(s.where.path) for p in loaded.plays for s in p.steps))
    files: dict[str, str] = {}
    for s in (s for p in loaded.plays for s in p.steps):
        files.setdefault(playbook_check_name(s.where.path), shown_path(s.where.path))
    transports = _OnePerHost(lambda host: api.make_transport(host, options))
    stopwatch = _Stopwatch(transports)
    try:
        check_run = api.execute(loaded, options, run_id=run_id, transport_factory=lambda host, _: transports(host))
        diagnoses: tuple[HostDiagnosis, ...] = ()
        if opts.health and loaded.hosts:
            diagnoses = diagnose.diagnose(loaded.inventory, loaded.hosts, stopwatch, opts.forks)
    finally:
        transports.close()
    report = assess(opts.env, run_id, started, tuple(h.name for h in loaded.hosts), names, check_run, diagnoses,
                    files, stopwatch.seconds)
    report = replace(report, duration=time.monotonic() - timer,
                     playbooks=tuple(shown_path(str(p)) for p in loaded.playbook_paths))
    # masked once, here, so every rendering, the history and the notifications only ever see masked text
    return from_doc(loaded.redactor.data(to_doc(report)))


def fix(opts: DriftOptions, before: DriftReport, events: Any = None,
        clock: Callable[[], datetime] | None = None, interrupt: Any = None) -> FixOutcome:
    """Apply the playbooks to the drifted hosts only, then check every host again (not after an interrupt)."""
    from .. import api

    hosts = before.drifted_hosts()
    if not hosts:
        return FixOutcome(before, None, None)
    options = _run_options(opts, False, ",".join(hosts))
    loaded = api.load(opts.env, opts.playbooks, options, opts.inventory)
    applied = api.execute(loaded, options, events, interrupt=interrupt,
                          why=api.Why(f"remediate drift --fix: drift on {', '.join(hosts)}"))
    if applied.interrupted:
        return FixOutcome(before, applied, None)
    after = replace(check(opts, clock), phase="after-fix")
    return FixOutcome(before, applied, after)


# --- documents and text ------------------------------------------------------------------------------------------


def to_doc(report: DriftReport) -> dict[str, Any]:
    """The JSON-able document of a report (also what history stores)."""
    return {
        "env": report.env,
        "run_id": report.run_id,
        "phase": report.phase,
        "started_at": report.started_at.isoformat(),
        "hosts": list(report.hosts),
        "checks": [
            {"host": c.host, "check": c.name, "status": c.status.value, "details": list(c.details),
             "warnings": list(c.warnings), "diff": c.diff, "duration": c.duration, "file": c.file}
            for c in report.checks
        ],
        "tasks": [t.__dict__ for t in report.tasks],
        "drifted": [c.key for c in report.drifted()],
        "exit_code": int(report.exit_code()),
        "duration": report.duration,
        "playbooks": list(report.playbooks),
    }


def from_doc(doc: Mapping[str, Any]) -> DriftReport:
    """A report back from its document."""
    return DriftReport(
        env=str(doc["env"]), run_id=str(doc["run_id"]),
        started_at=datetime.fromisoformat(doc["started_at"]),
        hosts=tuple(doc["hosts"]),
        checks=tuple(Check(c["host"], c["check"], CheckStatus(c["status"]), tuple(c["details"]), tuple(c["warnings"]),
                           c.get("diff", ""), c.get("duration"), c.get("file", "")) for c in doc["checks"]),
        tasks=tuple(TaskState(**t) for t in doc.get("tasks", ())),
        phase=str(doc.get("phase", "check")),
        # documents recorded before durations and playbook sets were kept have neither
        duration=doc.get("duration"),
        playbooks=tuple(doc.get("playbooks", ())),
    )


def render_json(outcome: FixOutcome, notification: str = "") -> str:
    """The one JSON document of a drift run (with --fix: before, the apply run, after)."""
    from ..core import report as run_report

    doc: dict[str, Any] = to_doc(outcome.before)
    if outcome.applied is not None:
        doc = {"before": doc, "fix": json.loads(run_report.to_json(outcome.applied)),
               "after": to_doc(outcome.after) if outcome.after else None}
    doc["exit_code"] = outcome.exit_code()
    if notification:
        doc["notification"] = notification
    return json.dumps(doc, indent=2, default=str)


def render_text(outcome: FixOutcome, notification: str = "") -> str:
    """What a person reads: per host, each check; then tasks, warnings, and the verdict."""
    from ..core import report as run_report

    parts = [_text(outcome.before)]
    if outcome.applied is not None:
        parts.append(f"FIX applied to {', '.join(outcome.before.drifted_hosts())}")
        parts.append(run_report.recap(outcome.applied))
        if outcome.after is not None:
            parts.append("AFTER FIX")
            parts.append(_text(outcome.after))
    if notification:
        parts.append(f"notify: {notification}")
    code = outcome.exit_code()
    parts.append({0: "clean", 1: "errors", 2: "drift found", 130: "interrupted"}.get(code, "exit") + f"; exit {code}")
    return "\n".join(parts)


def _text(report: DriftReport) -> str:
    lines = [f"DRIFT {report.env} run {report.run_id} at {report.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%SZ}"]
    for host in report.hosts:
        lines.append(f"== {host}")
        for c in (c for c in report.checks if c.host == host):
            lines.append(f"  {c.status.value.upper():7} {c.name}")
            lines += [f"          {d}" for d in c.details]
            lines += [f"          warning: {w}" for w in c.warnings]
            if c.diff:
                lines += [f"          {line}" for line in c.diff.rstrip("\n").splitlines()]
        for t in (t for t in report.tasks if t.host == host):
            due = f"due {t.last_due}" if t.last_due else f"next due {t.next_due or 'never'}"
            lines.append(f"  task {t.name!r} ({t.task}): {t.status.replace('_', '-')}, {due}, "
                         f"last run {t.last_run_at or 'never'}")
    return "\n".join(lines)
