"""A fake transport that answers scripted commands and refuses anything else."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from remediate.transport.base import Become, CommandResult, Identity, Transport

Handler = Callable[[tuple[str, ...], bytes | None], CommandResult]


@dataclass
class FakeTransport:
    """Maps an argv prefix to a handler; records every call; an unscripted command fails the test."""

    name: str = "fake"
    script: list[tuple[tuple[str, ...], Handler]] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    users: list[str | None] = field(default_factory=list)  # per call: the become user it ran as (None: login)
    become: Become | None = None
    engine: FakeDocker | None = None

    def on(self, prefix: Sequence[str], handler: Handler) -> FakeTransport:
        self.script.append((tuple(prefix), handler))
        return self

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        argv = tuple(argv)
        self.calls.append(argv)
        self.users.append(self.become.user if self.become else None)
        for prefix, handler in self.script:
            if argv[: len(prefix)] == prefix:
                return handler(argv, stdin)
        raise AssertionError(f"unscripted command: {argv}")

    def connect(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def as_user(self, become: Become | None) -> Transport:
        return _As(self, become)

    def identity(self) -> Identity:
        return Identity("fake", None, self.name)

    def notices(self) -> tuple[str, ...]:
        return ()

    def docker(self) -> FakeDocker:
        if self.engine is None:
            raise AssertionError("unscripted use of the Docker Engine API")
        return self.engine

    def close(self) -> None:
        pass


class _As:
    """The fake transport as one user: its calls are the owner's, recorded with that user."""

    def __init__(self, owner: FakeTransport, become: Become | None) -> None:
        self._owner, self._become, self.name = owner, become, owner.name

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        saved, self._owner.become = self._owner.become, self._become
        try:
            return self._owner.run(argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)
        finally:
            self._owner.become = saved

    def connect(self) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def as_user(self, become: Become | None) -> Transport:
        return self._owner.as_user(become)

    def identity(self) -> Identity:
        return self._owner.identity()

    def notices(self) -> tuple[str, ...]:
        return ()

    def docker(self) -> FakeDocker:
        return self._owner.docker()

    def close(self) -> None:
        pass


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class FakeDocker:
    """A host's Engine API, scripted: inspect documents by container id (the latest one set wins), images, logs,
    and a timeline of events released as a fake clock passes their time. The clock is this machine's and the
    host's at once (offset 0); `sleep`/`next` advance it."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.docs: dict[str, dict[str, Any]] = {}
        self.images: dict[str, str] = {}
        self.log: dict[str, str] = {}
        self.timeline: list[tuple[datetime, dict[str, Any], dict[str, Any] | None]] = []
        self.on_command: Callable[[], None] = lambda: None
        self.requests: list[str] = []
        self.subscriptions = 0

    # scripting
    def at(self, seconds: float, action: str, doc: dict[str, Any], exit_code: int | None = None) -> FakeDocker:
        """At now + seconds, `action` happens to the container and its inspect document becomes `doc`."""
        when = self.now + timedelta(seconds=seconds)
        attributes = {"com.docker.compose.service": doc["Config"]["Labels"]["com.docker.compose.service"],
                      **({"exitCode": str(exit_code)} if exit_code is not None else {})}
        nanos = int((when - EPOCH).total_seconds() * 1_000_000) * 1000
        self.timeline.append((when, {"Action": action, "id": doc["Id"], "timeNano": nanos,
                                     "Actor": {"ID": doc["Id"], "Attributes": attributes}}, doc))
        self.timeline.sort(key=lambda item: item[0])
        return self

    def clock(self) -> float:
        return (self.now - EPOCH).total_seconds()

    def sleep(self, seconds: float) -> None:
        self._advance(self.now + timedelta(seconds=seconds))

    def _advance(self, to: datetime) -> list[dict[str, Any]]:
        released = [(w, e, d) for w, e, d in self.timeline if w <= to]
        self.timeline = [item for item in self.timeline if item[0] > to]
        for _, event, doc in released:
            if doc is not None:
                self.docs[doc["Id"]] = doc
        self.now = max(self.now, to)
        return [e for _, e, _ in released]

    # the DockerAPI surface the product uses
    def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        self.requests.append("containers")
        def match(doc: dict[str, Any]) -> bool:
            have = doc["Config"]["Labels"]
            return all(have.get(k, v if k == "com.docker.compose.project" else None) == v for k, v in labels.items())
        return [d for d in self.docs.values() if match(d)]

    def container(self, cid: str) -> dict[str, Any] | None:
        self.requests.append(f"inspect {cid}")
        return self.docs.get(cid)

    def image(self, ref: str) -> dict[str, Any] | None:
        self.requests.append(f"image {ref}")
        return {"Id": self.images[ref]} if ref in self.images else None

    def logs(self, cid: str, since: datetime | None = None, tail: int | None = None) -> str:
        self.requests.append(f"logs {cid}")
        return self.log.get(cid, "")

    def host_time(self, local: float) -> datetime:
        return EPOCH + timedelta(seconds=local)

    def local_time(self, host: datetime) -> float:
        return (host - EPOCH).total_seconds()

    def events(self, filters: Mapping[str, Any]) -> FakeEvents:
        self.subscriptions += 1
        return FakeEvents(self)

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeEvents:
    """A subscription to FakeDocker's timeline: `next(until)` jumps the clock to the next event, or to `until`."""

    def __init__(self, engine: FakeDocker) -> None:
        self.engine = engine
        self.ended = False
        self.pending: list[dict[str, Any]] = []

    def next(self, until: float) -> dict[str, Any] | None:
        if not self.pending:
            limit = EPOCH + timedelta(seconds=until)
            upcoming = [w for w, _, _ in self.engine.timeline if w <= limit]
            self.pending = self.engine._advance(upcoming[0] if upcoming else limit)
        return self.pending.pop(0) if self.pending else None

    def __enter__(self) -> FakeEvents:
        return self

    def __exit__(self, *exc: object) -> None:
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
