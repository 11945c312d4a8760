"""The catalogue's end-to-end harness (issue 16): one lab instance per test module, a working stack (both
write-ups' fixes made: `--seeds fixed`), put into each fault by `lab/break` and fixed by remediate; `lab/reset`
only when a test left it broken. A module names its version set with `CATALOGUE_VERSIONS` (default: the
current set; the old set where a fault's behaviour differs) and uses the `fault_lab` fixture (conftest).

`FaultLab.flow(fault, playbook)` is the flow every fault is tested with: broken -> diagnose names exactly that
fault (exit 2, its evidence quoted; JSON here, the text rendering of evidence in tests/unit/test_catalogue.py)
-> `apply --check --diff` shows the fix and touches nothing -> `apply` fixes and proves it (exit 0) -> a second
apply changes nothing -> diagnose is clean.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import lab

Run = Callable[..., subprocess.CompletedProcess[str]]


def project_digest(stack: lab.LabStack) -> dict[str, str]:
    """sha256 of every file of the compose project (the build context included)."""
    out = {}
    for path in sorted(stack.dir.rglob("*")):
        if path.is_file() and ".git" not in path.parts:
            out[str(path.relative_to(stack.dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def containers(stack: lab.LabStack) -> dict[str, str]:
    """Each container's id and start time: a change to them is a restart or recreate."""
    ids = stack.compose("ps", "-a", "-q").stdout.split()
    if not ids:
        return {}
    result = subprocess.run(["docker", "inspect", "-f", "{{.Name}} {{.Id}} {{.RestartCount}} {{.State.StartedAt}} "
                             "{{.State.Restarting}}", *ids],
                            capture_output=True, text=True, check=True)
    return {line.split()[0]: line for line in result.stdout.splitlines()}


def untouched(before: dict[str, str], after: dict[str, str]) -> bool:
    """The same containers, none restarted or recreated by a command (docker's own restart policy restarting
    one counts its RestartCount up: its start time may move; docker counts up when the container exits, so one
    seen `restarting` had its count raised already for the start that follows)."""
    if before.keys() != after.keys():
        return False
    for name, line in before.items():
        _, cid, count, started, restarting = line.split()
        _, cid2, count2, started2, _ = after[name].split()
        if cid != cid2 or (count == count2 and started != started2 and restarting != "true"):
            return False
    return True


@dataclass
class Flow:
    """What one fault's flow saw, for the test's own further assertions."""

    broken: dict[str, Any] = field(default_factory=dict)  # diagnose --format json on the broken lab
    check: str = ""  # apply --check --diff's output
    applied: dict[str, Any] = field(default_factory=dict)  # apply --format json
    again: dict[str, Any] = field(default_factory=dict)  # the second apply
    seconds: dict[str, float] = field(default_factory=dict)  # how long each part took (printed: pytest -rP)

    def took(self, part: str, since: float) -> float:
        now = time.monotonic()
        self.seconds[part] = round(now - since, 1)
        return now


@dataclass
class FaultLab:
    """A lab instance for catalogue faults, reached through the suite's sshd."""

    stack: lab.LabStack
    inventory: Path
    run: Run
    dirty: bool = False  # a test left it in a fault: the next one resets it first

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.run(*args, "-i", str(self.inventory), timeout=timeout)

    def diagnose(self) -> tuple[int, dict[str, Any]]:
        result = self.cli("diagnose", "lab", "--format", "json")
        return result.returncode, json.loads(result.stdout)

    def break_(self, fault: str) -> str:
        if self.dirty:
            lab.reset(self.stack)
        self.dirty = True
        return lab.break_(self.stack, fault)

    def flow(self, fault: str, playbook: str, *, finding: str | None = None,
             while_broken: Callable[[], None] | None = None, apply_args: tuple[str, ...] = (),
             applied_rc: tuple[int, ...] = (0,)) -> Flow:
        """The catalogue's flow for one fault on this lab (see the module docstring); marks the lab clean.
        `while_broken` is the test's own look at the broken lab, after check mode and before the fix;
        `apply_args` go to the first apply; `applied_rc` are the exit codes it may honestly end with (4: a
        verification PENDING, its soonest task due beyond --verify-timeout)."""
        code = finding or fault.replace("-", "_")
        seen = Flow()
        t = time.monotonic()
        self.break_(fault)
        t = seen.took("break", t)

        rc, broken = self.diagnose()
        host = broken["hosts"]["lab"]
        catalogue = {f["code"] for f in host["problems"] + host["warnings"] if f["code"] in CATALOGUE_IDS}
        assert rc == 2, json.dumps(host, indent=1)[-3000:]
        assert catalogue == {code}, f"catalogue findings {catalogue}, expected exactly {code}: {host['problems']}"
        named = [f for f in host["problems"] if f["code"] == code]
        assert named and all(f.get("evidence") for f in named), named
        seen.broken = broken
        t = seen.took("diagnose", t)

        before, running = project_digest(self.stack), containers(self.stack)
        check = self.cli("apply", "lab", "-p", playbook, "--check", "--diff")
        assert check.returncode == 2, check.stdout[-3000:] + check.stderr[-2000:]
        assert "| would_change |" in check.stdout
        after = project_digest(self.stack)
        assert after == before, f"check mode changed the project: {sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))}"
        now = containers(self.stack)
        assert untouched(running, now), f"check mode restarted or recreated a container: {running} -> {now}"
        seen.check = check.stdout
        t = seen.took("check", t)
        if while_broken is not None:
            while_broken()
            t = seen.took("while broken", t)

        applied = self.cli("apply", "lab", "-p", playbook, "--format", "json", *apply_args)
        assert applied.returncode in applied_rc, applied.stdout[-4000:] + applied.stderr[-2000:]
        seen.applied = json.loads(applied.stdout)
        t = seen.took("apply", t)
        again = self.cli("apply", "lab", "-p", playbook, "--format", "json")
        assert again.returncode == 0, again.stdout[-3000:]
        seen.again = json.loads(again.stdout)
        assert not [s for h in seen.again["hosts"].values() for s in h["steps"] if s["status"] in ("changed", "would_change")]
        t = seen.took("apply again", t)

        rc, clean = self.diagnose()
        left = clean["hosts"]["lab"]["problems"]
        assert rc == 0 and not left, left
        seen.took("diagnose clean", t)
        self.dirty = False
        print(f"{fault} on {self.stack.versions}: " + ", ".join(f"{k} {v:g} s" for k, v in seen.seconds.items()))
        return seen


# the catalogue's stable finding ids (remediate.diagnose.FAULTS)
def _ids() -> frozenset[str]:
    from remediate.diagnose import FAULTS

    return frozenset(f.id for f in FAULTS)


CATALOGUE_IDS = _ids()


def fault_lab(tmp: Path, sshd: Any, run: Run, versions: lab.Versions) -> Iterator[FaultLab]:
    """A working lab instance of `versions` for one module, torn down after it."""
    stack = lab.up(tmp, versions=versions, seeds="fixed", feb31="disabled" if versions == "old" else "enabled")
    try:
        yield FaultLab(stack, stack.inventory(tmp / "inventory.yml", sshd), run)
    finally:
        lab.down(stack)
