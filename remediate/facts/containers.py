"""Containers as the Docker Engine API tells them: typed state, the host's clock, logs, image ids, and events.

Every answer comes over the host's Engine API (`transport.docker()`: one channel of the host's one connection,
no process per question); the functions turning its documents into values are pure. So is `judge`, which
decides from a service's container events whether a restarted or recreated service is proved up.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..transport.base import Transport
from ..transport.docker import event_time, parse_time

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# what a wait subscribes to: a container starting, dying (exit code, OOM) and its healthcheck's verdicts
WAIT_EVENTS = ("start", "die", "oom", "health_status")


@dataclass(frozen=True)
class Mount:
    """A bind mount or volume of a service or container."""

    type: str
    source: str
    target: str


@dataclass(frozen=True)
class Container:
    """A container, from its inspect document."""

    id: str
    name: str
    service: str
    status: str  # created | running | restarting | paused | exited | dead | removing
    running: bool
    health: str | None  # starting | healthy | unhealthy; None without a healthcheck
    started_at: datetime | None
    image_id: str
    exit_code: int
    restart_count: int
    mounts: tuple[Mount, ...] = ()
    project: str = ""
    finished_at: datetime | None = None
    oom_killed: bool = False
    healthcheck: bool = False  # whether a healthcheck is configured (compose's or the image's)

    def describe(self) -> str:
        """State in a few words."""
        health = f", {self.health}" if self.health else ""
        started = self.started_at.isoformat(timespec="seconds") if self.started_at else "never"
        exit_code = f", exit code {self.exit_code}" if not self.running else ""
        return f"{self.name} {self.status}{health}{exit_code}, started {started}, image {self.image_id[:19]}"

    def as_data(self) -> dict[str, Any]:
        """As `register:` and the JSON report show it."""
        return {"id": self.id, "name": self.name, "project": self.project, "service": self.service,
                "status": self.status, "running": self.running, "health": self.health,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "image_id": self.image_id, "exit_code": self.exit_code, "restart_count": self.restart_count}


def container(doc: Mapping[str, Any]) -> Container:
    """A container from the Engine API's inspect document (`GET /containers/ID/json`)."""
    state = doc.get("State") or {}
    config = doc.get("Config") or {}
    labels = config.get("Labels") or {}
    test = (config.get("Healthcheck") or {}).get("Test") or []
    return Container(
        id=str(doc["Id"]),
        name=str(doc.get("Name", "")).lstrip("/"),
        service=str(labels.get(SERVICE_LABEL, "")),
        status=str(state.get("Status", "unknown")),
        running=bool(state.get("Running")),
        health=(state.get("Health") or {}).get("Status"),
        started_at=parse_time(state.get("StartedAt")),
        image_id=str(doc.get("Image", "")),
        exit_code=int(state.get("ExitCode") or 0),
        restart_count=int(doc.get("RestartCount") or 0),
        mounts=tuple(Mount(str(m.get("Type", "")), str(m.get("Source", "")), str(m.get("Destination", "")))
                     for m in doc.get("Mounts") or ()),
        project=str(labels.get(PROJECT_LABEL, "")),
        finished_at=parse_time(state.get("FinishedAt")),
        oom_killed=bool(state.get("OOMKilled")),
        healthcheck=(bool(test) and test[0] != "NONE") or bool(state.get("Health")),
    )


@dataclass(frozen=True)
class ServiceState:
    """The host's clock and a service's (or a project's) containers at one moment."""

    now: datetime
    containers: tuple[Container, ...]


def gather_containers(transport: Transport, project_name: str, service: str = "") -> ServiceState:
    """Containers of a compose service, or of the whole project when no service is named (by compose's labels),
    and the host's clock."""
    api = transport.docker()
    labels = {PROJECT_LABEL: project_name, **({SERVICE_LABEL: service} if service else {})}
    found = tuple(container(doc) for doc in api.containers(labels))
    return ServiceState(api.host_time(time.time()), found)


def inspect(transport: Transport, cid: str) -> Container | None:
    """One container as it is now; None when it is gone."""
    doc = transport.docker().container(cid)
    return container(doc) if doc is not None else None


def image_id(transport: Transport, ref: str) -> str | None:
    """The id of the image a reference names on the host; None when it has none."""
    doc = transport.docker().image(ref)
    return str(doc["Id"]) if doc is not None else None


def logs_since(transport: Transport, c: Container, after: datetime | None = None, timestamps: bool = False) -> str:
    """A container's log (stdout and stderr) since it started (or since `after`, when later): what this run of its
    process said; with `timestamps`, each line starts with the engine's RFC 3339 UTC time."""
    since = c.started_at if after is None or (c.started_at is not None and c.started_at >= after) else after
    return transport.docker().logs(c.id, since=since, timestamps=timestamps)


def tail(transport: Transport, c: Container, lines: int = 20) -> str:
    """The last lines a container wrote, for error messages."""
    return transport.docker().logs(c.id, tail=lines).strip()


def newest_running(state: ServiceState) -> Container | None:
    """The service's running container that started last, if any runs."""
    running = [c for c in state.containers if c.running]
    return max(running, key=lambda c: c.started_at or state.now) if running else None


# -- events and the proof of a (re)started service ----------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """A container event: what happened, to which container of which service, when (the host's clock)."""

    action: str  # start | die | oom | health_status: healthy | health_status: unhealthy | ...
    container: str
    service: str
    at: datetime
    exit_code: int | None = None

    def as_data(self) -> dict[str, Any]:
        """As the step's data shows it."""
        return {"action": self.action, "container": self.container, "at": self.at.isoformat(),
                **({"exit_code": self.exit_code} if self.exit_code is not None else {})}


