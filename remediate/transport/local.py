"""Run commands on this machine (`connection: local`)."""
from __future__ import annotations

import getpass
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..core.errors import CommandFailed, StepError
from .base import Become, CommandResult, Identity, Transport, shell_command

if TYPE_CHECKING:
    from .docker import DockerAPI


class LocalTransport:
    """Commands as local subprocesses, argv only (no shell); as another user through `sudo -n`."""

    def __init__(self, name: str, become: Become | None = None, password: str | None = None,
                 command_timeout: float | None = None) -> None:
        self.name = name
        self.become = become
        self._password = password
        self._primed: set[str] = set()
        self._lock = threading.Lock()
        # the bound on a command that names none (--command-timeout); None: unbounded
        self.command_timeout = command_timeout
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

    def as_user(self, become: Become | None) -> Transport:
        """Commands as become.user through sudo (nothing to do when remediate already runs as that user)."""
        return _AsUser(self, become)

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv as a subprocess (through sudo when the host is become; a command that cannot be started
        is a result, as a shell reports it)."""
        return self._run(self.become, argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)

    def _run(self, become: Become | None, argv: Sequence[str], *, stdin: bytes | None, env: Mapping[str, str] | None,
             cwd: str | None, timeout: float | None) -> CommandResult:
        if become is not None and become.user != getpass.getuser():
            self._prime(become)
            # sudo resets the environment and may not chdir: both go into the command, quoted in one place
            argv, env, cwd = ("sudo", "-H", "-n", "-u", become.user, "--", "sh", "-c", shell_command(argv, env, cwd)), None, None
        full_env = {**os.environ, **env} if env else None
        limit = timeout if timeout is not None else self.command_timeout
        try:
            proc = subprocess.run(
                list(argv), input=stdin or b"", capture_output=True, env=full_env, cwd=cwd, timeout=limit
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(tuple(argv), 124, "", f"timed out after {limit:g} s") from exc
        except FileNotFoundError as exc:
            return CommandResult(tuple(argv), 127, b"", f"{exc.filename}: command not found".encode())
        except OSError as exc:  # E2BIG (an argument over 128 KiB), EACCES, ENOEXEC: the shell's 126
            return CommandResult(tuple(argv), 126, b"", f"{argv[0]}: cannot run: {exc.strerror or exc}".encode())
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def _prime(self, become: Become) -> None:
        """With a sudo password, validate it once (`sudo -S -v`): sudo then lets this process's children
        through without asking (its credential cache), and `sudo -n` fails clearly where it would not."""
        with self._lock:
            if self._password is None or become.user in self._primed:
                return
            done = subprocess.run(["sudo", "-S", "-p", "", "-v"], input=self._password.encode() + b"\n",
                                  capture_output=True, check=False)
            if done.returncode != 0:
                raise StepError(f"sudo on this machine refused the become password: "
                                f"{done.stderr.decode('utf-8', 'replace').strip()[-300:]}")
            self._primed.add(become.user)

    def docker(self) -> DockerAPI:
        """This machine's Docker Engine API (its socket), opened on first use."""
        if self._docker is None:
            from .docker import DockerAPI

            self._docker = DockerAPI(self.name, None, user=getpass.getuser(), role="the local user")
        return self._docker

    def close(self) -> None:
        """Close the Engine API's connection, if one was opened."""
        if self._docker is not None:
            self._docker.close()
            self._docker = None


class _AsUser:
    """The local transport as one user."""

    def __init__(self, owner: LocalTransport, become: Become | None) -> None:
        self._owner = owner
        self.become = become
        self.name = owner.name

    def connect(self) -> None:
        """Nothing to open."""

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv as the become user."""
        return self._owner._run(self.become, argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)

    def interrupt(self) -> None:
        self._owner.interrupt()

    def as_user(self, become: Become | None) -> Transport:
        return self._owner.as_user(become)

    def identity(self) -> Identity:
        return self._owner.identity()

    def notices(self) -> tuple[str, ...]:
        return self._owner.notices()

    def docker(self) -> DockerAPI:
        """This machine's socket, as remediate's own user: sudo cannot carry a socket (a become user's Docker
        access is the local user's here)."""
        return self._owner.docker()

    def close(self) -> None:
        """The host's transport is closed by its owner."""
