"""Celery's queues, asked through its own broker connection (templates/celery_queues.py.j2): read once, or
polled until queues drained and tasks left TaskResult rows since a moment (a verification)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..celery import commands
from ..celery.schedules import Task, iso, soonest
from ..core.errors import StepError
from ..facts import containers as fc
from ..facts.celery import QueueFacts, parse_queues
from ..facts.django import ShellQuery
from .base import Action, ExecContext, Outcome


# beat's tick: a row due at T is sent by about T + 5 s
TICK = timedelta(seconds=5)


def scheduled(rows: Sequence[Task] | None, results: Sequence[str], since: datetime) -> tuple[datetime, tuple[Task, ...]] | None:
    """When beat's schedule (django-celery-beat's enabled rows) next sends a task a wait for `results` counts
    ("*": any): the soonest row's first due time after `since`, and the rows due then; None when the schedule
    is unknown (another scheduler) or none of them can fire."""
    if rows is None:
        return None
    return soonest([t for t in rows if "*" in results or t.task in results], since)


@dataclass(frozen=True)
class QueuesAction(Action):
    """What the workers consume, where tasks are sent and how many messages wait; with `drained` / `results`,
    wait until those queues are empty and those tasks (any task for "*") left a TaskResult since `since_service`
    (re)started, else since this step began.

    A wait for results alone (no queue to drain: nothing waits that would leave them) on an app whose beat reads
    django-celery-beat's rows knows when the next one is sent: it waits until `timeout` s after the soonest
    row's first due time since then, and is PENDING at once when that send comes after --verify-timeout (a
    host whose soonest task is hourly is not a failed proof); otherwise `timeout` s from the step's start."""

    runs_in_check = True
    is_change = False
    query: ShellQuery
    project_name: str = ""
    command: tuple[str, ...] = ()  # the worker service's command (compose model): the queues it names
    consumed: tuple[str, ...] = ()
    drained: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    since_service: str = ""
    timeout: float = 180.0
    interval: float = 3.0

    def describe(self) -> str:
        if not self.waits:
            return f"read the queues (in {self.query.service})"
        parts = ([f"queue(s) {', '.join(self.consumed)} consumed"] if self.consumed else []) + (
            [f"queue(s) {', '.join(self.drained)} drained"] if self.drained else []) + (
            [f"TaskResult rows of {', '.join(self.results)}"] if self.results else [])
        return "wait for " + " and ".join(parts)

    @property
    def waits(self) -> bool:
        """Whether this waits on something (a verification) rather than reads once."""
        return bool(self.consumed or self.drained or self.results)

    def _data(self, q: QueueFacts) -> dict[str, Any]:
        """What `register:` sees: the queue facts, and from the worker's command the queues it names
        (`command_queues`), those tasks are sent to beyond them that nobody consumes (`missing`), and those it
        names that no answering node consumes (`stuck`)."""
        parsed = commands.parse(self.command)
        named = parsed.queues(q.default_queue) if parsed is not None else None
        data = q.as_json()
        data["command_queues"] = list(named) if named is not None else None
        data["missing"] = [x for x in q.routed if named is not None and q.nodes and x not in named and x not in q.consumed]
        data["stuck"] = [x for x in named or () if q.nodes and x not in q.consumed]
        return data

    def _since(self, ctx: ExecContext) -> datetime:
        if self.since_service:
            state = fc.gather_containers(ctx.transport, self.project_name, self.since_service)
            started = [c.started_at for c in state.containers if c.running and c.started_at]
            if not started:
                raise StepError(f"{self.since_service} is not running")
            return max(started)
        return datetime.fromtimestamp(ctx.clock(), timezone.utc)

    def _ask(self, ctx: ExecContext, since: datetime | None) -> QueueFacts:
        more = {"REMEDIATE_SINCE": since.isoformat()} if since is not None else {}
        return parse_queues(self.query.ask(ctx.transport, f"queue query in {self.query.service}", **more))

    def _missing(self, q: QueueFacts) -> list[str]:
        missing = [f"no worker consumes {name!r}" for name in self.consumed if name not in q.consumed]
        missing += [f"{name!r} holds {q.lengths.get(name)}" for name in self.drained if q.lengths.get(name) != 0]
        done = q.results_since or {}
        for task in self.results:
            if (sum(done.values()) if task == "*" else done.get(task, 0)) == 0:
                missing.append(f"no TaskResult of {task} yet")
        return missing

    def execute(self, ctx: ExecContext) -> Outcome:
        if not self.waits:
            return Outcome(data=self._data(self._ask(ctx, None)))
        since = self._since(ctx)
        began = ctx.clock()
        limit = began + ctx.verify_timeout
        deadline = began + min(self.timeout, ctx.verify_timeout)
        within = f"within {min(self.timeout, ctx.verify_timeout):g} s of {iso(since)}"
        sends: tuple[datetime, tuple[Task, ...]] | None = None
        sent: dict[str, Any] = {}  # when beat sends the soonest row the wait counts, once known
        while True:
            q = self._ask(ctx, since)
            missing = self._missing(q)
            data: dict[str, Any] = {**self._data(q), "since": since.isoformat()}
            seen = ", ".join(f"{name}: {q.lengths.get(name)}" for name in self.drained)
            done = ", ".join(f"{t} x{n}" for t, n in sorted((q.results_since or {}).items()))
            if not missing:
                return Outcome(data=data, message=f"since {iso(since)}: " + "; ".join(
                    x for x in (f"waiting {seen}" if seen else "", f"TaskResult rows {done}" if done else "") if x))
            now = ctx.clock()
            results_only = not self.drained and all(name in q.consumed for name in self.consumed)
            if results_only and q.now is not None and sends is None:
                sends = scheduled(q.beat_rows, self.results, since)
                if sends is not None:
                    due, rows = sends
                    names = ", ".join(t.name for t in rows)
                    earliest = due + TICK
                    sent = {"due": due.isoformat(), "tasks": [t.name for t in rows]}
                    if earliest > q.now + timedelta(seconds=limit - now):
                        return Outcome(pending=True, data={**data, **sent, "confirm_after": earliest.isoformat()},
                                       message=f"PENDING: no TaskResult since {iso(since)} yet, and beat sends none "
                                               f"before --verify-timeout {ctx.verify_timeout:g} s: {names} first due "
                                               f"{iso(due)}; can be confirmed after {iso(earliest)}")
                    deadline = max(deadline, min(limit, now + (earliest - q.now).total_seconds() + self.timeout))
                    within = f"within {self.timeout:g} s of {names} due {iso(due)} (since {iso(since)})"
            if now >= deadline:
                return Outcome(failed=True, data={**data, **sent}, message=f"{within}: {'; '.join(missing)}")
            ctx.progress("; ".join(missing))
            ctx.sleep(self.interval)
