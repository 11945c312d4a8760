"""Lab stacks for tests: fresh broken instances of lab/stack (a version set, a layout, named variants), each in
its own directory with free ports.

An instance is brought up by `lab/up` (as a user would) and torn down by `lab/down --purge`. Images are
shared: the base image is built once by lab/setup-host.sh, an instance's own image is one COPY layer on it.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"
LAB_ADDRESS = "127.0.0.1"
PORTS_PER_STACK = 3  # backend, PostgreSQL, Redis

Variant = Literal["baked", "mounted"]
Versions = Literal["old", "current"]
Feb31 = Literal["enabled", "disabled"]
Seeds = Literal["broken", "fixed"]
Layout = Literal["edms", "cookiecutter"]
VERSION_SETS: tuple[Versions, ...] = ("old", "current")
DEFAULT_VERSIONS: Versions = "current"  # lab/lib.sh's default too
LAYOUTS: tuple[Layout, ...] = ("edms", "cookiecutter")


@dataclass(frozen=True)
class LayoutFacts:
    """What a layout's project looks like to a user: its compose file, beat's settings module and Celery app."""

    compose_file: str
    settings_module: str
    settings_file: str  # relative to the compose project, the file of settings_module
    celery_app: str


LAYOUT_FACTS: dict[Layout, LayoutFacts] = {
    "edms": LayoutFacts("docker-compose.yml", "edms.settings.base", "backend/edms/settings/base.py", "edms"),
    "cookiecutter": LayoutFacts("compose.yaml", "config.settings.production", "backend/config/settings/production.py",
                                "config.celery_app"),
}


class SshdLike(Protocol):
    """What the inventory helper needs of the suite's sshd fixture (tests.conftest.Sshd)."""

    @property
    def port(self) -> int: ...

    @property
    def addresses(self) -> tuple[str, ...]: ...

    @property
    def identity(self) -> Path: ...

    @property
    def known_hosts(self) -> Path: ...


class LabError(RuntimeError):
    """A lab script failed; carries its argv, exit code and output tail."""


