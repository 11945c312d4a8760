"""Whether a periodic task ran exactly once per period: its TaskResult rows counted in consecutive periods.

One beat sends a row once at each due time; a second beat (`worker -B` beside a beat service, beat scaled
above 1) sends it again, so a period holds two runs. Periods run from one due time to the next, counted from
the first due time after a start (the period a change falls in may be partial). A run is counted in the period
its TaskResult's `date_done` falls in: the worker writes it when the task ends, so this holds for tasks that end
within their period (a heartbeat ends within milliseconds of its send).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from .schedules import Task, iso, next_due

# after a period ends: a run sent at its start has been written by then (beat's tick, the task's own time)
SETTLE = timedelta(seconds=5)


class Count(Enum):
    """What the periods show so far."""

    OK = "ok"  # every period over, one run in each
    TWICE = "twice"  # a period holds more than one run: another beat sends it too
    MISSING = "missing"  # a period ended (and settled) without a run
    WAITING = "waiting"  # no verdict yet: a period is not over


@dataclass(frozen=True)
class Period:
    """One period, from a due time to the next, and the runs (TaskResult `date_done`) that fell in it."""

    start: datetime
    end: datetime
    done: tuple[datetime, ...]


@dataclass(frozen=True)
class PeriodVerdict:
    """The verdict on a row's runs over its periods, and a message naming the times."""

    count: Count
    periods: tuple[Period, ...]
    message: str


def edges(task: Task, after: datetime, periods: int) -> tuple[datetime, ...] | None:
    """The first `periods + 1` due times of `task` strictly after `after` (None when it stops firing before)."""
    out: list[datetime] = []
    at = after
    for _ in range(periods + 1):
        due = next_due(task, at)
        if due is None:
            return None
        out.append(due)
        at = due
    return tuple(out)


def proof_row(tasks: Sequence[Task], after: datetime, periods: int) -> tuple[Task, tuple[datetime, ...]] | None:
    """The enabled row whose `periods` full periods after `after` end soonest, with its due times (ties: by name)."""
    best: tuple[Task, tuple[datetime, ...]] | None = None
    for task in sorted(tasks, key=lambda t: t.name):
        if not task.enabled or task.one_off:
            continue
        due = edges(task, after, periods)
        if due is not None and (best is None or due[-1] < best[1][-1]):
            best = task, due
    return best


def stamp(dt: datetime) -> str:
    """A UTC time to the hundredth of a second: two beats' sends lie milliseconds apart."""
    return iso(dt)[:-1].split(" ")[1] + f".{dt.microsecond // 10000:02d}"


def count_runs(name: str, done: Iterable[datetime], due: Sequence[datetime], now: datetime,
               settle: timedelta = SETTLE) -> PeriodVerdict:
    """Count a row's runs (`done`: its TaskResults' date_done) in the periods between consecutive `due` times.

    More than one in any period is the verdict at once (whatever is still to come); a period without a run is
    MISSING once it ended `settle` ago; OK when every period ended so, one run in each; else WAITING.
    """
    times = sorted(done)
    periods = tuple(Period(a, b, tuple(t for t in times if a <= t < b)) for a, b in zip(due, due[1:]))
    span = f"{len(periods)} period(s) from {iso(due[0])}" if periods else "no period"
    for p in periods:
        if len(p.done) > 1:
            many = "twice" if len(p.done) == 2 else f"{len(p.done)} times"
            at = ", ".join(stamp(t) for t in p.done[:-1]) + f" and {stamp(p.done[-1])}"
            return PeriodVerdict(Count.TWICE, periods, f"{name} ran {many} in its period {iso(p.start)} to "
                                                       f"{iso(p.end)} (TaskResults done at {at}): another beat sends it")
    for p in periods:
        if not p.done and now >= p.end + settle:
            return PeriodVerdict(Count.MISSING, periods, f"{name} left no TaskResult in its period {iso(p.start)} to "
                                                         f"{iso(p.end)}: no beat sent it, or it did not end within it")
    seen = " and ".join(stamp(p.done[0]) for p in periods if p.done)
    if periods and now >= periods[-1].end + settle:
        return PeriodVerdict(Count.OK, periods, f"{name} ran once in each of {span}: TaskResults done at {seen}")
    return PeriodVerdict(Count.WAITING, periods, f"{name} over {span}: "
                                                 + (f"once a period so far, done at {seen}" if seen else "no run yet"))
