"""A verification poll whose command hits its timeout counts that as one unanswered attempt, not a failed host."""
from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from remediate.actions.base import ExecContext
from remediate.actions.celery import RegisteredAction
from remediate.core.errors import CommandFailed
from remediate.transport.base import CommandResult
from tests.fakes import FakeTransport

ARGV = ("docker", "compose", "exec", "celery_worker", "celery", "-A", "edms", "inspect", "registered", "--json")


def _context(transport: FakeTransport) -> tuple[ExecContext, list[float]]:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return ExecContext("lab", transport, "run-1", sleep=sleep, clock=lambda: now[0]), now


def _answers(*answers: CommandResult | None) -> FakeTransport:
    """Each call's answer in turn; None: the transport killed the command at its timeout."""
    queue = list(answers)

    def answer(argv: Sequence[str], stdin: bytes | None) -> CommandResult:
        got = queue.pop(0)
        if got is None:
            raise CommandFailed(tuple(argv), 124, "", "timed out after 30 s; killed")
        return got

    return FakeTransport().on(ARGV[:1], answer)


def _registered(*names: str) -> CommandResult:
    return CommandResult(ARGV, 0, json.dumps({"celery@vm": list(names)}).encode(), b"")


def test_a_timed_out_inspect_is_one_attempt_and_the_next_answer_counts() -> None:
    action = RegisteredAction(ARGV, ("apps.audit.integrity_tasks.run_daily_integrity_check",), timeout=120, interval=5)
    ctx, _ = _context(_answers(None, _registered("apps.audit.integrity_tasks.run_daily_integrity_check")))
    outcome = action.execute(ctx)
    assert not outcome.failed and outcome.message == "all 1 expected task(s) registered"


def test_timed_out_attempts_until_the_deadline_fail_the_step_with_the_last_output() -> None:
    action = RegisteredAction(ARGV, ("x",), timeout=12, interval=5)
    ctx, _ = _context(_answers(None, None, None, None))
    outcome = action.execute(ctx)
    assert outcome.failed
    assert "did not answer `inspect registered` within 12 s" in outcome.message
    assert "timed out after 30 s" in outcome.message


def test_other_command_failures_still_fail_the_host() -> None:
    def broken(argv: Sequence[str], stdin: bytes | None) -> CommandResult:
        raise CommandFailed(tuple(argv), 255, "", "connection lost")

    action = RegisteredAction(ARGV, ("x",), timeout=12, interval=5)
    ctx, _ = _context(FakeTransport().on(ARGV[:1], broken))
    with pytest.raises(CommandFailed):
        action.execute(ctx)
