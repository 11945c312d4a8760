"""Docker Compose facts over the host's one connection: the compose model, and the probes of compose steps.

The model comes from `docker compose config` (JSON; v1's YAML): compose itself stays on its CLI. Containers
come from the Docker Engine API (`containers.py`). Parsing is pure; the gather functions and probes are the
only ones that talk to the host.
"""
from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..core.errors import StepError
from ..transport.base import Transport
from .base import Probe
from .containers import Mount, ServiceState, gather_containers, image_id

__all__ = ["Compose", "ComposeFacts", "ComposeFilesProbe", "ComposeProbe", "mount_of", "ContainersProbe", "ServiceContainers", "Model", "Mount", "Project", "Service",
           "detect", "gather_model", "parse_model"]


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
class ServiceContainers:
    """A service's containers with the host's clock, and the id of the image its `image:` names (None: no such
    image on the host, or the service names none)."""

    state: ServiceState
    image_id: str | None


@dataclass(frozen=True)
class ContainersProbe(Probe):
    """Containers of one service, the host's clock, and the service's image, from the Engine API."""

    project: Project
    service: str

    def gather(self, transport: Transport) -> ServiceContainers:
        compose = detect(transport)
        model = gather_model(transport, compose, self.project)
        image = model.service(self.service).image if self.service in model.services else None
        return ServiceContainers(gather_containers(transport, model.name, self.service),
                                 image_id(transport, image) if image else None)


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
