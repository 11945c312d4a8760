"""Pure analysis of Celery state: when PeriodicTasks are due, which never fire, which are overdue, which modules hold tasks.

Input is what templates/celery_state.py.j2 prints and the source files read from the host; nothing here does I/O.
"""
from __future__ import annotations

import ast
import calendar
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from ..edits import pyedit

DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
GRACE = timedelta(seconds=60)
PERIODS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


@dataclass(frozen=True)
class Task:
    """A PeriodicTask row, as the state query reports it."""

    name: str
    task: str
    enabled: bool
    cron: str | None
    tz: str
    every: float | None
    last_run_at: datetime | None
    total_run_count: int
    one_off: bool = False

    @property
    def schedule_words(self) -> str:
        """The schedule, readable."""
        if self.cron:
            return f"cron '{self.cron}' ({self.tz})"
        if self.every:
            return f"every {self.every:g} s"
        return "no schedule"


def parse_time(value: str | None) -> datetime | None:
    """ISO time from the query (aware; naive is taken as UTC)."""
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_tasks(rows: Iterable[Mapping[str, Any]]) -> tuple[Task, ...]:
    """PeriodicTask rows from the state query."""
    out = []
    for row in rows:
        cron = row.get("crontab")
        interval = row.get("interval")
        expr = None
        if cron:
            expr = " ".join(str(cron[k]) for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))
        every = None
        if interval:
            every = float(interval["every"]) * PERIODS.get(interval["period"], 1)
        out.append(Task(
            name=row["name"], task=row["task"], enabled=bool(row.get("enabled")), cron=expr,
            tz=str((cron or {}).get("timezone") or "UTC"), every=every,
            last_run_at=parse_time(row.get("last_run_at")), total_run_count=int(row.get("total_run_count") or 0),
            one_off=bool(row.get("one_off")),
        ))
    return tuple(out)


def never_fires(task: Task) -> bool:
    """A crontab whose days of month exist in none of its months (e.g. 31 February), as Celery reads it."""
    return bool(task.cron) and cron_never_fires(str(task.cron))


def cron_never_fires(expr: str, day_or: bool = False) -> bool:
    """A 5-field cron expression that can never fire: no day of month it names exists in any month it names.

    Celery's crontab ANDs day of month with day of week (`day_or=False`, the default here): '0 0 31 2 1' never
    fires either. System cron ORs them when both are restricted (`day_or=True`): there it fires on February's
    Mondays. February counts 29 days (leap years come).
    """
    from croniter import croniter

    try:
        fields = croniter.expand(expr)[0]
    except Exception:
        return False
    doms, months, dows = fields[2], fields[3], fields[4]
    if doms == ["*"] or (day_or and dows != ["*"]) or not all(isinstance(d, int) for d in doms):
        return False  # every day, cron's OR with a restricted day of week, or 'L' (the last day: always exists)
    month_list = range(1, 13) if months == ["*"] else [int(m) for m in months]
    return all(min(int(d) for d in doms) > calendar.monthrange(2024, m)[1] for m in month_list)


def unregistered(expected: Iterable[str], registered: Iterable[str], builtins: Iterable[str] | None = None) -> list[str]:
    """Expected task names the worker does not list.

    `celery inspect registered` leaves out Celery's built-ins (celery.*: its worker's `registered` command
    has builtins=False in celery 5.4.0 through 5.7.0), so those are checked against `builtins`, the celery.*
    names beat's own app registers (the beat probe's `builtin_tasks`); without it they count as registered.
    django-celery-beat adds a `celery.backend_cleanup` row of its own once the DatabaseScheduler runs.
    """
    have = set(registered)
    known = set(builtins) if builtins is not None else None
    return [t for t in dict.fromkeys(expected) if t not in have
            and not (t.startswith("celery.") and (known is None or t in known))]


def _croniter(expr: str, start: datetime) -> Any:
    from croniter import croniter

    # day_or=False: Celery's crontab ANDs day of month and day of week (croniter ORs them by default, as cron does)
    return croniter(expr, start, day_or=False)


def next_due(task: Task, after: datetime) -> datetime | None:
    """The first due time strictly after `after` (None when it never fires), with Celery's crontab semantics."""
    if task.cron:
        if never_fires(task):
            return None
        local = after.astimezone(ZoneInfo(task.tz))
        return _croniter(task.cron, local).get_next(datetime).astimezone(timezone.utc)  # type: ignore[no-any-return]
    if task.every:
        base = task.last_run_at or after
        due = base + timedelta(seconds=task.every)
        while due <= after:
            due += timedelta(seconds=task.every)
        return due
    return None


