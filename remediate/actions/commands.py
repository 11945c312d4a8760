"""Commands: argv run on the host or in a service's container, a Django shell query, facts handed to
`register:`, and a warning."""
from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import StepError
from ..core.results import CommandOutput
from .base import Action, ExecContext, Outcome


@dataclass(frozen=True)
class RunCommand(Action):
    """Run argv on the host; read-only commands run in check mode too and never count as a change.

    Any other command is not run in check mode and, as in Ansible, is not counted as a change there either (its
    step is `skipped`) unless `decided`: its step's `creates`/`removes` said it has to run."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    cwd: str | None = None
    read_only: bool = False
    timeout: float | None = None
    decided: bool = False

    @property
    def runs_in_check(self) -> bool:  # type: ignore[override]
        return self.read_only

    @property
    def predicts_change(self) -> bool:  # type: ignore[override]
        return self.decided

    @property
    def is_change(self) -> bool:  # type: ignore[override]
        return not self.read_only

    def describe(self) -> str:
        return ("run " if not self.read_only else "query ") + shlex.join(self.argv)

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        return {"action": self.describe(), "type": "command", "argv": list(self.argv), "cwd": self.cwd}

    def execute(self, ctx: ExecContext) -> Outcome:
        result = ctx.transport.run(
            self.argv,
            stdin=self.stdin.encode() if self.stdin is not None else None,
            env=self.env or None,
            cwd=self.cwd,
            timeout=self.timeout,
        )
        output = CommandOutput(self.argv, result.rc, result.out, result.err)
        # no message on failure: the executor reports a failed command by its argv, exit code and output tail
        return Outcome(output=output, failed=result.rc != 0)


@dataclass(frozen=True)
class QueryAction(RunCommand):
    """A Django shell script fed on stdin; its line starting with REMEDIATE_JSON: is the result."""

    def describe(self) -> str:
        return f"query {self.argv[-4] if len(self.argv) >= 4 else ''}: python manage.py shell < script".strip()

    def execute(self, ctx: ExecContext) -> Outcome:
        outcome = super().execute(ctx)
        out = outcome.output
        if outcome.failed or out is None:
            return outcome
        try:
            from ..facts.django import parse_json_line  # with the first JSON command: facts.django loads compose

            return Outcome(out, data={"json": parse_json_line(out.stdout, out.stderr, out.rc)})
        except StepError as exc:
            return Outcome(out, failed=True, message=str(exc))


@dataclass(frozen=True)
class Report(Action):
    """Hands facts already gathered to `register:` (read-only: runs in check mode too)."""

    runs_in_check = True
    is_change = False
    what: str
    facts: Mapping[str, Any]

    def describe(self) -> str:
        return f"read {self.what}"

    def execute(self, ctx: ExecContext) -> Outcome:
        return Outcome(data=dict(self.facts))


@dataclass(frozen=True)
class Warning_(Action):
    """A failed `warn: true` assertion: reported, never a change, never a failure."""

    runs_in_check = True
    is_change = False
    text: str

    def describe(self) -> str:
        return "a warning"  # the text is the outcome's message: said once

    def execute(self, ctx: ExecContext) -> Outcome:
        return Outcome(message=f"WARNING: {self.text}", data={"warning": self.text})
