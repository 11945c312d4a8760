"""Docker Compose facts over the host's one connection: the compose model, containers, and logs.

The model comes from `docker compose config` (JSON; v1's YAML), the containers from `docker inspect` JSON.
Parsing is pure; the gather functions and probes are the only ones that talk to the host.
"""
from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..core.errors import StepError
from ..transport.base import Transport
from .base import Probe


@dataclass(frozen=True)
class Project:
    """Where a compose project lives on the host."""

    dir: str
    files: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class Compose:
    """How to call compose on a host: v2 (`docker compose`) or v1 (`docker-compose`)."""

    base: tuple[str, ...]

    @property
    def v2(self) -> bool:
        """Compose v2 (supports --format json, exec -T, up --wait)."""
        return self.base == ("docker", "compose")

    def argv(self, project: Project, *args: str) -> tuple[str, ...]:
        """The full argv of a compose command in a project."""
        out = [*self.base, "--project-directory", project.dir]
        for f in project.files:
            out += ["-f", f if f.startswith("/") else posixpath.join(project.dir, f)]
        if project.name:
            out += ["-p", project.name]
        return (*out, *args)

    def exec_argv(self, project: Project, service: str, argv: Sequence[str], env: Sequence[str] = (),
                  user: str | None = None) -> tuple[str, ...]:
        """`compose exec -T` of argv in a service, naming the environment variables it passes (values travel in
        the docker CLI's own environment, never on the command line)."""
        opts: list[str] = ["exec", "-T"]
        for key in env:
            opts += ["-e", key]
        if user:
            opts += ["--user", user]
        return self.argv(project, *opts, service, *argv)