def last_due(task: Task, now: datetime) -> datetime | None:
    """The latest due time at or before now (None when it never fires or has no schedule)."""
    if task.cron:
        if never_fires(task):
            return None
        local = now.astimezone(ZoneInfo(task.tz))
        return _croniter(task.cron, local).get_prev(datetime).astimezone(timezone.utc)  # type: ignore[no-any-return]
    if task.every and task.last_run_at:
        return task.last_run_at + timedelta(seconds=task.every) if task.last_run_at + timedelta(seconds=task.every) <= now else None
    return None


# --- what beat's own container says (templates/celery_beat_probe.py.j2) ---------------------------------------

OUTCOMES = ("ok", "skips", "dies", "retries", "disables", "writes")


@dataclass(frozen=True)
class RowVerdict:
    """What this host's beat does with one enabled PeriodicTask row, as its own celery and django-celery-beat say."""

    name: str
    outcome: str  # one of OUTCOMES
    error: str = ""
    log: tuple[str, ...] = ()
    cron: str | None = None
    tz: str = "UTC"

    @property
    def never_fires(self) -> bool:
        """Its crontab can never fire (Celery's semantics)."""
        return bool(self.cron) and cron_never_fires(str(self.cron))


@dataclass(frozen=True)
class BeatProbe:
    """The beat probe's answer: versions, the scheduler's sync settings, and a verdict per enabled row."""

    versions: Mapping[str, str]
    scheduler: str
    effective: str
    reads_rows: bool
    sync_every: float | None
    sync_every_tasks: int | None
    max_interval: float | None
    rows: tuple[RowVerdict, ...] = ()
    builtin_tasks: tuple[str, ...] = ()
    error: str = ""

    @property
    def who(self) -> str:
        """'celery 5.7.0 / django-celery-beat 2.9.0'."""
        out = f"celery {self.versions.get('celery', '?')}"
        if "django_celery_beat" in self.versions:
            out += f" / django-celery-beat {self.versions['django_celery_beat']}"
        return out

    @property
    def runs_probed(self) -> bool:
        """Beat already runs the scheduler that was probed (else the verdicts say what it would do with it)."""
        def norm(name: str) -> str:
            return name.replace(":", ".")
        return norm(self.effective) == norm(self.scheduler)

    def lag(self) -> timedelta:
        """How long after sending a task this beat saves its last_run_at to the database, at most.

        Beat syncs when a send finds `sync_every_tasks` sends since the last sync, or, after any of its sleeps
        (at most `max_interval`), when `sync_every` seconds have passed: celery 5.4.0 and 5.7.0 alike.
        """
        tick = float(self.max_interval or 5)
        if self.sync_every_tasks == 1:
            return timedelta(seconds=tick + 5)
        return timedelta(seconds=float(self.sync_every if self.sync_every is not None else 180) + tick)

    def lag_words(self) -> str:
        """Where the lag comes from, for progress lines and findings."""
        every = f"{self.sync_every:g} s" if self.sync_every is not None else "an unknown interval (180 s assumed)"
        tasks = f" or {self.sync_every_tasks} send(s)" if self.sync_every_tasks else ""
        short = self.scheduler.replace(":", ".").rsplit(".", 1)[-1]
        return (f"{self.who}'s {short} saves runs every {every}{tasks}, ticking every "
                f"{float(self.max_interval or 5):g} s: sync lag {self.lag().total_seconds():g} s")

    def verdict(self, name: str) -> RowVerdict | None:
        """The verdict on one row, if the probe saw it."""
        return next((v for v in self.rows if v.name == name), None)

    def words(self, v: RowVerdict, it: str = "it") -> str:
        """What this beat does with the row (called `it`), naming its versions (for messages and diffs)."""
        short = self.scheduler.replace(":", ".").rsplit(".", 1)[-1]
        once = "" if self.runs_probed else f" once it runs the {short}"
        error = f": {v.error}" if v.error else ""
        celery_v = self.versions.get("celery", "?")
        dcb = self.versions.get("django_celery_beat", "?")
        if v.outcome == "dies":
            return f"celery {celery_v}'s beat dies on {it}{once}{error}"
        if v.outcome == "skips":
            return f"{self.who} skip {it}" + (f" ({v.error})" if v.error else "")
        if v.outcome == "retries":
            return (f"celery {celery_v}'s beat cannot compute the next run of {it}{once}{error}; it logs an error "
                    f"every {float(self.max_interval or 5):g} s and never sends it")
        if v.outcome in ("disables", "writes"):
            what = "disables" if v.outcome == "disables" else "saves"
            return f"django-celery-beat {dcb}'s {short} {what} {it} when it loads it{error}"
        return f"{self.who} schedule {it}"


