"""A wait for TaskResults alone on an app whose beat reads django-celery-beat's rows: it knows when the next
send is, waits until `timeout` s after it, and is PENDING when that send comes after --verify-timeout (the
write-up's rows without the lab's every-minute heartbeat: the soonest may be a quarter of an hour away)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

from remediate.actions.base import ExecContext, Outcome
from remediate.actions.queues import QueuesAction, scheduled
from remediate.celery.schedules import parse_tasks
from remediate.facts.compose import Compose, Project
from remediate.facts.django import ShellQuery
from remediate.transport.base import CommandResult
from tests.fakes import FakeTransport

CRON = {"minute": "*", "hour": "*", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*", "timezone": "UTC"}


def row(name: str, minute: str, task: str = "apps.tasks.health") -> dict[str, object]:
    return {"name": name, "task": task, "enabled": True, "one_off": False, "last_run_at": None,
            "total_run_count": 0, "interval": None, "crontab": {**CRON, "minute": minute}}


QUARTERLY = [row("process-document-obsoletion-dates", "15"), row("perform-system-health-check", "*/30")]


def at(hms: str) -> datetime:
    return datetime.fromisoformat(f"2026-12-01T{hms}+00:00")


def answer(now: str, rows: list[dict[str, object]] | None, results: dict[str, int] | None = None) -> dict[str, object]:
    doc: dict[str, object] = {"default_queue": "celery", "routed": {"celery": ["task_default_queue"]},
                              "nodes": {"w@h": ["celery"]}, "lengths": {"celery": 0},
                              "results_since": results or {}, "now": f"2026-12-01T{now}+00:00"}
    if rows is not None:
        doc["beat_rows"] = rows
    return doc


def run(docs: list[dict[str, object]], verify_timeout: float = 900, **keys: object) -> tuple[Outcome, list[float]]:
    replies: Iterator[bytes] = iter(("REMEDIATE_JSON:" + json.dumps(d) + "\n").encode() for d in docs)
    t = FakeTransport().on(("docker", "compose"), lambda argv, stdin: CommandResult(argv, 0, next(replies), b""))
    query = ShellQuery(Compose(("docker", "compose")), Project("/srv/app"), "celery_worker", "script", {})
    clock = [at("12:00:00").timestamp()]  # the step starts at 12:00:00 (its `since`)
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    action = QueuesAction(query, results=("*",), timeout=150, interval=30, **keys)  # type: ignore[arg-type]
    outcome = action.execute(ExecContext("lab", t, "run1", sleep=sleep, clock=lambda: clock[0],
                                         verify_timeout=verify_timeout))
    return outcome, sleeps


def test_the_soonest_send_counts_only_rows_of_the_tasks_waited_for() -> None:
    rows = parse_tasks([row("a", "15"), row("b", "5", task="apps.tasks.other")])
    assert scheduled(rows, ["*"], at("12:00:00")) == (at("12:05:00"), (rows[1],))
    assert scheduled(rows, ["apps.tasks.health"], at("12:00:00")) == (at("12:15:00"), (rows[0],))
    assert scheduled(None, ["*"], at("12:00:00")) is None, "another scheduler: the schedule is unknown"


def test_no_send_before_the_verify_timeout_is_pending_at_once_naming_when() -> None:
    outcome, sleeps = run([answer("12:00:20", QUARTERLY)], verify_timeout=300)
    assert outcome.pending and not outcome.failed and sleeps == []
    assert outcome.message == ("PENDING: no TaskResult since 2026-12-01 12:00:00Z yet, and beat sends none before "
                               "--verify-timeout 300 s: process-document-obsoletion-dates first due "
                               "2026-12-01 12:15:00Z; can be confirmed after 2026-12-01 12:15:05Z")
    assert outcome.data["confirm_after"] == "2026-12-01T12:15:05+00:00"


def test_a_send_within_the_verify_timeout_is_waited_for_past_the_steps_own_timeout() -> None:
    # 12:15 is 880 s away: beyond the step's 150 s, within the default --verify-timeout (900 s)
    docs = [answer("12:00:20", QUARTERLY)] + [answer("12:00:20", QUARTERLY)] * 30
    docs[30] = answer("12:15:30", QUARTERLY, {"apps.tasks.health": 1})
    outcome, sleeps = run(docs)
    assert not outcome.failed and not outcome.pending, outcome.message
    assert "TaskResult rows apps.tasks.health x1" in outcome.message and sum(sleeps) == 900


def test_without_the_rows_the_step_fails_at_its_own_timeout_as_before() -> None:
    outcome, sleeps = run([answer("12:00:20", None)] * 10)
    assert outcome.failed and sum(sleeps) == 150
    assert outcome.message == "within 150 s of 2026-12-01 12:00:00Z: no TaskResult of * yet"


def test_a_send_that_leaves_no_result_fails_timeout_seconds_after_it_is_due() -> None:
    rows = [row("lab-heartbeat", "*")]
    outcome, sleeps = run([answer("12:00:20", rows)] * 10, verify_timeout=900)
    assert outcome.failed, outcome.message
    assert sum(sleeps) == 210  # due 12:01:00, +5 s tick, +150 s: 195 s after 12:00:20, in 30 s sleeps
    assert outcome.message.startswith("within 150 s of lab-heartbeat due 2026-12-01 12:01:00Z (since ")
    assert outcome.data["tasks"] == ["lab-heartbeat"] and outcome.data["due"] == "2026-12-01T12:01:00+00:00"
