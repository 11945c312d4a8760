"""Celery verifications: the worker registered the expected tasks; the soonest-due PeriodicTasks really ran; a row
runs exactly once per period (one beat sends it)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..celery.periods import SETTLE, Count, count_runs, edges, proof_row
from ..celery.schedules import iso, soonest
from ..celery.tasks import unregistered
from ..core.errors import CommandFailed, StepError, tail_lines
from ..core.results import CommandOutput
from ..facts import compose as cf
from ..facts import containers as fc
from ..facts.celery import CeleryState, ask_beat, parse_state, registered
from ..facts.django import ShellQuery
from ..transport.base import CommandResult
from .base import Action, ExecContext, Outcome


TIMED_OUT = 124  # the transports' exit code for a command they killed at its timeout


@dataclass(frozen=True)
class RegisteredAction(Action):
    """Poll `celery inspect registered` in the worker until it answers; every expected task must be registered."""

    is_change = False
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    timeout: float
    interval: float

    def describe(self) -> str:
        return f"worker registers {len(self.expect)} task(s): {', '.join(self.expect)}"

    def execute(self, ctx: ExecContext) -> Outcome:
        deadline = ctx.clock() + self.timeout
        last = ""
        while True:
            try:
                result = ctx.transport.run(self.argv, timeout=max(self.interval * 4, 30))
            except CommandFailed as exc:
                if exc.rc != TIMED_OUT:
                    raise
                # a worker too busy to answer in time is one unanswered attempt of the poll, not a failed host
                result = CommandResult(exc.argv, exc.rc, exc.stdout.encode(), exc.stderr.encode())
            last = (result.out + result.err).strip()
            names = registered(result)
            if names is not None:
                missing = unregistered(self.expect, names)
                out = CommandOutput(self.argv, result.rc, result.out[-4000:], result.err[-2000:])
                data = {"registered": sorted(names), "missing": missing}
                if missing:
                    return Outcome(out, failed=True, data=data,
                                   message=f"not registered with the worker: {', '.join(missing)}")
                return Outcome(out, data=data, message=f"all {len(self.expect)} expected task(s) registered")
            if ctx.clock() >= deadline:
                return Outcome(CommandOutput(self.argv, result.rc, result.out, result.err), failed=True,
                               message=f"the worker did not answer `inspect registered` within {self.timeout:g} s; "
                                       f"last output:\n{tail_lines(last, 8)}")
            ctx.progress("waiting for the worker to answer `celery inspect registered`")
            ctx.sleep(self.interval)


@dataclass(frozen=True)
class TasksRunAction(Action):
    """Wait until the PeriodicTask(s) due soonest after beat (re)started show a new run in the database."""

    is_change = False
    project_name: str
    beat_service: str
    state: ShellQuery  # the state query, in the service that reads the database
    probe: ShellQuery  # beat's own probe, in beat's container
    interval: float
    grace: float
    after: datetime | None = None  # count runs after this time (when later than beat's start)
    rows: tuple[str, ...] = ()  # these PeriodicTasks (by name) instead of the soonest-due ones
    by_results: bool = False  # a TaskResult since then is proof enough: no wait for beat's database sync

    def describe(self) -> str:
        since = f"{self.beat_service} started" if self.after is None else f"{iso(self.after)}"
        which = ", ".join(self.rows) if self.rows else "periodic tasks"
        proof = "TaskResult rows" if self.by_results else "last_run_at, total_run_count, TaskResult"
        return f"{which} show runs after {since} ({proof})"

    def _lag(self, ctx: ExecContext) -> tuple[timedelta, str]:
        """Beat's own answer (in its container) to how long after a send it saves last_run_at, and why."""
        probe = ask_beat(ctx.transport, self.probe)
        if probe.error:
            raise StepError(f"{self.beat_service}: {probe.error}")
        return probe.lag(), probe.lag_words()

    def _query(self, ctx: ExecContext, since: datetime) -> CeleryState:
        return parse_state(self.state.ask(ctx.transport, "state query", REMEDIATE_SINCE=since.isoformat()))

    def execute(self, ctx: ExecContext) -> Outcome:
        containers = fc.gather_containers(ctx.transport, self.project_name, self.beat_service)
        running = [c for c in containers.containers if c.running and c.started_at]
        if not running:
            return Outcome(failed=True, message=f"{self.beat_service} is not running")
        started = max(c.started_at for c in running if c.started_at)
        since_words = f"{self.beat_service} started"
        if self.after is not None and self.after > started:
            started, since_words = self.after, iso(self.after)
        state = self._query(ctx, started)
        candidates = state.tasks
        if self.rows:
            candidates = tuple(t for t in state.tasks if t.name in self.rows)
            missing = sorted(set(self.rows) - {t.name for t in candidates})
            if missing:
                return Outcome(failed=True, message=f"no PeriodicTask named {', '.join(missing)}")
        first = soonest(candidates, started)
        if first is None:
            return Outcome(failed=True, message="no enabled PeriodicTask can fire: nothing to verify runs with")
        due, chosen = first
        if self.rows:
            chosen = tuple(t for t in candidates if t.enabled)
        # with the django-db backend the worker's TaskResult shows the run at once; else beat's database sync
        by_results = self.by_results and state.results_since(chosen[0].task, any_backend=True) is not None
        lag, lag_words = self._lag(ctx)
        if by_results:
            lag, lag_words = timedelta(seconds=5), "a TaskResult counts: beat's tick (5 s), no database sync to wait for"
        deadline = due + lag + timedelta(seconds=self.grace)
        now = state.now or containers.now
        names = ", ".join(t.name for t in chosen)
        limit = now + timedelta(seconds=ctx.verify_timeout)
        data: dict[str, Any] = {"tasks": [t.name for t in chosen], "due": due.isoformat(), "deadline": deadline.isoformat(),
                                "beat_started": started.isoformat(), "sync_lag": lag.total_seconds(), "lag": lag_words}
        if deadline > limit:
            return Outcome(pending=True, data={**data, "confirm_after": deadline.isoformat()},
                           message=f"PENDING: {names} first due {iso(due)}; can be confirmed after {iso(deadline)} "
                                   f"(beyond --verify-timeout {ctx.verify_timeout:g} s)")
        while True:
            current = {t.name: t for t in state.tasks}
            seen = []
            done = True
            for task in chosen:
                t = current.get(task.name)
                ran = bool(t and t.last_run_at and t.last_run_at > started and t.total_run_count > 0)
                executed = state.results_since(task.task, any_backend=by_results)
                seen.append(f"{task.name}: last_run_at {iso(t.last_run_at) if t else 'gone'}, runs {t.total_run_count if t else 0}"
                            + (f", results since {iso(started)} {executed}" if executed is not None else ""))
                done &= (ran or by_results) and (executed is None or executed > 0)
            summary = "; ".join(seen)
            if done:
                return Outcome(message=f"ran after {since_words}: {summary}", data={**data, "seen": summary})
            now = state.now or now
            if now >= deadline:
                return Outcome(failed=True, data={**data, "seen": summary},
                               message=f"{names} due {iso(due)} did not show a run by the deadline {iso(deadline)}; "
                                       f"last seen: {summary}")
            ctx.progress(f"{names} due {iso(due)}, deadline {iso(deadline)} ({lag_words}); last seen: {summary}")
            ctx.sleep(self.interval)
            state = self._query(ctx, started)


