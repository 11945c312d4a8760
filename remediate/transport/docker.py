"""A host's Docker Engine API: over a channel of the host's one SSH connection running `docker system
dial-stdio` (what the Docker CLI itself runs for an `ssh://` host), or this machine's socket.

docker-py (`docker`) speaks the API: this module gives it the channel as its HTTP connection and is the only
one that imports it, inside functions, so `remediate --help` and runs without container questions never load
it. Answers are the API's JSON documents; `facts/containers.py` turns them into typed values.

A host has one channel for questions and one for the event stream of the containers it waits on (each opened
on first use and kept for the run): no process starts on the host per question or per wait.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from ..core.errors import Interrupted, StepError

DIAL_STDIO = ("docker", "system", "dial-stdio")
OLDEST_API = "1.24"  # asked first, only for /version
NEWEST_API = "1.45"  # docker-py 7's default: a newer daemon is spoken to at this version
REQUEST_TIMEOUT = 60
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class DockerUnavailable(StepError):
    """The host's Docker daemon cannot be reached, or this user may not use it."""


class Channel(Protocol):
    """What the API needs of an exec channel running dial-stdio (a paramiko Channel)."""

    closed: bool
    eof_received: bool | int

    def recv(self, nbytes: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def settimeout(self, timeout: float | None) -> None: ...

    def recv_stderr_ready(self) -> bool: ...

    def recv_stderr(self, nbytes: int) -> bytes: ...

    def exit_status_ready(self) -> bool: ...

    def recv_exit_status(self) -> int: ...

    def close(self) -> None: ...


Dial = Callable[[], Channel]


class DockerAPI:
    """One host's Engine API, opened on first use; every answer is the API's own document."""

    def __init__(self, host: str, dial: Dial | None, *, user: str | None = None, role: str = "the SSH user",
                 argv: Sequence[str] = DIAL_STDIO) -> None:
        self.host = host
        self.user = user
        self.role = role  # who `user` is, for the permission hint: the SSH user, the become user, the local user
        self._dial = dial  # None: this machine's socket
        self._argv = tuple(argv)
        self._channels: list[Channel] = []
        self._client: Any = None
        self._adapter: Any = None
        self._version = ""
        self._offset: float | None = None  # the host's clock minus this machine's, in seconds
        self._offset_error = 0.0  # how far off that may be: half the round trip it was measured in
        self._streams: dict[str, Events] = {}  # the open event streams, by their filters
        self.requests = 0  # API requests asked, for the recap's and the benchmark's counts

    # -- the connection -----------------------------------------------------------------------------------
    def _api(self) -> Any:
        if self._client is None:
            with self._errors("version"):
                if self._dial is None:
                    probe = _local_client(OLDEST_API)
                    self._version = _negotiate(probe.version(api_version=False)["ApiVersion"])
                    probe.close()
                    self._client = _local_client(self._version)
                else:
                    self._adapter = _adapter(self._dial, self._channels)
                    server = _client(self._adapter, OLDEST_API).version(api_version=False)["ApiVersion"]
                    self._version = _negotiate(server)
                    self._client = _client(self._adapter, self._version)
                self.requests += 1
        return self._client

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """docker-py's and requests' errors as remediate's: the host, the request, the daemon's own words."""
        import docker.errors
        import requests.exceptions

        try:
            yield
        except requests.exceptions.ConnectionError as exc:
            raise self.unavailable(exc) from None
        except docker.errors.DockerException as exc:
            raise StepError(f"{self.host}: Docker Engine API, {what}: {exc}") from None

    def unavailable(self, exc: BaseException, chan: Channel | None = None) -> DockerUnavailable:
        """The error for a daemon that cannot be reached: what dial-stdio (of `chan`, else of the channel dialled
        last) said on its way out, and a hint."""
        if self._dial is None:
            return DockerUnavailable(f"{self.host}: cannot reach the Docker daemon at {_local_url()}: {_reason(exc)}"
                                     + _hint(str(exc), self.user, self.role))
        said, status = _last_words(chan or (self._channels[-1] if self._channels else None))
        how = f"`{' '.join(self._argv)}`" + (f" (exit {status})" if status is not None else "")
        return DockerUnavailable(f"{self.host}: cannot reach the Docker daemon through {how}: {said or _reason(exc)}"
                                 + _hint(said, self.user, self.role))

    def close(self) -> None:
        """Close every subscription and the question channel (the host's dial-stdio processes exit)."""
        for stream in list(self._streams.values()):
            stream.close()
        if self._client is not None:
            self._client.close()
        if self._adapter is not None:
            self._adapter.close()
        for chan in self._channels:
            chan.close()
        self._client = self._adapter = None

    def interrupt(self) -> None:
        """Wake every wait on a subscription: it raises Interrupted (called from another thread)."""
        for stream in list(self._streams.values()):
            stream.interrupt()

    # -- questions ------------------------------------------------------------------------------------------
    def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The inspect document of every container, running or not, that carries all these labels."""
        api = self._api()
        with self._errors("list containers"):
            listed = api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]})
        self.requests += 1
        docs = (self.container(str(item["Id"])) for item in listed)
        return [doc for doc in docs if doc is not None]  # None: removed between the list and its inspect

    def container(self, cid: str) -> dict[str, Any] | None:
        """A container's inspect document; None when there is no such container (any more)."""
        import docker.errors

        api = self._api()
        self.requests += 1
        with self._errors(f"inspect container {cid[:12]}"):
            try:
                doc: dict[str, Any] = api.inspect_container(cid)
            except docker.errors.NotFound:
                return None
        return doc

    def image(self, ref: str) -> dict[str, Any] | None:
        """An image's inspect document; None when the engine has no image of that reference."""
        import docker.errors

        api = self._api()
        self.requests += 1
        with self._errors(f"inspect image {ref}"):
            try:
                doc: dict[str, Any] = api.inspect_image(ref)
            except docker.errors.ImageNotFound:
                return None
        return doc

    def logs(self, cid: str, since: datetime | None = None, tail: int | None = None, timestamps: bool = False) -> str:
        """What a container wrote on stdout and stderr, as the engine keeps it: since a moment, or the last lines
        (with `timestamps`, each line prefixed by the engine's RFC 3339 UTC time)."""
        api = self._api()
        kwargs: dict[str, Any] = {"timestamps": True} if timestamps else {}
        if since is not None:
            # seconds with microseconds: docker-py turns a datetime into whole seconds, which would bring back
            # what the container's previous process wrote in the second it restarted
            delta = since - EPOCH
            kwargs["since"] = float(f"{delta.days * 86400 + delta.seconds}.{delta.microseconds:06d}")
        if tail is not None:
            kwargs["tail"] = tail
        self.requests += 2  # docker-py asks whether the container has a TTY first
        with self._errors(f"logs of container {cid[:12]}"):
            data: bytes = api.logs(cid, **kwargs)
        return data.decode("utf-8", "replace")

    def now(self) -> datetime:
        """The host's clock (the daemon's SystemTime); also measures its offset to this machine's clock."""
        api = self._api()
        before = time.time()
        with self._errors("info"):
            info = api.info()
        after = time.time()
        self.requests += 1
        host = parse_time(str(info.get("SystemTime") or ""))
        if host is None:
            raise StepError(f"{self.host}: the Docker daemon did not say its time")
        self._offset = (host - EPOCH).total_seconds() - (before + after) / 2
        self._offset_error = (after - before) / 2
        return host

    def host_time(self, local: float) -> datetime:
        """A moment of this machine's clock (time.time()) on the host's clock (offset measured once)."""
        if self._offset is None:
            self.now()
        assert self._offset is not None
        return EPOCH + timedelta(seconds=local + self._offset)

    def local_time(self, host: datetime) -> float:
        """A moment of the host's clock as this machine's time.time()."""
        if self._offset is None:
            self.now()
        assert self._offset is not None
        return (host - EPOCH).total_seconds() - self._offset

    def events(self, filters: Mapping[str, Any]) -> Subscription:
        """What happens from now on to the containers the filters select. The host's stream for these filters is
        opened on first use (the daemon has registered it when this returns) and kept for the run: one channel
        for every wait of the run, not one per wait. A subscription sees only the stream's events from the moment
        it began, by the host's clock (less the clock offset's uncertainty: nothing of its own is dropped)."""
        self._api()
        since = self.host_time(time.time()) - timedelta(seconds=self._offset_error)
        key = repr(sorted((str(k), repr(v)) for k, v in filters.items()))
        stream = self._streams.get(key)
        if stream is None or not stream.alive:
            if stream is not None:
                stream.close()
            stream = self._subscribe(filters)
            self._streams[key] = stream
        return Subscription(stream, since)

    def _subscribe(self, filters: Mapping[str, Any]) -> Events:
        adapter = None
        own: list[Channel] = []
        if self._dial is None:
            client = _local_client(self._version)
        else:
            adapter = _adapter(self._dial, own)
            client = _client(adapter, self._version)
        self.requests += 1
        try:
            with self._errors("subscribe to events"):
                generator = client.events(filters=dict(filters), decode=True)
        finally:
            self._channels.extend(own)
        return Events(self, client, adapter, generator, own)

    def _forget(self, stream: Events) -> None:
        for key, open_stream in list(self._streams.items()):
            if open_stream is stream:
                del self._streams[key]


class Events:
    """A subscription, read by a thread of its own into a queue, so that a wait can be bounded by any deadline
    and interrupted without cutting the stream mid-read."""

    _END = object()
    _WAKE = object()

    def __init__(self, api: DockerAPI, client: Any, adapter: Any, generator: Iterator[dict[str, Any]],
                 channels: Sequence[Channel] = ()) -> None:
        self._api = api
        self._client = client
        self._adapter = adapter
        self._generator = generator
        self._channels = tuple(channels)  # the stream's own: closing them ends the reader's read at once
        self._queue: queue.Queue[Any] = queue.Queue()
        self._interrupted = False
        self._closed = False
        self.ended = False
        self._thread = threading.Thread(target=self._pump, name=f"docker-events-{api.host}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for event in self._generator:
                self._queue.put(event)
        except Exception as exc:  # noqa: BLE001 - the reader raises it in its own thread, with the host's words
            self._queue.put(exc)
        finally:
            self._queue.put(self._END)

    def next(self, until: float) -> dict[str, Any] | None:
        """The next event, or None when `until` (this machine's time.time()) passes first or the stream ended."""
        if self.ended:
            return None
        try:
            item = self._queue.get(timeout=max(0.0, until - time.time()))
        except queue.Empty:
            return None
        if item is self._WAKE or self._interrupted:
            raise Interrupted("interrupted while waiting for container events")
        if item is self._END:
            self.ended = True
            return None
        if isinstance(item, BaseException):
            self.ended = True
            if self._closed:
                return None
            import requests.exceptions

            if isinstance(item, requests.exceptions.ConnectionError):
                raise self._api.unavailable(item, self._channels[-1] if self._channels else None)
            raise StepError(f"{self._api.host}: the Docker daemon's event stream failed: {item}")
        event: dict[str, Any] = item
        return event

    @property
    def alive(self) -> bool:
        """Still reading the daemon's stream (not ended, not broken, not closed)."""
        return not self.ended and not self._closed and self._thread.is_alive()

    def interrupt(self) -> None:
        """Wake the waiting reader now."""
        self._interrupted = True
        self._queue.put(self._WAKE)

    def close(self) -> None:
        """End the stream: its channel closes, the reading thread ends."""
        self._closed = True
        # The response holds the stream's one connection, so closing the client or its pool leaves it open:
        # the channel is closed itself (docker-py's CancellableStream refuses SSH channels); a local socket's
        # stream is shut down by docker-py.
        for chan in self._channels:
            chan.close()
        if not self._channels:
            try:
                self._generator.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a plain generator being read by the pump cannot be closed here
                pass
        self._client.close()
        if self._adapter is not None:
            self._adapter.close()
        self._api._forget(self)
        self._thread.join(timeout=5)


class Subscription:
    """One wait's view of a host's event stream: the events from the moment it began; leaving it keeps the
    stream open for the next wait."""

    def __init__(self, stream: Events, since: datetime) -> None:
        self._stream = stream
        self.since = since

    @property
    def ended(self) -> bool:
        """The stream ended (or broke): nothing more will come."""
        return self._stream.ended

    def next(self, until: float) -> dict[str, Any] | None:
        """The next event from the subscription's start on, or None when `until` (this machine's time.time())
        passes first or the stream ended."""
        while True:
            event = self._stream.next(until)
            if event is None or event_time(event) >= self.since:
                return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

def _adapter(dial: Dial, channels: list[Channel]) -> Any:
    """A requests adapter with one pooled HTTP connection: a channel from `dial` (asked again if it closed)."""
    import urllib3.connection
    import urllib3.connectionpool
    from docker.transport.basehttpadapter import BaseHTTPAdapter

    class Connection(urllib3.connection.HTTPConnection):
        def __init__(self, timeout: Any) -> None:
            super().__init__("localhost", timeout=timeout)

        channel: Channel | None = None

        @property
        def is_connected(self) -> bool:
            # urllib3 would poll the socket's fileno(): a paramiko channel makes a pipe for that, the channel knows
            chan = self.channel
            return chan is not None and not chan.closed and not chan.eof_received

        def connect(self) -> None:
            chan = dial()
            channels.append(chan)
            chan.settimeout(REQUEST_TIMEOUT)
            self.channel = chan
            self.sock = chan  # what http.client needs of a socket (sendall, makefile), a channel has

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        def __init__(self) -> None:
            # one connection; a second request while it is busy would wait (each event stream has its own pool)
            super().__init__("localhost", timeout=REQUEST_TIMEOUT, maxsize=1, block=True)

        def _new_conn(self) -> Connection:
            return Connection(self.timeout)

    class Adapter(BaseHTTPAdapter):
        def __init__(self) -> None:
            self.pool: Pool | None = None
            super().__init__()

        def get_connection(self, url: str | bytes, proxies: Any = None) -> Pool:
            if self.pool is None:
                self.pool = Pool()
            return self.pool

        def close(self) -> None:
            if self.pool is not None:
                self.pool.close()
                self.pool = None

    return Adapter()


def _client(adapter: Any, version: str) -> Any:
    """An APIClient sending everything through `adapter`. docker-py's `ssh://` base URL builds nothing at init
    (its shell-out adapter connects lazily, and ours replaces it); its streams then find the channel."""
    import docker

    client = docker.APIClient(base_url="ssh://remediate", use_ssh_client=True, version=version,
                              timeout=REQUEST_TIMEOUT)
    client.mount("http+docker://ssh", adapter)
    client.trust_env = False  # no proxy or .netrc for a channel
    return client


def _local_client(version: str) -> Any:
    import docker

    client = docker.APIClient(base_url=_local_url(), version=version, timeout=REQUEST_TIMEOUT)
    client.trust_env = False
    return client


def _local_url() -> str:
    env = os.environ.get("DOCKER_HOST", "")
    return env if env.startswith("unix://") else "unix:///var/run/docker.sock"


def _negotiate(server: str) -> str:
    """The server's API version, capped at the newest docker-py speaks."""
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    return min(server, NEWEST_API, key=key)


def _last_words(chan: Channel | None) -> tuple[str, int | None]:
    """What a dial-stdio that went away said on stderr, and its exit status (None when it gave none)."""
    if chan is None:
        return "", None
    status_event = getattr(chan, "status_event", None)
    if status_event is not None:
        status_event.wait(2)
    err = b""
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(65536)
    status = chan.recv_exit_status() if chan.exit_status_ready() else -1
    return err.decode("utf-8", "replace").strip()[-500:], status if status >= 0 else None


def _reason(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def _hint(said: str, user: str | None, role: str = "the SSH user") -> str:
    if "permission denied" not in said.lower():
        return ""
    who = f"{role} {user}" if user else "this user"
    instead = {"the become user": "or become a user in it", "the local user": "or run remediate as a user in it"}
    return f" ({who} may not use the Docker socket: add it to group docker, {instead.get(role, 'or connect as a user in it')})"


def parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds; Z or an offset) as an aware UTC datetime at microseconds; None for
    Docker's zero time or nothing."""
    if not text or text.startswith("0001-"):
        return None
    main, zone = text, "+00:00"
    if main.endswith("Z"):
        main = main[:-1]
    elif len(main) > 6 and main[-6] in "+-" and main[-3] == ":":
        main, zone = main[:-6], main[-6:]
    head, _, frac = main.partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}{zone}").astimezone(timezone.utc)


def event_time(event: Mapping[str, Any]) -> datetime:
    """When an event happened, by the host's clock (its timeNano, at microseconds)."""
    nanos = int(event.get("timeNano") or 0) or int(event.get("time") or 0) * 1_000_000_000
    return EPOCH + timedelta(microseconds=nanos // 1000)
