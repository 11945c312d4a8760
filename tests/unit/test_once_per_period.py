"""The two-beats proof (issue 16 #7): a row's TaskResults counted per period (pure), and the verification that
polls the state query for them (against a fake transport that answers only the state query)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from remediate.actions.base import ExecContext, Outcome
from remediate.actions.celery import OncePerPeriodAction
from remediate.celery.periods import Count, count_runs, edges, proof_row, stamp
from remediate.celery.schedules import Task
from remediate.facts.compose import Compose, Project
from remediate.facts.django import ShellQuery
from remediate.transport.base import CommandResult
from tests.fakes import FakeTransport

UTC = timezone.utc


def at(hms: str, micro: int = 0) -> datetime:
    h, m, s = (int(x) for x in hms.split(":"))
    return datetime(2026, 12, 1, h, m, s, micro, tzinfo=UTC)


def task(name: str, cron: str | None = "* * * * *", every: float | None = None, enabled: bool = True,
         one_off: bool = False, last_run: datetime | None = None) -> Task:
    return Task(name, "apps.tasks.x", enabled, cron, "UTC", every, last_run, 0, one_off)


DUE = (at("12:01:00"), at("12:02:00"), at("12:03:00"))

# (runs' date_done, the host's now) -> verdict
CASES = [
    pytest.param([at("12:01:00", 12000), at("12:02:00", 15000)], at("12:03:06"), Count.OK, id="once in each"),
    pytest.param([at("12:01:00", 10000), at("12:01:00", 30000)], at("12:01:02"), Count.TWICE,
                 id="twice in the first period: at once"),
    pytest.param([at("12:01:00", 10000), at("12:02:00", 10000), at("12:02:00", 40000)], at("12:02:01"), Count.TWICE,
                 id="twice in the second period, before it ends"),
    pytest.param([at("12:01:00", 10000)], at("12:02:04"), Count.WAITING, id="the first period not settled yet"),
    pytest.param([at("12:01:00", 10000)], at("12:02:06"), Count.WAITING, id="the second period under way"),
    pytest.param([], at("12:02:06"), Count.MISSING, id="none in a period that ended"),
    pytest.param([at("12:01:00", 10000)], at("12:03:06"), Count.MISSING, id="none in the second"),
    # the period the change fell in is not counted: a run before the first due time (a partial period)
    pytest.param([at("12:00:59", 900000), at("12:01:00", 10000), at("12:02:00", 10000)], at("12:03:06"), Count.OK,
                 id="a run before the first edge is not counted"),
    # a run done exactly at a due time belongs to the period it starts
    pytest.param([at("12:01:30"), at("12:02:00")], at("12:03:06"), Count.OK, id="a run at an edge opens its period"),
    pytest.param([at("12:01:00", 10000), at("12:03:00", 10000)], at("12:03:06"), Count.MISSING,
                 id="a run after the last period is not counted"),
]


@pytest.mark.parametrize(("done", "now", "count"), CASES)
def test_count_runs(done: list[datetime], now: datetime, count: Count) -> None:
    assert count_runs("lab-heartbeat", done, DUE, now).count is count


def test_twice_names_the_period_and_both_times() -> None:
    verdict = count_runs("lab-heartbeat", [at("12:01:00", 34000), at("12:01:00", 12000)], DUE, at("12:01:05"))
    assert verdict.message == ("lab-heartbeat ran twice in its period 2026-12-01 12:01:00Z to 2026-12-01 12:02:00Z "
                               "(TaskResults done at 12:01:00.01 and 12:01:00.03): another beat sends it")
    assert [len(p.done) for p in verdict.periods] == [2, 0]


def test_three_beats_and_the_other_messages() -> None:
    three = count_runs("r", [at("12:01:00", 10000 * i) for i in (1, 2, 3)], DUE, at("12:01:05"))
    assert "r ran 3 times in its period" in three.message and "12:01:00.01, 12:01:00.02 and 12:01:00.03" in three.message
    ok = count_runs("r", [at("12:01:00", 10000), at("12:02:00", 20000)], DUE, at("12:03:05"))
    assert ok.message == "r ran once in each of 2 period(s) from 2026-12-01 12:01:00Z: TaskResults done at 12:01:00.01 and 12:02:00.02"
    missing = count_runs("r", [], DUE, at("12:02:05"))
    assert missing.message.startswith("r left no TaskResult in its period 2026-12-01 12:01:00Z to 2026-12-01 12:02:00Z")
    assert count_runs("r", [], DUE, at("12:01:30")).message == "r over 2 period(s) from 2026-12-01 12:01:00Z: no run yet"


def test_stamp_keeps_hundredths() -> None:
    assert stamp(at("09:05:07", 999999)) == "09:05:07.99"


def test_edges_start_at_the_first_due_time_after_the_start() -> None:
    assert edges(task("m"), at("12:00:30"), 2) == DUE
    assert edges(task("m"), at("12:01:00"), 2) == (at("12:02:00"), at("12:03:00"), at("12:04:00"))
    assert edges(task("h", cron="0 * * * *"), at("12:00:30"), 1) == (at("13:00:00"), at("14:00:00"))
    every = task("e", cron=None, every=30, last_run=at("12:00:10"))
    assert edges(every, at("12:00:30"), 2) == (at("12:00:40"), at("12:01:10"), at("12:01:40"))
    assert edges(task("never", cron="0 0 31 2 *"), at("12:00:30"), 2) is None


def test_proof_row_is_the_enabled_row_whose_periods_end_soonest() -> None:
    rows = [task("hourly", cron="0 * * * *"), task("minutely"), task("off", enabled=False, cron="* * * * *"),
            task("once", one_off=True), task("b-every-20s", cron=None, every=20, last_run=at("12:00:25"))]
    # the hourly row is due first (13:00 after 12:59:50), but its two periods end at 15:00
    chosen = proof_row(rows, at("12:59:50"), 2)
    assert chosen is not None and chosen[0].name == "b-every-20s"
    assert chosen[1] == (at("13:00:05"), at("13:00:25"), at("13:00:45"))
    chosen = proof_row(rows[:4], at("12:59:50"), 2)
    assert chosen is not None and chosen[0].name == "minutely"
    assert proof_row([task("off", enabled=False), task("never", cron="0 0 31 2 *")], at("12:00:00"), 2) is None


# --- the verification, against a fake transport answering the state query ---------------------------------------

ROW = {"name": "lab-heartbeat", "task": "apps.tasks.heartbeat", "enabled": True, "one_off": False,
       "last_run_at": "2026-12-01T12:00:00+00:00", "total_run_count": 3, "interval": None,
       "crontab": {"minute": "*", "hour": "*", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*",
                   "timezone": "UTC"}}
HOURLY = {**ROW, "name": "hourly", "crontab": {**ROW["crontab"], "minute": "0"}}


def answers(docs: list[dict[str, object]]) -> Iterator[bytes]:
    for doc in docs:
        yield ("REMEDIATE_JSON:" + json.dumps(doc) + "\n").encode()


def run(docs: list[dict[str, object]], rows: tuple[str, ...] = (), verify_timeout: float = 900
        ) -> tuple[Outcome, FakeTransport, list[float]]:
    replies = answers(docs)
    t = FakeTransport().on(("docker", "compose"), lambda argv, stdin: CommandResult(argv, 0, next(replies), b""))
    query = ShellQuery(Compose(("docker", "compose")), Project("/srv/app"), "celery_worker", "script",
                       {"REMEDIATE_CELERY_APP": "edms"})
    sleeps: list[float] = []
    action = OncePerPeriodAction(query, 2, rows, interval=10)
    outcome = action.execute(ExecContext("lab", t, "run1", sleep=sleeps.append, clock=lambda: 0.0,
                                         verify_timeout=verify_timeout))
    return outcome, t, sleeps


def state(now: str, done: list[str] | None = None, extended: bool = True) -> dict[str, object]:
    doc: dict[str, object] = {"now": f"2026-12-01T{now}+00:00", "periodic_tasks": [HOURLY, ROW]}
    if done is not None:
        doc["row_results"] = {"extended": extended, "done": {"lab-heartbeat": [f"2026-12-01T{d}+00:00" for d in done]}}
    return doc


def test_one_run_a_period_passes_after_both_periods() -> None:
    outcome, t, sleeps = run([state("12:00:30"), state("12:00:40", []), state("12:01:20", ["12:01:00.010000"]),
                              state("12:02:06", ["12:01:00.010000", "12:02:00.020000"]),
                              state("12:03:05", ["12:01:00.010000", "12:02:00.020000", "12:03:00.010000"])])
    assert not outcome.failed and not outcome.pending, outcome.message
    assert outcome.message == ("counted from 2026-12-01 12:00:30Z (this step's start): lab-heartbeat ran once in each "
                               "of 2 period(s) from 2026-12-01 12:01:00Z: TaskResults done at 12:01:00.01 and 12:02:00.02")
    # the first query reads the rows; the others ask for the chosen row's runs since its first due time
    assert "REMEDIATE_RESULTS_OF" not in t.calls[0] and all("REMEDIATE_RESULTS_OF" in c for c in t.calls[1:])
    assert sleeps == [10, 10, 10]


def test_two_runs_in_a_period_fail_at_once_naming_them() -> None:
    outcome, _, sleeps = run([state("12:00:30"), state("12:01:02", ["12:01:00.010000", "12:01:00.030000"])])
    assert outcome.failed
    assert outcome.message.startswith("lab-heartbeat ran twice in its period 2026-12-01 12:01:00Z")
    assert "12:01:00.01 and 12:01:00.03): another beat sends it" in outcome.message
    assert sleeps == []


def test_without_result_extended_the_runs_cannot_be_counted() -> None:
    outcome, _, _ = run([state("12:00:30"), state("12:00:31", [], extended=False)])
    assert outcome.failed and "result_extended is off" in outcome.message


def test_periods_beyond_the_verify_timeout_are_pending() -> None:
    outcome, t, _ = run([state("12:00:30")], rows=("hourly",))
    assert outcome.pending and "can be confirmed after 2026-12-01 15:00:05Z" in outcome.message
    assert len(t.calls) == 1


def test_a_named_row_that_is_missing_fails() -> None:
    outcome, _, _ = run([state("12:00:30")], rows=("nope",))
    assert outcome.failed and outcome.message == "no PeriodicTask named nope"