@dataclass(frozen=True)
class OncePerPeriodAction(Action):
    """Count a PeriodicTask's TaskResults over `periods` full periods and require exactly one in each: the named
    rows, else the enabled row whose periods end soonest. Periods are counted from the row's first due time after
    this step starts (the playbook has seen the worker ready by then, so what waited in the queue while it was
    recreated is done); two runs in a period fail at once, naming their times."""

    is_change = False
    state: ShellQuery  # the state query, in a service that reads the database
    periods: int
    rows: tuple[str, ...] = ()
    interval: float = 10.0

    def describe(self) -> str:
        which = ", ".join(self.rows) if self.rows else "the periodic task whose periods end soonest"
        return f"{which}: exactly one TaskResult per period over {self.periods} period(s)"

    def _chosen(self, state: CeleryState, start: datetime) -> dict[str, tuple[datetime, ...]] | str:
        """Each row to count and its due times (the period edges), or why there is none."""
        if not self.rows:
            best = proof_row(state.tasks, start, self.periods)
            if best is None:
                return "no enabled PeriodicTask can fire: nothing to count runs of"
            return {best[0].name: best[1]}
        tasks = {t.name: t for t in state.tasks}
        missing = [name for name in self.rows if name not in tasks]
        if missing:
            return f"no PeriodicTask named {', '.join(missing)}"
        out = {}
        for name in self.rows:
            due = edges(tasks[name], start, self.periods) if tasks[name].enabled else None
            if due is None:
                return f"{name} is disabled or can never fire: it has no periods to count runs in"
            out[name] = due
        return out

    def execute(self, ctx: ExecContext) -> Outcome:
        state = parse_state(self.state.ask(ctx.transport, "state query"))
        start = state.now or datetime.fromtimestamp(ctx.clock(), timezone.utc)
        chosen = self._chosen(state, start)
        if isinstance(chosen, str):
            return Outcome(failed=True, message=chosen)
        end = max(due[-1] for due in chosen.values()) + SETTLE
        data: dict[str, Any] = {"start": start.isoformat(), "rows": {n: [d.isoformat() for d in due] for n, due in chosen.items()},
                                "confirm_after": end.isoformat()}
        names = ", ".join(chosen)
        if end > start + timedelta(seconds=ctx.verify_timeout):
            return Outcome(pending=True, data=data,
                           message=f"PENDING: {names}: {self.periods} period(s) from {iso(min(d[0] for d in chosen.values()))}; "
                                   f"can be confirmed after {iso(end)} (beyond --verify-timeout {ctx.verify_timeout:g} s)")
        after = json.dumps({n: due[0].isoformat() for n, due in chosen.items()})
        # the host's clock judges the periods; the controller's bounds the wait should the host's stand still
        give_up = ctx.clock() + (end - start).total_seconds() + 120
        while True:
            state = parse_state(self.state.ask(ctx.transport, "state query", REMEDIATE_RESULTS_OF=after))
            now = state.now or datetime.fromtimestamp(ctx.clock(), timezone.utc)
            runs, why = state.row_runs()
            if why:
                return Outcome(failed=True, data=data, message=f"{names}: {why}")
            verdicts = [count_runs(n, runs.get(n, ()), due, now) for n, due in chosen.items()]
            data = {**data, "periods": {n: [{"start": p.start.isoformat(), "end": p.end.isoformat(),
                                             "done": [t.isoformat() for t in p.done]} for p in v.periods]
                                        for n, v in zip(chosen, verdicts)}}
            bad = [v.message for v in verdicts if v.count in (Count.TWICE, Count.MISSING)]
            if bad:
                return Outcome(failed=True, data=data, message="; ".join(bad))
            if all(v.count is Count.OK for v in verdicts):
                return Outcome(data=data, message=f"counted from {iso(start)} (this step's start): "
                                                  + "; ".join(v.message for v in verdicts))
            if ctx.clock() >= give_up:
                return Outcome(failed=True, data=data, message=f"{names}: the host's clock reads {iso(now)}, "
                                                              f"still before {iso(end)}: no verdict")
            ctx.progress("; ".join(v.message for v in verdicts) + f"; can be confirmed after {iso(end)}")
            ends = [p.end + SETTLE for v in verdicts for p in v.periods if p.end + SETTLE > now]
            ctx.sleep(max(1.0, min([self.interval] + [(e - now).total_seconds() for e in ends])))