def parse_beat_probe(doc: Mapping[str, Any]) -> BeatProbe:
    """The probe's JSON line as a BeatProbe."""
    rows = []
    for row in doc.get("rows") or ():
        cron = row.get("crontab")
        expr = " ".join(str(cron[k]) for k in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")) \
            if cron else None
        rows.append(RowVerdict(str(row.get("name")), str(row.get("outcome") or "ok"), str(row.get("error") or ""),
                               tuple(str(x) for x in row.get("log") or ()), expr,
                               str((cron or {}).get("timezone") or "UTC")))

    def number(key: str) -> float | None:
        value = doc.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    tasks = doc.get("sync_every_tasks")
    return BeatProbe(
        versions={str(k): str(v) for k, v in (doc.get("versions") or {}).items()},
        scheduler=str(doc.get("scheduler") or ""), effective=str(doc.get("effective_scheduler") or ""),
        reads_rows=bool(doc.get("reads_rows")), sync_every=number("sync_every"),
        sync_every_tasks=int(tasks) if isinstance(tasks, int) and not isinstance(tasks, bool) else None,
        max_interval=number("max_interval"), rows=tuple(rows),
        builtin_tasks=tuple(str(t) for t in doc.get("builtin_tasks") or ()),
        error=str(doc.get("error") or doc.get("load_error") or ""),
    )


def beat_verdicts(doc: Mapping[str, Any], outcome: str | None = None) -> list[dict[str, Any]]:
    """Playbook filter: the probe's verdicts (of one outcome, or every one but ok) as plain mappings.

    Each: name, outcome, error, never_fires, who (the versions), why (what this beat does with it, naming the
    versions) and sentence ("celery 5.7.0 / django-celery-beat 2.9.0 skip 'Send Test Email' (ValueError: ...)").
    """
    probe = parse_beat_probe(doc or {})
    out = []
    for v in probe.rows:
        if (outcome is None and v.outcome == "ok") or (outcome is not None and v.outcome != outcome):
            continue
        out.append({"name": v.name, "outcome": v.outcome, "error": v.error, "never_fires": v.never_fires,
                    "who": probe.who, "why": probe.words(v), "sentence": probe.words(v, repr(v.name))})
    return out


@dataclass(frozen=True)
class TaskHealth:
    """How one PeriodicTask stands now."""

    task: Task
    status: str  # ok | never_run | overdue | pending | never_fires | disabled
    last_due: datetime | None
    next_due: datetime | None
    detail: str


def assess(tasks: Sequence[Task], now: datetime, beat_started: datetime | None, lag: timedelta,
           probe: BeatProbe | None = None) -> tuple[TaskHealth, ...]:
    """Each task: ran within its window (last due + sync lag + grace), or never-run/overdue/pending/never-fires.

    An enabled task that can never fire is described by what *this* host's beat does with it (`probe`, from
    beat's own container), never by a belief about a version.
    """
    out = []
    for t in tasks:
        if never_fires(t):
            # checked before `enabled`: the seed keeps such a row on purpose (a manual-only task)
            why = "disabled: a manual-only task"
            if t.enabled:
                verdict = probe.verdict(t.name) if probe is not None else None
                why = (f"enabled: {probe.words(verdict)}" if probe is not None and verdict is not None
                       else "enabled; what this host's beat does with it is unknown: its container gave no answer")
            out.append(TaskHealth(t, "never_fires", None, None, f"{t.schedule_words} can never fire ({why})"))
            continue
        nd = next_due(t, now)
        if not t.enabled:
            out.append(TaskHealth(t, "disabled", None, nd, "disabled"))
            continue
        ld = last_due(t, now - lag - GRACE)
        if ld is None:
            out.append(TaskHealth(t, "ok", None, nd, "not due yet"))
        elif t.last_run_at is not None and t.last_run_at >= ld - timedelta(seconds=1):
            out.append(TaskHealth(t, "ok", ld, nd, f"last run {iso(t.last_run_at)}"))
        elif beat_started is not None and ld < beat_started:
            out.append(TaskHealth(t, "pending", ld, nd, f"last due {iso(ld)} before beat started {iso(beat_started)}"))
        elif t.last_run_at is None:
            out.append(TaskHealth(t, "never_run", ld, nd, f"never run; was due {iso(ld)}"))
        else:
            out.append(TaskHealth(t, "overdue", ld, nd, f"last run {iso(t.last_run_at)}; was due {iso(ld)}"))
    return tuple(out)


def soonest(tasks: Sequence[Task], after: datetime) -> tuple[datetime, tuple[Task, ...]] | None:
    """The enabled tasks due soonest after `after`, and when."""
    dues = [(next_due(t, after), t) for t in tasks if t.enabled and not t.one_off]
    dues = [(d, t) for d, t in dues if d is not None]
    if not dues:
        return None
    first = min(d for d, _ in dues)
    return first, tuple(t for d, t in dues if d == first)


def iso(dt: datetime | None) -> str:
    """A short UTC time for messages."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if dt else "never"


# --- task modules -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskModule:
    """A module of a Django app that defines Celery tasks but is not imported when the app loads."""

    module: str
    path: str
    app_config_file: str
    app_config_class: str
    tasks: tuple[str, ...]


def _task_names(tree: ast.Module, module: str, celery_names: set[str]) -> list[str]:
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call else deco
            is_task = (isinstance(target, ast.Name) and target.id == "shared_task") or (
                isinstance(target, ast.Attribute) and (
                    target.attr == "shared_task"
                    or (target.attr == "task" and isinstance(target.value, ast.Name) and target.value.id in celery_names)
                )
            )
            if not is_task:
                continue
            explicit = next((kw.value.value for kw in (call.keywords if call else [])
                             if kw.arg == "name" and isinstance(kw.value, ast.Constant)), None)
            names.append(str(explicit) if explicit else f"{module}.{node.name}")
    return names


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Modules imported anywhere in a tree (absolute names; relative ones resolved against `module`)."""
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join([*parts, base] if base else parts)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def find_unimported_task_modules(files: Mapping[str, str], celery_names: Iterable[str] = ("app", "celery_app")) -> tuple[TaskModule, ...]:
    """Modules defining tasks that neither autodiscovery (tasks.py) nor the app's load imports.

    `files` maps paths relative to the Django project root (e.g. apps/audit/integrity_tasks.py) to source.
    An app is a package with an apps.py defining an AppConfig subclass; loading it imports its __init__,
    models and tasks modules and whatever AppConfig.ready() imports.
    """
    names = set(celery_names)
    trees: dict[str, ast.Module] = {}
    for path, source in files.items():
        try:
            trees[path] = pyedit.parse(source)
        except SyntaxError:
            continue
    out = []
    for apps_path, tree in sorted(trees.items()):
        if posixpath.basename(apps_path) != "apps.py":
            continue
        package_dir = posixpath.dirname(apps_path)
        package = package_dir.replace("/", ".")
        config = next((n for n in tree.body if isinstance(n, ast.ClassDef)
                       and any("AppConfig" in ast.unparse(b) for b in n.bases)), None)
        if config is None:
            continue
        loaded: set[str] = set()
        ready = next((n for n in config.body if isinstance(n, ast.FunctionDef) and n.name == "ready"), None)
        if ready is not None:
            loaded |= _imports(ready, f"{package}.apps")
        for name in ("__init__", "models", "tasks"):
            path = posixpath.join(package_dir, f"{name}.py")
            if path in trees:
                module = package if name == "__init__" else f"{package}.{name}"
                loaded.add(module)
                loaded |= _imports(trees[path], f"{package}.{name}" if name != "__init__" else f"{package}.__init__")
        for path, mod_tree in sorted(trees.items()):
            if posixpath.dirname(path) != package_dir or path == apps_path:
                continue
            module = f"{package}.{posixpath.basename(path)[:-3]}"
            if module in loaded or posixpath.basename(path) in ("tasks.py", "__init__.py", "models.py"):
                continue
            tasks = _task_names(mod_tree, module, names)
            if tasks:
                out.append(TaskModule(module, path, apps_path, config.name, tuple(tasks)))
    return tuple(out)


def defined_tasks(files: Mapping[str, str], celery_names: Iterable[str] = ("app", "celery_app")) -> tuple[str, ...]:
    """Every task name the source tree defines."""
    names = set(celery_names)
    out = []
    for path, source in sorted(files.items()):
        try:
            tree = pyedit.parse(source)
        except SyntaxError:
            continue
        module = path[:-3].replace("/", ".")
        out += _task_names(tree, module, names)
    return tuple(out)
