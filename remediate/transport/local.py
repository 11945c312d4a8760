"""Run commands on this machine (`connection: local`)."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from ..core.errors import CommandFailed
from .base import CommandResult, Identity


class LocalTransport:
    """Commands as local subprocesses, argv only (no shell)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def connect(self) -> None:
        """Nothing to open."""

    def interrupt(self) -> None:
        """Nothing to kill: a local command is in remediate's own process group, where the signal arrives too."""

    def identity(self) -> Identity:
        """This machine, as the user remediate runs as."""
        return Identity("local")

    def notices(self) -> tuple[str, ...]:
        """Nothing to tell."""
        return ()

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv as a subprocess."""
        full_env = {**os.environ, **env} if env else None
        try:
            proc = subprocess.run(
                list(argv), input=stdin or b"", capture_output=True, env=full_env, cwd=cwd, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(tuple(argv), 124, "", f"timed out after {timeout} s") from exc
        except FileNotFoundError as exc:
            return CommandResult(tuple(argv), 127, b"", f"{exc.filename}: command not found".encode())
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def close(self) -> None:
        """Nothing to release."""
