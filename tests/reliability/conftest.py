"""The reliability layer's shared parts: a host reached locally or through the suite's real sshd, the CLI
started as a user starts it (alone or several at once), and what a user checks afterwards (files, leftovers,
the audit trail). Every test here is black-box: it drives `python -m remediate` and reads files."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Sshd

RECAP = re.compile(r"^RECAP run (\S+)", re.MULTILINE)
# REMEDIATE_SOAK=1: the loops run as often as issue 15 asks (100 concurrent applies, 60 kills per transport);
# `make test` runs fewer, to stay in its time budget (each loop can still fail: it asserts on every iteration)
SOAK = os.environ.get("REMEDIATE_SOAK") == "1"


def iterations(quick: int, soak: int) -> int:
    """How often a fault loop runs: `soak` with REMEDIATE_SOAK=1, else `quick`."""
    return soak if SOAK else quick


@dataclass(frozen=True)
class Target:
    """How the test reaches its hosts: `local` (connection: local) or `ssh` (the suite's sshd, as root)."""

    kind: str
    sshd: Sshd | None = None

    def inventory(self, path: Path, hosts: Mapping[str, Mapping[str, Any]], top: str = "") -> Path:
        """An inventory of these hosts (name -> vars); `top` is YAML put before `hosts:` (e.g. secret_vars)."""
        lines = [top.rstrip("\n")] if top else []
        lines.append("hosts:")
        for i, (name, variables) in enumerate(hosts.items()):
            lines.append(f"  {name}:")
            if self.kind == "local":
                lines.append("    connection: local")
            else:
                assert self.sshd is not None
                spec = {"address": self.sshd.addresses[i % len(self.sshd.addresses)], "port": self.sshd.port,
                        "user": "root", "identity_file": str(self.sshd.identity),
                        "known_hosts": str(self.sshd.known_hosts)}
                lines += [f"    {k}: {json.dumps(v)}" for k, v in spec.items()]
            lines.append(f"    vars: {json.dumps(dict(variables))}")
        path.write_text("\n".join(lines) + "\n")
        return path


@pytest.fixture(params=["local", "ssh"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each test that takes it runs against `connection: local` and against the real sshd."""
    if request.param == "ssh":
        return Target("ssh", request.getfixturevalue("sshd"))
    return Target("local")


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the CLI runs with: this worktree first on the path, the test's state directory."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}


def start(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start `remediate ARGS` without waiting (stdout and stderr captured apart)."""
    return subprocess.Popen([sys.executable, "-m", "remediate", *args], cwd=cwd or ROOT, env=cli_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass(frozen=True)
class Done:
    """A finished CLI run: exit code and output, and the run id its recap names (if it printed one)."""

    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def run_id(self) -> str | None:
        found = RECAP.search(self.out)
        return found.group(1) if found else None


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> Done:
    """Wait for a started run; a run that does not end in `timeout` seconds is killed and fails the test."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"remediate {proc.args} did not end within {timeout} s:\n{out}\n{err}") from None
    return Done(proc.returncode, out, err)


def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> Done:
    """`remediate ARGS`, waited for."""
    return finish(start(*args, env=env, cwd=cwd), timeout)


@dataclass(frozen=True)
class Measured:
    """A run waited for with os.wait4: its output, peak resident memory and wall time."""

    done: Done
    peak_mib: float
    seconds: float


def measured(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60,
             address_space: int = 4 << 30) -> Measured:
    """`remediate ARGS` with its address space capped (a runaway allocation fails fast instead of taking the
    machine's memory), its peak RSS and its wall time; a run past `timeout` s is killed and fails the test."""
    import resource
    import signal
    import tempfile

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "remediate", *args], cwd=ROOT, env=cli_env(env),
                                stdout=out, stderr=err, text=True, preexec_fn=cap)
        deadline = began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGKILL)
                os.wait4(proc.pid, 0)
                out.seek(0)
                err.seek(0)
                raise AssertionError(f"remediate {args} did not end within {timeout} s:\n{out.read()}\n{err.read()}")
            time.sleep(0.02)
        seconds = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(Done(proc.returncode, out.read(), err.read()), usage.ru_maxrss / 1024, seconds)


def leftovers(*directories: Path) -> list[Path]:
    """Anything named like remediate's own files (temp files, backups) in these directories, at any depth."""
    return sorted(p for d in directories for p in d.rglob("*") if "remediate" in p.name)


def staging_left(backups: Path, timeout: float = 15) -> list[Path]:
    """Staging directories still in BACKUP_DIR/.staging once host-side scripts had `timeout` s to end."""
    staging = backups / ".staging"
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(staging.iterdir()) if staging.exists() else []
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def records(state: Path) -> list[dict[str, Any]]:
    """The audit trail's records, in order."""
    path = state / "audit.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def run_records(state: Path, run_id: str) -> list[dict[str, Any]]:
    """One run's records."""
    return [r for r in records(state) if r.get("run_id") == run_id]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's own state directory (the suite's autouse fixture sets one too; this one is named)."""
    path = tmp_path / "state"
    path.mkdir()
    monkeypatch.setenv("REMEDIATE_STATE_DIR", str(path))
    yield path


def tmpfs(path: Path, size: str) -> Path:
    """A tiny tmpfs mounted at path (unmounted by the caller's `umount`)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    return path


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)