def event(doc: Mapping[str, Any]) -> Event:
    """An event from the Engine API's event document."""
    attributes = (doc.get("Actor") or {}).get("Attributes") or {}
    code = attributes.get("exitCode")
    return Event(str(doc.get("Action") or doc.get("status") or ""), str(doc.get("id") or (doc.get("Actor") or {}).get("ID")),
                 str(attributes.get(SERVICE_LABEL, "")), event_time(doc), int(code) if code is not None else None)


def wait_filters(project_name: str) -> dict[str, Any]:
    """What a wait subscribes to: the project's containers starting, dying and changing health."""
    return {"type": "container", "label": [f"{PROJECT_LABEL}={project_name}"], "event": list(WAIT_EVENTS)}


class Verdict(enum.Enum):
    """How a wait for a (re)started service ended."""

    HEALTHY = "healthy"  # its healthcheck said healthy
    RUNNING = "running"  # no healthcheck: still up `settle` seconds after it started
    DIED = "died"  # it exited (or was killed for memory) after it started
    UNHEALTHY = "unhealthy"  # its healthcheck said unhealthy
    TIMEOUT = "timeout"  # no new container was proved by the deadline

    @property
    def proved(self) -> bool:
        """Whether the service is proved up."""
        return self in (Verdict.HEALTHY, Verdict.RUNNING)


@dataclass(frozen=True)
class Decision:
    """What the events of one service say so far: a verdict (and when it held), or the moment to look again."""

    verdict: Verdict | None = None
    container: str | None = None
    at: datetime | None = None
    look_again: datetime | None = None  # no healthcheck: the moment StartedAt + settle passes


@dataclass(frozen=True)
class Candidate:
    """A container of the service that started during the wait, as inspected right after its start event."""

    id: str
    started: datetime
    healthcheck: bool
    image_ok: bool = True  # it runs the rebuilt image (always, when nothing was rebuilt)


def judge(events: Sequence[Event], candidates: Mapping[str, Candidate], settle: float, now: datetime) -> Decision:
    """Decide from one service's events since the compose command started (oldest first) and the containers
    they started: the first container that started (on the expected image) is the one to prove. After its
    start, `die`/`oom` is DIED and `health_status: unhealthy` UNHEALTHY at once; `health_status: healthy` is
    HEALTHY; with no healthcheck, being still up `settle` seconds after it started (by the host's clock `now`)
    is RUNNING. Pure."""
    chosen: Candidate | None = None
    for e in events:
        if chosen is None:
            c = candidates.get(e.container)
            if e.action == "start" and c is not None and c.image_ok:
                chosen = c
            continue
        if e.container != chosen.id:
            continue
        if e.action in ("die", "oom"):
            return Decision(Verdict.DIED, chosen.id, e.at)
        if e.action == "health_status: unhealthy":
            return Decision(Verdict.UNHEALTHY, chosen.id, e.at)
        if e.action == "health_status: healthy":
            return Decision(Verdict.HEALTHY, chosen.id, e.at)
    if chosen is None or chosen.healthcheck:
        return Decision(container=chosen.id if chosen else None)
    settled = chosen.started + timedelta(seconds=settle)
    if now >= settled:
        return Decision(Verdict.RUNNING, chosen.id, settled)
    return Decision(container=chosen.id, look_again=settled)


@dataclass(frozen=True)
class Proof:
    """What a wait saw of one service: its verdict, the container, its events, and when remediate decided."""

    service: str
    verdict: Verdict
    container: Container | None
    events: tuple[Event, ...] = ()
    up_returned: datetime | None = None
    decided: datetime | None = None
    at: datetime | None = None  # when the verdict held (the event's time; StartedAt + settle)
    last_seen: tuple[Container, ...] = field(default_factory=tuple)

    def story(self) -> str:
        """What happened and when, in one clause for the recap."""
        def t(moment: datetime | None) -> str:
            return moment.strftime("%H:%M:%S.%f")[:-3] if moment else "?"

        start = next((e for e in self.events if e.action == "start" and self.container and e.container == self.container.id),
                     None)
        after_start = (f", {(self.at - start.at).total_seconds():.2f} s after it started"
                       if start and self.at else "")
        seen = (f", seen {(self.decided - self.at).total_seconds():.2f} s later"
                if self.decided and self.at and self.decided >= self.at else "")
        began = f"started {t(start.at)}; " if start else ""
        if self.verdict is Verdict.HEALTHY:
            return f"{began}healthy at {t(self.at)} (health_status){after_start}{seen}"
        if self.verdict is Verdict.RUNNING:
            return f"{began}still up at {t(self.at)} with no healthcheck{after_start}: proved"
        if self.verdict is Verdict.DIED:
            die = next((e for e in reversed(self.events) if e.action in ("die", "oom")), None)
            code = f" (exit code {die.exit_code})" if die and die.exit_code is not None else ""
            what = "killed: out of memory" if die and die.action == "oom" else "died"
            return f"{began}{what} at {t(self.at)}{code}{after_start}{seen}"
        if self.verdict is Verdict.UNHEALTHY:
            return f"{began}unhealthy at {t(self.at)} (health_status){after_start}{seen}"
        return f"{began}nothing proved by {t(self.decided)}"

    def as_data(self) -> dict[str, Any]:
        """As the step's data shows it (`data.proof[service]`)."""
        return {"verdict": self.verdict.value, "container": self.container.id if self.container else None,
                "events": [e.as_data() for e in self.events],
                "at": self.at.isoformat() if self.at else None,
                "up_returned_at": self.up_returned.isoformat() if self.up_returned else None,
                "decided_at": self.decided.isoformat() if self.decided else None}
