"""One transport per host for several users in turn (a drift check's run and its diagnosis), closed once."""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..inputs.inventory import Host
from .base import Become, CommandResult, Identity, Transport

if TYPE_CHECKING:
    from .docker import DockerAPI


class Lent:
    """A host's transport lent to one user: everything but close(), which is left to the owner."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.name = transport.name

    def connect(self) -> None:
        """Open the owner's connection (once)."""
        self._transport.connect()

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run over the owner's connection."""
        return self._transport.run(argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)

    def interrupt(self) -> None:
        """Kill the owner's running command."""
        self._transport.interrupt()

    def as_user(self, become: Become | None) -> Transport:
        """The owner's connection, as another user."""
        return self._transport.as_user(become)

    def identity(self) -> Identity:
        """The owner's identity."""
        return self._transport.identity()

    def notices(self) -> tuple[str, ...]:
        """The owner's notices."""
        return self._transport.notices()

    def docker(self) -> DockerAPI:
        """The owner's Docker Engine API."""
        return self._transport.docker()

    def close(self) -> None:
        """Kept open for the next user of this host's connection."""


class Connections:
    """Opens each host's one transport on first use, lends it to every user, and closes all of them once."""

    def __init__(self, make: Callable[[Host], Transport]) -> None:
        self._make = make
        self._open: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def lend(self, host: Host) -> Transport:
        """The host's transport, for one user."""
        with self._lock:
            if host.name not in self._open:
                self._open[host.name] = self._make(host)
            return Lent(self._open[host.name])

    def close(self) -> None:
        """Close every transport opened."""
        for transport in self._open.values():
            transport.close()
