"""The transport protocol, command results, and the one place where argv becomes a shell string."""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..core.errors import CommandFailed


@dataclass(frozen=True)
class CommandResult:
    """What a command did: its argv, exit code and raw output."""

    argv: tuple[str, ...]
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        """stdout as text."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        """stderr as text."""
        return self.stderr.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """Exit code 0."""
        return self.rc == 0

    def check(self) -> CommandResult:
        """Raise CommandFailed unless the command succeeded."""
        if self.rc != 0:
            raise CommandFailed(self.argv, self.rc, self.out, self.err)
        return self


class Transport(Protocol):
    """Runs argv commands on one host; opened once per host and reused by every step."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one command and return its result (a non-zero exit is a result, not an error)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def shell_command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """The shell string for argv with env and cwd: every value quoted, nothing glued unquoted."""
    if not argv:
        raise ValueError("empty argv")
    parts = []
    if cwd:
        parts.append(f"cd {shlex.quote(cwd)} &&")
    if env:
        for key in env:
            if not key.isidentifier():
                raise ValueError(f"invalid environment variable name {key!r}")
        parts.append("env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()))
    parts.append(shlex.join(argv))
    return " ".join(parts)
