"""How each PeriodicTask stands now: ran within its window, or never run, overdue, pending, never firing."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .beat import BeatProbe
from .schedules import GRACE, Task, iso, last_due, never_fires, next_due


@dataclass(frozen=True)
class TaskHealth:
    """How one PeriodicTask stands now."""

    task: Task
    status: str  # ok | never_run | overdue | pending | never_fires | disabled
    last_due: datetime | None
    next_due: datetime | None
    detail: str


# beat builds a row's entry at its first tick after the log line that says it loads its schedule
LOAD_TICK = timedelta(seconds=10)


def counted_from_load(probe: BeatProbe | None, name: str) -> bool:
    """Whether this host's beat (running the scheduler the probe built) counts the never-run row's due times from
    the moment it loads its schedule."""
    verdict = probe.verdict(name) if probe is not None and probe.runs_probed else None
    return verdict is not None and verdict.never_run_from == "load"


def assess(tasks: Sequence[Task], now: datetime, beat_started: datetime | None, lag: timedelta,
           probe: BeatProbe | None = None, beat_loaded: datetime | None = None) -> tuple[TaskHealth, ...]:
    """Each task: ran within its window (last due + sync lag + grace), or never-run/overdue/pending/never-fires.

    An enabled task that can never fire is described by what *this* host's beat does with it (`probe`, from
    beat's own container), never by a belief about a version. So is a row never run whose beat counts its due
    times from the moment it loads its schedule (`beat_loaded`: its log's last "beat: Starting" or "Schedule
    changed"; django-celery-beat 2.7.0): a due time before that, or within beat's first tick after it, is never
    sent, so the row is pending until its next due time, not never run.
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
        elif t.last_result_at is not None and t.last_result_at >= ld - timedelta(seconds=1):
            # the worker finished the row's run; beat saves last_run_at at its next database sync
            out.append(TaskHealth(t, "ok", ld, nd, f"last run {iso(t.last_result_at)} (its TaskResult; "
                                                   "last_run_at is saved at beat's next sync)"))
        elif beat_started is not None and ld < beat_started:
            out.append(TaskHealth(t, "pending", ld, nd, f"last due {iso(ld)} before beat started {iso(beat_started)}"))
        elif t.last_run_at is None and counted_from_load(probe, t.name) and beat_loaded is not None \
                and ld < beat_loaded + LOAD_TICK:
            who = probe.who if probe is not None else "beat"
            out.append(TaskHealth(t, "pending", ld, nd, f"never run; due {iso(ld)}, before beat had loaded its schedule "
                                                        f"({iso(beat_loaded)}), from which {who} counts a never-run "
                                                        f"row: first sent {iso(nd)}"))
        elif t.last_run_at is None:
            out.append(TaskHealth(t, "never_run", ld, nd, f"never run; was due {iso(ld)}"))
        else:
            out.append(TaskHealth(t, "overdue", ld, nd, f"last run {iso(t.last_run_at)}; was due {iso(ld)}"))
    return tuple(out)
