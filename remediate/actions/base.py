"""What every action is: a typed side effect that describes itself, shows its diff, predicts what it leaves for
check mode, and knows how to execute over the host's one transport."""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.results import CommandOutput
from ..transport.base import Transport


@dataclass(frozen=True)
class ExecContext:
    """What executing an action may use: the host's one transport, the run id, a clock and a sleep."""

    host: str
    transport: Transport
    run_id: str
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    progress: Callable[[str], None] = lambda message: None
    verify_timeout: float = 900.0


@dataclass(frozen=True)
class Outcome:
    """What executing an action produced."""

    output: CommandOutput | None = None
    message: str = ""
    failed: bool = False
    pending: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    # what the audit trail's `result` record adds about a change once it is made (e.g. the rows' real before/after)
    audit: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """Base action. `runs_in_check`: read-only, so it runs in check mode too; `is_change`: counts as a change.

    `interruptible`: an interrupt may kill it mid-way (a file write is always let finish).
    """

    runs_in_check = False
    is_change = True
    interruptible = True

    def describe(self) -> str:
        """One line saying what it does."""
        raise NotImplementedError

    def diff(self, host: str) -> str:
        """A unified diff, when the action edits a file."""
        return ""

    def paths(self) -> tuple[str, ...]:
        """Files this action changes."""
        return ()

    def execute(self, ctx: ExecContext) -> Outcome:
        """Do it."""
        raise NotImplementedError

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        """What the audit trail records before this action runs (rollback reads files' fields back)."""
        return {"action": self.describe()}

    def predict(self) -> tuple[tuple[Hashable, Any], ...]:
        """Check mode: the facts this action would leave, by the subject a probe reads them under, so the steps
        planned after it plan on them (a write's file content)."""
        return ()
