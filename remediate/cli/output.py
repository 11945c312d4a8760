"""What the terminal or the pipe gets. stdout is wrapped once (`PipeSafe`): a reader that goes away (`| head -1`)
ends the output, never the run. During a run one thread writes (`Console`): host threads hand their lines over and
never wait on a full pipe; a step running longer than a second shows that it is running (a live line on a terminal,
a start line in a pipe). Colour as NO_COLOR / FORCE_COLOR / the terminal say. Library logging (paramiko) goes to
stderr only with -vvv."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import select
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from ..core.redact import Redactor
from ..core.report import TextEvents

LIVE_AFTER = 1.0  # seconds a step runs before it is shown running
TICK = 0.25  # how often the writer looks at the running steps


def wants_colour(stream: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """NO_COLOR (non-empty) turns colour off, else FORCE_COLOR (non-empty) on, else a terminal that is not dumb."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    if environ.get("TERM") == "dumb":
        return False
    return is_tty(stream)


def is_tty(stream: Any) -> bool:
    """Whether the stream is a terminal (a closed or odd stream is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class PipeSafe:
    """A text stream whose reader may go away: after EPIPE every write is dropped, and the file descriptor is pointed
    at /dev/null so the interpreter's own flush at exit does not fail either."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lost(exc)

    def _lost(self, exc: OSError) -> None:
        if not isinstance(exc, BrokenPipeError) and exc.errno not in (errno.EPIPE, errno.EINVAL):
            raise exc
        with self._lock:
            if self.gone:
                return
            self.gone = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass

    def isatty(self) -> bool:
        return is_tty(self._stream)

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:  # encoding, errors, buffer, ...
        return getattr(self._stream, name)


def protect_stdout() -> None:
    """Wrap sys.stdout and sys.stderr once, for every command."""
    if not isinstance(sys.stdout, PipeSafe):
        sys.stdout = PipeSafe(sys.stdout)
    if not isinstance(sys.stderr, PipeSafe):
        sys.stderr = PipeSafe(sys.stderr)


def library_logging(verbosity: int) -> None:
    """paramiko's log (and remediate's transport log) on stderr with -vvv; otherwise nowhere: a handled failure
    (an unreachable host) is its recap line, never a traceback from logging's last-resort handler."""
    for name in ("paramiko", "remediate.transport"):
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.handlers[:] = []
        if verbosity >= 3:
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
            logger.setLevel(logging.DEBUG)
        else:
            handler = logging.NullHandler()
        logger.addHandler(handler)


@dataclass
class _Running:
    label: str  # "HOST: STEP" for the live line
    start_line: str  # what a pipe gets once the step passes LIVE_AFTER
    since: float
    announced: bool = False


class _FdWriter:
    """Text written straight to the stream's file descriptor, whole: a partial write is continued, a descriptor
    someone made non-blocking is waited on (select) rather than losing what a text buffer held, a reader that
    went away ends the output (as PipeSafe)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._pending: list[str] = []
        try:
            stream.flush()
            self.fd: int | None = stream.fileno()
        except (AttributeError, ValueError, OSError):
            self.fd = None
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self.gone = False

    def write(self, text: str) -> None:
        self._pending.append(text)

    def flush(self) -> None:
        text, self._pending = "".join(self._pending), []
        if not text or self.gone:
            return
        if self.fd is None:
            self.stream.write(text)
            self.stream.flush()
            return
        data = memoryview(text.encode(self.encoding, "replace"))
        while data:
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                select.select([], [self.fd], [])
            except OSError as exc:
                if isinstance(exc, BrokenPipeError) or exc.errno in (errno.EPIPE, errno.EINVAL):
                    self.gone = True
                    if isinstance(self.stream, PipeSafe):
                        self.stream._lost(exc)
                    return
                raise


class Console:
    """The one writer of stdout during a run, a file-like object: `write()` queues (never blocks); a thread writes,
    keeps the live line of running steps at the bottom of a terminal, or prints a start line for a long step in a
    pipe. `close()` writes what is queued (it may wait for a slow reader, after the hosts are done)."""

    def __init__(self, stream: Any, live: bool | None = None) -> None:
        self.stream = stream
        self.tty = is_tty(stream) if live is None else live
        self._out = _FdWriter(stream)
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._running: dict[tuple[str, str], _Running] = {}
        self._lock = threading.Lock()
        self._live_shown = False
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._thread.start()

    # --- called from any thread -------------------------------------------------------------------------------

    def write(self, text: str) -> int:
        self._queue.put(text)
        return len(text)

    def flush(self) -> None:
        """Nothing: the writer thread flushes."""

    def isatty(self) -> bool:
        return self.tty

    def started(self, host: str, step: str, start_line: str) -> None:
        """A step started on a host."""
        with self._lock:
            self._running[host, step] = _Running(f"{host}: {step}", start_line, time.monotonic())

    def finished(self, host: str, step: str) -> None:
        """That step ended (its result line is queued right after)."""
        with self._lock:
            self._running.pop((host, step), None)

    def close(self) -> None:
        """Write everything queued, erase the live line, stop the writer."""
        self._queue.put(None)
        self._thread.join()

    # --- the writer thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._write_all()
        except Exception:  # noqa: BLE001 (say why, then keep every line: the run's output must not vanish)
            import traceback

            print(f"remediate: output writer failed:\n{traceback.format_exc().rstrip()}", file=sys.stderr)
            while (item := self._queue.get()) is not None:
                self.stream.write(item)
            self.stream.flush()

    def _write_all(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=TICK)
            except queue.Empty:
                self._tick()
                continue
            if item is None:
                self._erase()
                self._out.flush()
                return
            self._erase()
            self._out.write(item)
            stop = self._drain()
            self._out.flush()
            if stop:
                return
            self._tick()

    def _drain(self) -> bool:
        """Write what else is queued in the same burst; True when the end was among it."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                self._erase()
                return True
            self._out.write(item)

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            long = [r for r in self._running.values() if now - r.since >= LIVE_AFTER]
            fresh = [r for r in long if not r.announced]
            for r in fresh:
                r.announced = True
        if self.tty:
            self._draw(long, now)
        elif fresh:
            for r in fresh:
                self._out.write(r.start_line + "\n")
            self._out.flush()

    def _draw(self, long: list[_Running], now: float) -> None:
        if not long:
            if self._live_shown:
                self._erase()
                self._out.flush()
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        text = "running: " + ", ".join(f"{r.label} ({now - r.since:.0f} s)" for r in long)
        if len(text) > width:
            text = text[: max(0, width - 1)] + "…"
        self._out.write("\r\x1b[K" + text)
        self._live_shown = True
        self._out.flush()

    def _erase(self) -> None:
        if self._live_shown:
            self._out.write("\r\x1b[K")
            self._live_shown = False


@contextlib.contextmanager
def live_events(text: bool, diff: bool, verbosity: int, redactor: Redactor) -> Iterator[TextEvents | None]:
    """The live step lines of a text run, written by a console thread (None for JSON: its stdout is one document).
    The console is drained and stopped on the way out, before the recap is printed."""
    if not text:
        yield None
        return
    console = Console(sys.stdout)
    try:
        yield TextEvents(console, diff=diff, color=wants_colour(sys.stdout), redactor=redactor,  # type: ignore[arg-type]
                         verbosity=verbosity)
    finally:
        console.close()
