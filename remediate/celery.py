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

from . import pyedit

DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# django-celery-beat saves last_run_at when it syncs: after every task when beat_sync_every is 1, else every 3 min
SYNC_EVERY_DEFAULT = timedelta(minutes=3)
GRACE = timedelta(seconds=60)
NEVER_FIRES_ENABLED = (
    "ENABLED: celery beat's DatabaseScheduler crashes on it with 'unable to rollover, time specification is "
    "probably invalid'; disable it"
)
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
    """A crontab whose days of month exist in none of its months (e.g. 31 February)."""
    return bool(task.cron) and cron_never_fires(str(task.cron))


def cron_never_fires(expr: str) -> bool:
    """A 5-field cron expression whose days of month exist in none of its months (e.g. '0 0 31 2 *')."""
    from croniter import croniter

    try:
        fields = croniter.expand(expr)[0]
    except Exception:
        return False
    doms, months, dows = fields[2], fields[3], fields[4]
    if doms == ["*"] or dows != ["*"]:
        return False  # cron ORs day-of-month with a restricted day-of-week
    month_list = range(1, 13) if months == ["*"] else [int(m) for m in months]
    return all(min(int(d) for d in doms) > calendar.monthrange(2024, m)[1] for m in month_list)


def unregistered(expected: Iterable[str], registered: Iterable[str]) -> list[str]:
    """Expected task names the worker does not list; Celery's built-ins (celery.*) are never listed but always there.

    django-celery-beat adds a `celery.backend_cleanup` row of its own once the DatabaseScheduler runs.
    """
    have = set(registered)
    return [t for t in dict.fromkeys(expected) if t not in have and not t.startswith("celery.")]


def enabled_never_firing(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of enabled PeriodicTask rows (as the state query prints them) whose crontab can never fire."""
    return [t.name for t in parse_tasks(rows) if t.enabled and never_fires(t)]


def next_due(task: Task, after: datetime) -> datetime | None:
    """The first due time strictly after `after` (None when it never fires)."""
    if task.cron:
        if never_fires(task):
            return None
        from croniter import croniter

        local = after.astimezone(ZoneInfo(task.tz))
        return croniter(task.cron, local).get_next(datetime).astimezone(timezone.utc)  # type: ignore[no-any-return]
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
        from croniter import croniter

        local = now.astimezone(ZoneInfo(task.tz))
        return croniter(task.cron, local).get_prev(datetime).astimezone(timezone.utc)  # type: ignore[no-any-return]
    if task.every and task.last_run_at:
        return task.last_run_at + timedelta(seconds=task.every) if task.last_run_at + timedelta(seconds=task.every) <= now else None
    return None


def sync_lag(beat_sync_every: int | None) -> timedelta:
    """How long after a run beat saves last_run_at to the database."""
    return timedelta(seconds=10) if beat_sync_every == 1 else SYNC_EVERY_DEFAULT


@dataclass(frozen=True)
class TaskHealth:
    """How one PeriodicTask stands now."""

    task: Task
    status: str  # ok | never_run | overdue | pending | never_fires | disabled
    last_due: datetime | None
    next_due: datetime | None
    detail: str


def assess(tasks: Sequence[Task], now: datetime, beat_started: datetime | None, lag: timedelta) -> tuple[TaskHealth, ...]:
    """Each task: ran within its window (last due + sync lag + grace), or never-run/overdue/pending/never-fires."""
    out = []
    for t in tasks:
        if never_fires(t):
            # checked before `enabled`: the seed keeps such a row on purpose (a manual-only task), and an enabled
            # one is worse than useless: beat's DatabaseScheduler dies on it ("unable to rollover")
            why = (NEVER_FIRES_ENABLED if t.enabled else "disabled: a manual-only task")
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
