"""The transport protocol, command results, and the one place where argv becomes a shell string."""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..core.errors import CommandFailed
from ..core.options import is_user_name

if TYPE_CHECKING:
    from .docker import DockerAPI


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


@dataclass(frozen=True)
class Become:
    """Run as `user` through sudo (`become: true` in the inventory, a play or a step)."""

    user: str = "root"

    def __post_init__(self) -> None:
        if not is_user_name(self.user):
            raise ValueError(f"become_user {self.user!r} is not a user name")


@dataclass(frozen=True)
class Identity:
    """Who acts on a host: the connection, its user and address, and the fingerprints of both SSH keys."""

    connection: str  # ssh | local
    user: str | None = None
    address: str = "local"
    host_key_fingerprint: str | None = None
    client_key_fingerprint: str | None = None
    identity_file: str | None = None
    via: str | None = None  # the jump hosts in front of it, user@address:port, comma-separated

    def audit_fields(self) -> dict[str, Any]:
        """As the audit trail records it (`host`, `diagnosis` records)."""
        if self.connection == "local":
            return {"connection": "local", "ssh_user": None, "address": "local"}
        return {"connection": self.connection, "ssh_user": self.user, "address": self.address,
                "host_key_fingerprint": self.host_key_fingerprint,
                "client_key_fingerprint": self.client_key_fingerprint, "identity_file": self.identity_file,
                **({"via": self.via} if self.via else {})}


@runtime_checkable
class Keeps(Protocol):
    """A transport that can run a script in the host's shell itself (not a subshell, as every command), so that
    what it opens, the run lock's descriptor, stays open for the run without a channel or login of its own."""

    def keep(self, script: str, args: Sequence[str]) -> CommandResult:
        """Run script (a shell function's body) with args in the host's shell itself; its result."""
        ...

    def let_go(self, script: str) -> None:
        """Run script in the host's shell itself to undo keep's, and stop keeping (best effort)."""
        ...


class Transport(Protocol):
    """Runs argv commands on one host; opened once per host and reused by every probe and action."""

    name: str

    def connect(self) -> None:
        """Open the connection now (a host that cannot be reached fails before its first step)."""
        ...

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

    def interrupt(self) -> None:
        """Kill the command running now and refuse new ones (called from another thread)."""
        ...

    def as_user(self, become: Become | None) -> Transport:
        """The same host, its commands run as become.user through sudo (None: as the login user itself),
        over this transport's connection; closing it closes nothing."""
        ...

    def identity(self) -> Identity:
        """Who acts on the host (known once connected)."""
        ...

    def notices(self) -> tuple[str, ...]:
        """What the connection has to tell the operator (a host key it added)."""
        ...

    def docker(self) -> DockerAPI:
        """The host's Docker Engine API, opened on first use over this connection and closed with it; it acts as
        this transport's identity (a view that becomes another user dials its own)."""
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