def detect(transport: Transport) -> Compose:
    """`docker compose` v2 when present, else Debian's `docker-compose` v1, else a clear error."""
    script = "docker compose version >/dev/null 2>&1 && echo v2 && exit 0; " \
             "command -v docker-compose >/dev/null 2>&1 && echo v1 && exit 0; echo none"
    found = transport.run(["sh", "-c", script]).out.strip()
    if found == "v2":
        return Compose(("docker", "compose"))
    if found == "v1":
        return Compose(("docker-compose",))
    raise StepError(f"{transport.name}: neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


@dataclass(frozen=True)
class Mount:
    """A bind mount or volume of a service."""

    type: str
    source: str
    target: str


def mount_of(mounts: Sequence[Mount], path: str) -> Mount | None:
    """The mount a path in the container lives on (the deepest), None for the container's own layer."""
    under = [m for m in mounts if m.target and (path == m.target or path.startswith(m.target.rstrip("/") + "/"))]
    return max(under, key=lambda m: len(m.target)) if under else None


@dataclass(frozen=True)
class Service:
    """One service of the compose model, as far as reloads care."""

    name: str
    image: str | None
    build_context: str | None
    mounts: tuple[Mount, ...] = ()
    healthcheck: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    restart: str = ""  # the restart policy ("" when none)
    replicas: int = 1  # deploy.replicas, else scale


@dataclass(frozen=True)
class Model:
    """The compose model of a project."""

    name: str
    dir: str
    services: Mapping[str, Service]

    def service(self, name: str) -> Service:
        """The service of that name, or a clear error."""
        if name not in self.services:
            raise StepError(f"no service {name!r} in compose project {self.dir} (services: {', '.join(sorted(self.services))})")
        return self.services[name]

    def builder(self, name: str) -> Service:
        """The service whose `build:` makes the image `name` runs (itself when it builds)."""
        service = self.service(name)
        if service.build_context:
            return service
        for other in self.services.values():
            if other.build_context and other.image and other.image == service.image:
                return other
        raise StepError(
            f"service {name!r} runs image {service.image!r}, which no service of {self.dir} builds: it cannot be rebuilt here"
        )


def parse_model(text: str, project_dir: str, project_name: str | None = None) -> Model:
    """Parse `docker compose config` output (JSON from v2, YAML from v1, which names no project)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise StepError(f"unexpected `compose config` output for {project_dir}")
    services = {}
    for name, spec in doc["services"].items():
        build = spec.get("build")
        context = None
        if isinstance(build, str):
            context = build
        elif isinstance(build, dict):
            context = build.get("context")
        if context and not context.startswith("/"):
            context = posixpath.normpath(posixpath.join(project_dir, context))
        mounts = []
        tmpfs = spec.get("tmpfs") or ()
        for target in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
            mounts.append(Mount("tmpfs", "", str(target).split(":")[0]))
        for volume in spec.get("volumes") or ():
            if isinstance(volume, dict):
                mounts.append(Mount(volume.get("type", "volume"), volume.get("source", ""), volume.get("target", "")))
            elif isinstance(volume, str):
                source, _, rest = volume.partition(":")
                target = rest.split(":")[0]
                kind = "bind" if source.startswith(("/", ".")) else "volume"
                if source.startswith("."):
                    source = posixpath.normpath(posixpath.join(project_dir, source))
                mounts.append(Mount(kind, source, target))
        env = spec.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)
        command = spec.get("command") or ()
        if isinstance(command, str):
            import shlex

            command = shlex.split(command)
        services[name] = Service(
            name=name,
            image=spec.get("image"),
            build_context=context,
            mounts=tuple(mounts),
            healthcheck=bool(spec.get("healthcheck")) and not (spec.get("healthcheck") or {}).get("disable", False),
            environment={str(k): "" if v is None else str(v) for k, v in env.items()},
            command=tuple(str(c) for c in command),
            restart=str(spec.get("restart") or ""),
            replicas=_replicas(spec),
        )
    # v1's config has no `name`: the project is the one given with -p, else named after its directory
    name = doc.get("name") or project_name or _default_project_name(project_dir)
    return Model(str(name), project_dir, services)


def _replicas(spec: Mapping[str, object]) -> int:
    """How many containers compose runs of a service: deploy.replicas, else scale, else 1."""
    deploy = spec.get("deploy")
    value = deploy.get("replicas") if isinstance(deploy, Mapping) else None
    value = spec.get("scale") if value is None else value
    try:
        return int(str(value)) if value is not None else 1
    except ValueError:
        return 1


def _default_project_name(project_dir: str) -> str:
    base = posixpath.basename(project_dir.rstrip("/")).lower()
    return "".join(c for c in base if c.isalnum() or c in "-_")


def gather_model(transport: Transport, compose: Compose, project: Project) -> Model:
    """Read the compose model: the source of truth for images, builds and mounts."""
    test = transport.run(["test", "-d", project.dir])
    if not test.ok:
        raise StepError(f"compose project directory {project.dir} does not exist on {transport.name}")
    args = ("config", "--format", "json") if compose.v2 else ("config",)
    result = transport.run(compose.argv(project, *args))
    if not result.ok:
        raise StepError(f"`compose config` failed in {project.dir}: {result.err.strip()[-800:]}")
    return parse_model(result.out, project.dir, project.name)


@dataclass(frozen=True)
class Container:
    """A container of a service, from `docker inspect`."""

    id: str
    name: str
    service: str
    status: str
    running: bool
    health: str | None
    started_at: datetime | None
    image_id: str
    exit_code: int
    restart_count: int
    mounts: tuple[Mount, ...] = ()

    def describe(self) -> str:
        """State in a few words."""
        health = f", {self.health}" if self.health else ""
        started = self.started_at.isoformat(timespec="seconds") if self.started_at else "never"
        exit_code = f", exit code {self.exit_code}" if not self.running else ""
        return f"{self.name} {self.status}{health}{exit_code}, started {started}, image {self.image_id[:19]}"


def parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 time with nanoseconds -> aware datetime (None for the zero time)."""
    if not text or text.startswith("0001-"):
        return None
    text = text.rstrip("Z")
    if "+" in text[10:] or text[10:].count("-") > 0:
        main, _, _ = text.partition("+")
        text = main
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def parse_containers(text: str) -> tuple[Container, ...]:
    """Parse `docker inspect` JSON."""
    if not text.strip():
        return ()
    out = []
    for item in json.loads(text):
        state = item.get("State") or {}
        labels = (item.get("Config") or {}).get("Labels") or {}
        health = (state.get("Health") or {}).get("Status")
        out.append(
            Container(
                id=item["Id"],
                name=item.get("Name", "").lstrip("/"),
                service=labels.get("com.docker.compose.service", ""),
                status=state.get("Status", "unknown"),
                running=bool(state.get("Running")),
                health=health,
                started_at=parse_time(state.get("StartedAt")),
                image_id=item.get("Image", ""),
                exit_code=int(state.get("ExitCode") or 0),
                restart_count=int(item.get("RestartCount") or 0),
                mounts=tuple(
                    Mount(m.get("Type", ""), m.get("Source", ""), m.get("Destination", "")) for m in item.get("Mounts") or ()
                ),
            )
        )
    return tuple(out)


# One round trip: the host's clock, then `docker inspect` of every container of the service.
_CONTAINERS = r"""
date -u +%Y-%m-%dT%H:%M:%S.%NZ
if [ -n "$2" ]; then
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1" --filter "label=com.docker.compose.service=$2")
else
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$1")
fi
if [ -n "$ids" ]; then docker inspect $ids; else echo '[]'; fi
"""


@dataclass(frozen=True)
class ServiceState:
    """The host's clock and a service's containers at one moment."""

    now: datetime
    containers: tuple[Container, ...]


def gather_containers(transport: Transport, project_name: str, service: str = "") -> ServiceState:
    """Containers of a compose service, or of the whole project when no service is named (by compose labels),
    and the host's current time: one round trip."""
    result = transport.run(["sh", "-c", _CONTAINERS, "sh", project_name, service])
    if not result.ok:
        raise StepError(f"cannot inspect containers of {service or project_name}: {result.err.strip()[-500:]}")
    clock, _, rest = result.out.partition("\n")
    now = parse_time(clock.strip())
    assert now is not None
    return ServiceState(now, parse_containers(rest))


def tail_logs(transport: Transport, compose: Compose, project: Project, service: str, lines: int = 30) -> str:
    """The last lines of a service's log, for error messages."""
    # v1 has no --no-log-prefix; its lines keep the "service_1  | " prefix
    prefix = ("--no-log-prefix",) if compose.v2 else ()
    result = transport.run(compose.argv(project, "logs", "--no-color", *prefix, "--tail", str(lines), service))
    return (result.out + result.err).strip()


def logs_since(transport: Transport, container: Container, after: datetime | None = None) -> str:
    """A container's log (stdout and stderr) since it started (or since `after`, when later): what this run of
    its process said."""
    start = container.started_at
    if after is not None and (start is None or after > start):
        start = after
    since = start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if start else "0"
    result = transport.run(["docker", "logs", "--since", since, container.id])
    return result.out + result.err


def newest_running(state: ServiceState) -> Container | None:
    """The service's running container that started last, if any runs."""
    running = [c for c in state.containers if c.running]
    return max(running, key=lambda c: c.started_at or state.now) if running else None


@dataclass(frozen=True)
class ComposeFacts:
    """The compose binary and model of one project."""

    compose: Compose
    model: Model


@dataclass(frozen=True)
class ComposeProbe(Probe):
    """Detect compose and read the model of a project."""

    stable = True

    project: Project

    def gather(self, transport: Transport) -> ComposeFacts:
        compose = detect(transport)
        return ComposeFacts(compose, gather_model(transport, compose, self.project))


@dataclass(frozen=True)
class ContainersProbe(Probe):
    """Containers of one service and the host's clock."""

    project: Project
    service: str

    def gather(self, transport: Transport) -> ServiceState:
        compose = detect(transport)
        model = gather_model(transport, compose, self.project)
        return gather_containers(transport, model.name, self.service)


# what compose reads when no -f is given: the first existing main file, then its override (compose spec)
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDES = {"compose.yaml": "compose.override.yaml", "compose.yml": "compose.override.yml",
             "docker-compose.yaml": "docker-compose.override.yaml", "docker-compose.yml": "docker-compose.override.yml"}
_FILES = r'''
cd "$1" || exit 66
if [ "$#" -gt 2 ]; then shift 2; for f in "$@"; do echo "$f"; done; exit 0; fi
line=$(grep -E '^[[:space:]]*COMPOSE_FILE[[:space:]]*=' .env 2>/dev/null | tail -n 1)
if [ -n "$line" ]; then echo "env ${line#*=}"; exit 0; fi
for f in compose.yaml compose.yml docker-compose.yaml docker-compose.yml; do
  if [ -e "$f" ]; then echo "$f"; break; fi
done
'''


@dataclass(frozen=True)
class ComposeFilesProbe(Probe):
    """The compose files compose reads for a project, in order, each read for an edit: the given ones, else
    COMPOSE_FILE in the project's .env, else the first of compose's default names and its override."""

    dir: str
    files: tuple[str, ...] = ()
    backup_dir: str = ""

    def gather(self, transport: Transport) -> tuple[object, ...]:
        from .files import read_file

        result = transport.run(["sh", "-c", _FILES, "sh", self.dir, "-", *self.files])
        if result.rc == 66:
            raise StepError(f"compose project directory {self.dir} does not exist")
        names: list[str] = []
        for line in result.out.splitlines():
            if line.startswith("env "):
                value = line[4:].strip().strip("'\"")
                names += [v for v in value.split(":") if v]
            elif line.strip():
                names.append(line.strip())
                if line.strip() in OVERRIDES:
                    names.append(OVERRIDES[line.strip()])
        if not names:
            raise StepError(f"no compose file in {self.dir} (looked for {', '.join(DEFAULT_FILES)} and COMPOSE_FILE in .env)")
        paths = [n if n.startswith("/") else posixpath.join(self.dir, n) for n in names]
        facts = [read_file(transport, p, self.backup_dir) for p in dict.fromkeys(paths)]
        given = bool(self.files) or any(line.startswith("env ") for line in result.out.splitlines())
        missing = [f.path for f in facts if not f.exists and (given or f is facts[0])]
        if missing:
            raise StepError(f"compose file {missing[0]} does not exist")
        return tuple(f for f in facts if f.exists)
