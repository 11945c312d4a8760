"""Shared fixtures: a real sshd on loopback (started by the suite itself) and helpers to run the CLI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import lab

ROOT = Path(__file__).resolve().parent.parent
SSHD_ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


@dataclass(frozen=True)
class Sshd:
    """A running sshd: its key directory, port and addresses."""

    dir: Path
    port: int
    addresses: tuple[str, ...]

    @property
    def identity(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """sshd on 127.0.0.11-13 with generated host and client keys and its own known_hosts."""
    if not Path("/usr/sbin/sshd").exists():
        pytest.fail("/usr/sbin/sshd is missing: run the README's test command (make test), which installs it")
    key_dir = tmp_path_factory.mktemp("sshd")
    port = free_port(SSHD_ADDRESSES)
    subprocess.run([str(ROOT / "lab" / "sshd.sh"), "start", str(key_dir), str(port), *SSHD_ADDRESSES], check=True)
    try:
        yield Sshd(key_dir, port, SSHD_ADDRESSES)
    finally:
        subprocess.run([str(ROOT / "lab" / "sshd.sh"), "stop", str(key_dir)], check=False)


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state directory (audit trail, pending reloads), never the user's."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("REMEDIATE_STATE_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def no_users_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ~/.ssh/config or uses their agent: the tests of those features give their
    own HOME and agent (tests.sshlab.user_env)."""
    monkeypatch.setenv("REMEDIATE_SSH_CONFIG", "none")
    for name in ("SSH_AUTH_SOCK", "REMEDIATE_SSH_KEY_PASSPHRASE", "REMEDIATE_BECOME_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def free_port(addresses: tuple[str, ...]) -> int:
    """A TCP port free on every address (so parallel test runs never collide)."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def remediate(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a fresh process), capturing output."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "remediate", *args],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def copy_tree(src: Path, dest: Path) -> Path:
    """Copy a fixture tree."""
    shutil.copytree(src, dest)
    return dest


LabFactory = Callable[..., lab.LabStack]


def _require_docker() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or info.returncode != 0:
        pytest.fail("Docker engine or compose v2 unavailable: run the README's test command (make test), "
                    "or lab/setup-host.sh, which installs and starts them")


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """Bring up fresh broken lab stacks, torn down after the test: `lab_factory(variant="baked"|"mounted",
    **options)` with the options of `tests.lab.up` (named variants such as fast_sync=True)."""
    _require_docker()
    stacks: list[lab.LabStack] = []

    def make(variant: lab.Variant = "baked", **options: Any) -> lab.LabStack:
        stack = lab.up(tmp_path_factory.mktemp("lab"), variant, **options)
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            lab.down(stack)


def running_lab(tmp_path_factory: pytest.TempPathFactory, label: str,
                variant: lab.Variant = "baked", **options: Any) -> Iterator[lab.LabStack]:
    """A fresh broken stack for the life of the fixture that yields from this, torn down after it
    (options: those of `tests.lab.up`)."""
    _require_docker()
    stack = lab.up(tmp_path_factory.mktemp(label), variant, **options)
    try:
        yield stack
    finally:
        lab.down(stack)


SharedLabs = Callable[..., lab.LabStack]


@pytest.fixture(scope="session")
def shared_labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedLabs]:
    """`shared_labs(versions, layout="edms")`: one broken baked stack per version set and layout, brought up
    on first use and shared by the session's read-only tests (never modify one): the write-up's server as it
    is (every row enabled, Celery's default beat sync)."""
    stacks: dict[tuple[lab.Versions, lab.Layout], lab.LabStack] = {}

    def get(versions: lab.Versions, layout: lab.Layout = "edms") -> lab.LabStack:
        if (versions, layout) not in stacks:
            _require_docker()
            parent = tmp_path_factory.mktemp(f"lab-shared-{versions}-{layout}")
            stacks[versions, layout] = lab.up(parent, versions=versions, layout=layout)
        return stacks[versions, layout]

    try:
        yield get
    finally:
        for stack in stacks.values():
            lab.down(stack)


@pytest.fixture(scope="session")
def lab_stack(shared_labs: SharedLabs) -> lab.LabStack:
    """The shared broken stack of the default version set and layout (see shared_labs)."""
    return shared_labs(lab.DEFAULT_VERSIONS)


@pytest.fixture(scope="module")
def fault_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sshd: Sshd) -> Iterator[Any]:
    """One working lab instance per test module for the catalogue's faults (tests/catalogue.py): the module's
    CATALOGUE_VERSIONS set (default current), broken by lab/break, reset only when a test left it broken."""
    from tests import catalogue

    _require_docker()
    versions = getattr(request.module, "CATALOGUE_VERSIONS", lab.DEFAULT_VERSIONS)
    yield from catalogue.fault_lab(tmp_path_factory.mktemp(f"faults-{versions}"), sshd, remediate, versions)
