"""A fake transport that answers scripted commands and refuses anything else."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from remediate.transport.base import CommandResult, Identity

Handler = Callable[[tuple[str, ...], bytes | None], CommandResult]


@dataclass
class FakeTransport:
    """Maps an argv prefix to a handler; records every call; an unscripted command fails the test."""

    name: str = "fake"
    script: list[tuple[tuple[str, ...], Handler]] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def on(self, prefix: Sequence[str], handler: Handler) -> FakeTransport:
        self.script.append((tuple(prefix), handler))
        return self

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        argv = tuple(argv)
        self.calls.append(argv)
        for prefix, handler in self.script:
            if argv[: len(prefix)] == prefix:
                return handler(argv, stdin)
        raise AssertionError(f"unscripted command: {argv}")

    def connect(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def identity(self) -> Identity:
        return Identity("fake", None, self.name)

    def notices(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        pass


def ok(stdout: bytes = b"", rc: int = 0) -> Handler:
    return lambda argv, stdin: CommandResult(argv, rc, stdout, b"")


class FakeFiles:
    """Files behind the read/write/remove shell scripts of remediate.facts.files, kept in a dict; backups under `root`."""

    def __init__(self, files: dict[str, bytes], root: str = "/var/lib/remediate/backups") -> None:
        self.files = dict(files)
        self.root = root
        self.writes: list[str] = []

    def attach(self, transport: FakeTransport) -> FakeTransport:
        return transport.on(("sh", "-c"), self._sh)

    def _sh(self, argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        import hashlib

        from remediate.facts.files import _READ, _REMOVE, _WRITE

        script, args = argv[2], argv[4:]
        if script == _READ:
            path, root = args[0], (args[1] or self.root).encode() + b"\0"
            if path not in self.files:
                return CommandResult(argv, 0, root + b"MISSING\n", b"")
            return CommandResult(argv, 0, root + b"644 0 0\n" + self.files[path], b"")
        if script in (_WRITE, _REMOVE):
            path, expected, backup = args[0], args[1], args[2]
            current = hashlib.sha256(self.files[path]).hexdigest() if path in self.files else "absent"
            if current != expected:
                return CommandResult(argv, 75, b"", f"remediate: {path} changed since it was read".encode())
            if path in self.files and backup not in self.files:
                self.files[backup] = self.files[path]
            if script == _WRITE:
                self.files[path] = stdin or b""
            else:
                del self.files[path]
            self.writes.append(path)
            return CommandResult(argv, 0, b"", b"")
        raise AssertionError(f"unscripted script: {script[:60]!r}")
