"""What steers a run from outside: live events out, an interrupt in."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from ..core.errors import Interrupted
from ..core.results import StepResult
from ..transport.base import Transport


class Events(Protocol):
    """Where live progress goes (the CLI prints it; tests collect it)."""

    def step_done(self, host: str, result: StepResult) -> None:
        """A step finished on a host."""

    def progress(self, host: str, step: str, message: str) -> None:
        """A long step says what it is waiting for."""


class NoEvents:
    """Events that go nowhere."""

    def step_done(self, host: str, result: StepResult) -> None:
        """Ignore."""

    def progress(self, host: str, step: str, message: str) -> None:
        """Ignore."""


class Stop:
    """One host's stop request: nothing new starts; the command running is killed unless it is a write."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._lock = threading.Lock()
        self._stop = False
        self._writing = False

    def request(self) -> None:
        """Stop after the current action; kill the current remote command unless it must finish (a write)."""
        with self._lock:
            self._stop = True
            writing = self._writing
        if not writing:
            self._transport.interrupt()

    def halt(self) -> None:
        """Start nothing new, but let the running action finish (a fault elsewhere, not an interrupt)."""
        with self._lock:
            self._stop = True

    def requested(self) -> bool:
        """Whether a stop was requested."""
        with self._lock:
            return self._stop

    @contextmanager
    def acting(self, interruptible: bool) -> Iterator[None]:
        """Around one action: refuse to start after a stop; while one that must finish runs, a stop waits for it."""
        with self._lock:
            if self._stop:
                raise Interrupted("interrupted before this action; nothing was changed")
            self._writing = not interruptible
        try:
            yield
        finally:
            with self._lock:
                self._writing = False


class Interrupt:
    """Set on SIGINT/SIGTERM: hosts start nothing new, in-flight commands are killed, in-flight writes finish."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._hosts: list[Stop] = []
        self._lock = threading.Lock()
        # why the run was halted by a fault (the audit trail could not be written): no host starts anything new
        self.fault = ""

    def is_set(self) -> bool:
        """Whether the run was interrupted."""
        return self.event.is_set()

    def register(self, stop: Stop) -> None:
        """A host to tell when the interrupt comes."""
        with self._lock:
            self._hosts.append(stop)
            fault = self.fault
        if self.event.is_set():
            stop.request()
        elif fault:
            stop.halt()

    def halt(self, reason: str) -> None:
        """A fault no host may go on after (the audit trail cannot be written): every host starts nothing new,
        actions running finish; the run ends failed (exit 1), not interrupted."""
        with self._lock:
            if not self.fault:
                self.fault = reason
            hosts = list(self._hosts)
        for stop in hosts:
            stop.halt()

    def halted(self) -> bool:
        """Whether a fault or an interrupt stopped the run."""
        with self._lock:
            return bool(self.fault) or self.event.is_set()

    def unregister(self, stop: Stop) -> None:
        """The host has finished."""
        with self._lock:
            if stop in self._hosts:
                self._hosts.remove(stop)

    def trigger(self) -> None:
        """Stop the run; called from a signal handler, so it only sets flags under short-held locks."""
        self.event.set()
        with self._lock:
            hosts = list(self._hosts)
        for stop in hosts:
            stop.request()
