"""Errors that carry where (file:line, field, host, step) and what happened."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in an input file: path and 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


class RemediateError(Exception):
    """Base of every error remediate reports as a message rather than a traceback."""


class InputError(RemediateError):
    """Invalid input (arguments, inventory, playbook, template): exit 3, before any host is contacted."""

    def __init__(self, message: str, where: Location | None = None, field: str | None = None) -> None:
        self.message = message
        self.where = where
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        field = f"{self.field}: " if self.field else ""
        return f"{prefix}{field}{self.message}"


class StepError(RemediateError):
    """A step failed on a host: the message says what, the step result says where."""


class CommandFailed(StepError):
    """A remote or local command exited non-zero where success was required."""

    def __init__(self, argv: tuple[str, ...], rc: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(str(self))

    def __str__(self) -> str:
        tail = tail_lines(self.stderr or self.stdout, 15)
        cmd = " ".join(self.argv)
        if len(cmd) > 300:
            cmd = cmd[:300] + " ..."
        return f"command failed (exit {self.rc}): {cmd}" + (f"\n{tail}" if tail else "")


class Interrupted(StepError):
    """SIGINT/SIGTERM stopped the run; an in-flight remote command was killed."""


class Unreachable(RemediateError):
    """The host could not be reached or authenticated, or its key was not trusted."""


def tail_lines(text: str, n: int) -> str:
    """The last n non-empty lines of text, for error messages."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])
