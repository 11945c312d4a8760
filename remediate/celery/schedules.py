"""When PeriodicTask rows are due, with Celery's crontab semantics: next and last due times, schedules that never fire."""
from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo


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
    last_result_at: datetime | None = None  # the newest TaskResult naming this row (before beat's sync saves last_run_at)

    @property
    def ran_at(self) -> datetime | None:
        """The latest run known: last_run_at, or a TaskResult of the row's own run that is newer."""
        times = [t for t in (self.last_run_at, self.last_result_at) if t is not None]
        return max(times) if times else None

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
            one_off=bool(row.get("one_off")), last_result_at=parse_time(row.get("last_result_at")),
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


def soonest(tasks: Sequence[Task], after: datetime) -> tuple[datetime, tuple[Task, ...]] | None:
    """The enabled tasks due soonest after `after`, and when."""
    dues = [(d, t) for d, t in ((next_due(t, after), t) for t in tasks if t.enabled and not t.one_off) if d is not None]
    if not dues:
        return None
    first = min(d for d, _ in dues)
    return first, tuple(t for d, t in dues if d == first)


def iso(dt: datetime | None) -> str:
    """A short UTC time for messages."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if dt else "never"
