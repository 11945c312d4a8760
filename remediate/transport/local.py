"""Run commands on this machine (`connection: local`)."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..core.errors import CommandFailed
from .base import CommandResult, Identity

if TYPE_CHECKING:
    from .docker import DockerAPI


class LocalTransport:
    """Commands as local subprocesses, argv only (no shell)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._docker: DockerAPI | None = None

    def connect(self) -> None:
        """Nothing to open."""

    def interrupt(self) -> None:
        """Nothing to kill: a local command is in remediate's own process group, where the signal arrives too;
        a wait on container events is woken."""
        if self._docker is not None:
            self._docker.interrupt()

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

    def docker(self) -> DockerAPI:
        """This machine's Docker Engine API (its socket), opened on first use."""
        if self._docker is None:
            import getpass

            from .docker import DockerAPI

            self._docker = DockerAPI(self.name, None, user=getpass.getuser())
        return self._docker

    def close(self) -> None:
        """Close the Engine API's connection, if one was opened."""
        if self._docker is not None:
            self._docker.close()
            self._docker = None