@dataclass(frozen=True)
class LabStack:
    """A running lab instance: its compose project directory, name, variants and loopback ports.

    versions names the dependency set its images run (lab/versions/VERSIONS.txt), layout how the project is
    laid out (LAYOUT_FACTS). fast_sync and
    feb31="disabled" are named variants that depart from the write-up's server (beat's sync shortened by
    CELERY_BEAT_SYNC_EVERY = 1; the 31-February row disabled); the defaults are the write-up's.
    """

    dir: Path
    name: str
    variant: Variant
    backend_port: int
    db_port: int
    redis_port: int
    versions: Versions = DEFAULT_VERSIONS
    layout: Layout = "edms"
    fast_sync: bool = False
    feb31: Feb31 = "enabled"
    seeds: Seeds = "broken"  # "fixed": both write-ups' fixes made (a working stack, where catalogue faults are put)

    @property
    def facts(self) -> LayoutFacts:
        """The layout's compose file, settings module and file, and Celery app."""
        return LAYOUT_FACTS[self.layout]

    def pinned(self) -> dict[str, str]:
        """The distributions and versions this stack's set pins (lab/versions/VERSIONS.txt), lower-case names."""
        return version_set(self.versions)

    def inventory(self, path: Path, sshd: SshdLike, host: str = "lab", **host_vars: object) -> Path:
        """Write an inventory reaching this stack as root through the suite's sshd; return its path.

        Its vars are what a user of this layout states: the compose project and the Celery app (`celery -A`).
        """
        vars_ = {"compose_dir": str(self.dir), "celery_app": self.facts.celery_app, **host_vars}
        lines = [
            "hosts:",
            f"  {host}:",
            f"    address: {json.dumps(sshd.addresses[0])}",
            f"    port: {sshd.port}",
            "    user: root",
            f"    identity_file: {json.dumps(str(sshd.identity))}",
            f"    known_hosts: {json.dumps(str(sshd.known_hosts))}",
            "    vars:",
            *(f"      {key}: {json.dumps(value)}" for key, value in vars_.items()),
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ARGS` in the stack's project on this machine (for assertions, not for the product)."""
        return subprocess.run(
            ["docker", "compose", "--project-directory", str(self.dir), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def logs(self, service: str) -> str:
        """Everything the service's containers logged (stdout and stderr)."""
        return self.compose("logs", "--no-color", "--no-log-prefix", service).stdout

    def wait_for_log(self, service: str, text: str, count: int = 1, timeout: float = 60,
                     sleep: Callable[[float], None] = time.sleep) -> list[str]:
        """Poll the service's log until `count` lines contain `text`; return those lines, or fail with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.logs(service)
            lines = [line for line in log.splitlines() if text in line]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise LabError(f"{service}: {len(lines)} of {count} log lines with {text!r} after {timeout:.0f} s; log tail:\n{log[-2000:]}")
            sleep(0.5)

    def exec(self, service: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run argv in the service's running container (`exec -T`)."""
        return self.compose("exec", "-T", service, *argv, timeout=timeout)

    def registered_tasks(self) -> frozenset[str]:
        """Task names the worker reports through `celery -A APP inspect registered`."""
        result = self.exec("celery_worker", "celery", "-A", self.facts.celery_app, "inspect", "registered",
                           "--timeout", "10")
        if result.returncode != 0:
            raise LabError(f"inspect registered failed ({result.returncode}): {result.stdout[-800:]}{result.stderr[-800:]}")
        return frozenset(line.strip()[2:] for line in result.stdout.splitlines() if line.strip().startswith("* "))


def version_set(versions: Versions) -> dict[str, str]:
    """distribution (lower-case, extras dropped) -> pinned version, from lab/versions/VERSIONS.txt."""
    pins = {}
    for line in (LAB / "versions" / f"{versions}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.split("[", 1)[0].strip().lower()] = version.strip()
    return pins


def free_port_block(count: int = PORTS_PER_STACK, address: str = LAB_ADDRESS) -> int:
    """The first of `count` consecutive TCP ports free on `address` (instances use the host's network)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((address, 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return base
    raise LabError(f"no block of {count} free ports on {address}")


def run_script(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run lab/SCRIPT with args; raise LabError with the output tail when it fails."""
    argv = [str(LAB / script), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result


def up(parent: Path, variant: Variant = "baked", *, versions: Versions = DEFAULT_VERSIONS, layout: Layout = "edms",
       fast_sync: bool = False, feb31: Feb31 = "enabled", seeds: Seeds = "broken") -> LabStack:
    """Bring a fresh broken instance up in a new directory under `parent`, with a unique name and free ports."""
    name = f"lab{uuid.uuid4().hex[:10]}"
    directory = parent / name
    base = free_port_block()
    stack = LabStack(directory, name, variant, base, base + 1, base + 2, versions=versions, layout=layout,
                     fast_sync=fast_sync, feb31=feb31, seeds=seeds)
    try:
        run_script("up", "--dir", str(directory), "--name", name, "--variant", variant, "--versions", versions,
                   "--layout", layout, "--port-base", str(base), "--sync", "fast" if fast_sync else "default",
                   "--feb31", feb31, "--seeds", seeds)
    except BaseException:
        down(stack)
        raise
    return stack


def break_(stack: LabStack, fault: str) -> str:
    """Put the running instance into a catalogue fault (lab/break FAULT); its log line(s)."""
    result = run_script("break", fault, "--dir", str(stack.dir), timeout=600)
    return result.stdout + result.stderr


def reset(stack: LabStack) -> None:
    """Put the instance back to broken as it was created (lab/reset): a rebuild, not a new stack."""
    run_script("reset", "--dir", str(stack.dir))


def down(stack: LabStack) -> None:
    """Tear the instance down: containers, its database volume and its image."""
    run_script("down", "--dir", str(stack.dir), "--name", stack.name, "--purge", timeout=300)
