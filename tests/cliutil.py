"""Helpers for the CLI's black-box tests: hosts on this machine (`connection: local`), playbooks written by the
test, the audit trail read back, a pty to run the CLI on a terminal, and a listener that is not an sshd."""
from __future__ import annotations

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
SETTINGS = "edms/settings/base.py"
APPS = "apps/audit/apps.py"
SGR = "\x1b["  # the start of every ANSI escape (colours, erase line)


def projects(tmp: Path, *names: str) -> dict[str, Path]:
    """A copy of the broken fixture project per host name."""
    return {n: Path(shutil.copytree(FIXTURES / "project", tmp / "projects" / n)) for n in names}


def local_inventory(path: Path, hosts: Mapping[str, Path], groups: Mapping[str, Any] | None = None,
                    shared: Mapping[str, Any] | None = None, host_vars: Mapping[str, Mapping[str, Any]] | None = None,
                    extra: str = "") -> Path:
    """An inventory of `connection: local` hosts, each with its project_dir and a backup_dir outside it."""
    doc: dict[str, Any] = {}
    if shared:
        doc["vars"] = dict(shared)
    doc["hosts"] = {
        name: {"connection": "local",
               "vars": {"project_dir": str(project), "backup_dir": str(path.parent / "backups"),
                        **dict((host_vars or {}).get(name, {}))}}
        for name, project in hosts.items()
    }
    if groups:
        doc["groups"] = dict(groups)
    path.write_text(json.dumps(doc, indent=2) + "\n" + extra)  # JSON is YAML
    return path


def recorder(name: str, **keys: Any) -> dict[str, Any]:
    """A step that appends its name to PROJECT/ran.log (so a test sees which steps ran, in order)."""
    return {"name": name, "command": {"argv": ["sh", "-c", 'echo "$1" >> "$0"', "{{ project_dir }}/ran.log", name]},
            **keys}


def write_playbook(path: Path, plays: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Path:
    """A playbook file from Python data (JSON is YAML)."""
    path.write_text(json.dumps(plays if isinstance(plays, Sequence) else [plays], indent=2) + "\n")
    return path


def ran(project: Path) -> list[str]:
    """The names recorder steps wrote on that host, in order."""
    log = project / "ran.log"
    return log.read_text().split() if log.exists() else []


def audit_records(state_dir: Path) -> list[dict[str, Any]]:
    """Every record of the audit trail in a state directory."""
    trail = state_dir / "audit.jsonl"
    if not trail.exists():
        return []
    return [json.loads(line) for line in trail.read_text().splitlines() if line.strip()]


def run_end(state_dir: Path) -> dict[str, Any] | None:
    """The last run's run_end record, if it has one."""
    records = audit_records(state_dir)
    starts = [i for i, r in enumerate(records) if r["event"] == "run_start"]
    if not starts:
        return None
    return next((r for r in records[starts[-1]:] if r["event"] == "run_end"), None)


def cli_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment the suite's CLI runs get: this tree on PYTHONPATH, the test's state directory, no colour
    variables inherited from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    env.update(PYTHONPATH=str(ROOT), REMEDIATE_STATE_DIR=str(state_dir), **extra)
    return env


def shell(command: str, cwd: Path, env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A bash command line, as a user types it (pipes and all); `remediate` is this tree's CLI."""
    full = f"remediate() {{ {sys.executable} -m remediate \"$@\"; }}\n{command}"
    return subprocess.run(["bash", "-c", full], cwd=cwd, env=dict(env), capture_output=True, text=True,
                          timeout=timeout)


def on_tty(args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = 120,
           columns: int = 120) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; its exit code and everything it wrote, raw."""
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "remediate", *args], cwd=cwd, env={**env, "TERM": "xterm"},
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{args} did not finish within {timeout} s")
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            # drain what is left
            try:
                while select.select([master], [], [], 0.1)[0]:
                    data = os.read(master, 65536)
                    if not data:
                        break
                    chunks.append(data)
            except OSError:
                pass
            break
    os.close(master)
    return proc.wait(), b"".join(chunks).decode("utf-8", "replace")


class NotAnSshd:
    """A TCP listener on 127.0.0.1 that accepts and closes every connection at once (paramiko: 'Error reading
    SSH protocol banner'), so a test has an unreachable host without any sshd."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@contextmanager
def not_an_sshd() -> Iterator[NotAnSshd]:
    listener = NotAnSshd()
    try:
        yield listener
    finally:
        listener.close()


def build_wheel(out: Path) -> Path:
    """The wheel of this tree, built as a release would be (`pip wheel`, the project's build backend)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q", str(ROOT), "-w", str(out)],
                   check=True, capture_output=True, text=True)
    return next(out.glob("remediate-*.whl"))


def install_wheel(wheel: Path, target: Path) -> Path:
    """The wheel installed into a directory of its own (its dependencies come from the suite's venv)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, text=True)
    return target


def installed(target: Path, *args: str, cwd: Path, env: Mapping[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed wheel's CLI run from cwd (never this checkout: it is not on the path)."""
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(PYTHONPATH=str(target), **(env or {}))
    return subprocess.run([sys.executable, "-m", "remediate", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)
