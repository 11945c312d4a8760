"""A transport that logs every command it runs (argv, exit code, seconds) to the `remediate.transport` logger: the
transport detail `-vvv` shows. Used only when that logger is on."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .base import Become, CommandResult, Identity, Keeps, Transport, shell_command

if TYPE_CHECKING:
    from .docker import DockerAPI

log = logging.getLogger("remediate.transport")


class Logged:
    """Every call passed on to the transport it wraps; run() logged before and after."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.name = transport.name

    def connect(self) -> None:
        """Connect, logged."""
        log.debug("%s: connect", self.name)
        self._transport.connect()

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run, with the command line before and the exit code and seconds after."""
        started = time.monotonic()
        log.debug("%s: run %s%s", self.name, shell_command(argv, env, cwd),
                  f" (stdin {len(stdin)} bytes)" if stdin else "")
        result = self._transport.run(argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)
        log.debug("%s: rc=%s in %.3f s", self.name, result.rc, time.monotonic() - started)
        return result

    def keep(self, script: str, args: Sequence[str]) -> CommandResult:
        """The wrapped transport's keep (the run lock), logged; refused (exit 127) by one that cannot keep."""
        log.debug("%s: keep %s", self.name, shell_command(["remediate_kept", *args]))
        if not isinstance(self._transport, Keeps):
            return CommandResult(("remediate_kept", *args), 127, b"", b"this transport cannot keep a descriptor")
        result = self._transport.keep(script, args)
        log.debug("%s: keep rc=%s", self.name, result.rc)
        return result

    def let_go(self, script: str) -> None:
        """The wrapped transport's let_go, logged."""
        log.debug("%s: let go", self.name)
        if isinstance(self._transport, Keeps):
            self._transport.let_go(script)

    def interrupt(self) -> None:
        """Interrupt the wrapped transport."""
        self._transport.interrupt()

    def as_user(self, become: Become | None) -> Transport:
        """The wrapped transport as another user (become), logged too."""
        return Logged(self._transport.as_user(become))

    def identity(self) -> Identity:
        """The wrapped transport's identity."""
        return self._transport.identity()

    def notices(self) -> tuple[str, ...]:
        """The wrapped transport's notices."""
        return self._transport.notices()

    def docker(self) -> DockerAPI:
        """The wrapped transport's Docker Engine API (its requests are not logged here)."""
        return self._transport.docker()

    def close(self) -> None:
        """Close the wrapped transport."""
        log.debug("%s: close", self.name)
        self._transport.close()


def logged(transport: Transport) -> Transport:
    """The transport, wrapped when the transport log is on (-vvv)."""
    return Logged(transport) if log.isEnabledFor(logging.DEBUG) else transport
