"""Time to verified: `remediate apply` of the shipped site fix on a fresh broken lab stack, start to "verified".

    bench/run verified [--versions old|current] [--sync default|fast] [--reps 1]

Each repetition brings up a new lab stack (tests/lab.py: its own directory, name and free ports, never the
default instance), reached as root through an sshd of its own with the fair login (bench/bench.py), runs
`remediate apply lab -i INVENTORY` (playbooks/site.yml: both seed fixes, each verified) and reads its live
output line by line, each line stamped as it arrives. It reports the time from the start to the end of the
last verification step, the time to exit, every step's end, and from the run's audit trail how many compose
builds and recreates it ran per service. The stack is torn down afterwards (`lab/down --purge`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402  (bench/bench.py: the fair sshd)
from tests import lab  # noqa: E402  (the lab stacks the suite uses)

ADDRESS = "127.0.0.1"
# a step's line in remediate's live output: "HOST | STATUS | [handler: ]NAME  [FILE:LINE]"
STEP_LINE = re.compile(r"^(?P<host>\S+) \| (?P<status>[a-z_ ]+?)\s* \| (?P<handler>handler: )?(?P<name>.+?)  \[(?P<where>[^\]]+)\]$")


@dataclass(frozen=True)
class Sshd:
    """What LabStack.inventory needs of an sshd."""

    dir: Path
    port: int
    addresses: tuple[str, ...]

    @property
    def identity(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"


@dataclass(frozen=True)
class Line:
    """One line of remediate's output and when it arrived (seconds after the start)."""

    at: float
    text: str


def run_apply(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, float, list[Line]]:
    """Run argv, stamp every output line as it arrives; exit code, wall time, lines."""
    lines: list[Line] = []
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
        assert proc.stdout is not None
        for text in proc.stdout:
            at = time.monotonic() - start
            lines.append(Line(at, text.rstrip("\n")))
            out.write(f"{at:8.2f} {text}")
        rc = proc.wait()
    return rc, time.monotonic() - start, lines


def service_actions(trail: Path) -> tuple[Counter[str], Counter[str], list[str]]:
    """Per service, the compose builds and recreates the run's audit trail records (its intents), and each action."""
    builds: Counter[str] = Counter()
    recreates: Counter[str] = Counter()
    actions = []
    for raw in trail.read_text().splitlines():
        record = json.loads(raw)
        if record.get("event") != "intent":
            continue
        action = str(record.get("action", ""))
        for command in action.split("; "):
            words = command.split()
            if "compose" not in words:
                continue
            if "build" in words:
                builds[words[-1]] += 1
                actions.append(f"{record.get('step')}: build {words[-1]}")
            elif "--force-recreate" in words:
                for service in words[words.index("--force-recreate") + 1:]:
                    recreates[service] += 1
                actions.append(f"{record.get('step')}: recreate {' '.join(words[words.index('--force-recreate') + 1:])}")
            elif "restart" in words:
                for service in words[words.index("restart") + 1:]:
                    recreates[f"{service} (restart)"] += 1
                actions.append(f"{record.get('step')}: restart {' '.join(words[words.index('restart') + 1:])}")
    return builds, recreates, actions


def verify_steps(trail: Path) -> set[str]:
    """Names of the steps the run recorded as verifications."""
    names = set()
    for raw in trail.read_text().splitlines():
        record = json.loads(raw)
        if record.get("event") == "step" and record.get("verify"):
            names.add(str(record.get("step")))
    return names


def one(versions: lab.Versions, fast_sync: bool, work: Path, rep: int) -> dict[str, object]:
    parent = Path(tempfile.mkdtemp(prefix="verified-", dir=work))
    ssh_dir = parent / "ssh"
    port = lab.free_port_block(1, ADDRESS)
    login = bench.start_hosts([ADDRESS], port, fair=True, ssh_dir=ssh_dir)
    stack = None
    try:
        began = time.monotonic()
        stack = lab.up(parent, versions=versions, fast_sync=fast_sync)
        print(f"rep {rep}: lab stack {stack.name} ({versions}, sync {'fast' if fast_sync else 'default'}) up in "
              f"{time.monotonic() - began:.0f} s; {login.describe()}", flush=True)
        inventory = stack.inventory(parent / "inventory.yml", Sshd(ssh_dir, port, (ADDRESS,)))
        state, home = parent / "state", parent / "home"
        home.mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
               "NO_COLOR": "1", "REMEDIATE_STATE_DIR": str(state)}
        argv = [str(bench.VENV / "remediate"), "apply", "lab", "-i", str(inventory)]
        rc, wall, lines = run_apply(argv, env, parent / "output.log")
        trail = state / "audit.jsonl"
        verifying = verify_steps(trail)
        steps = [(line.at, m) for line in lines if (m := STEP_LINE.match(line.text))]
        verified = [at for at, m in steps if m["name"] in verifying and m["status"] == "ok"]
        builds, recreates, actions = service_actions(trail)
        timeline = [f"{at:7.1f} s  {m['status']:<9} {'handler: ' if m['handler'] else ''}{m['name']}" for at, m in steps]
        return {
            "rep": rep, "versions": versions, "sync": "fast" if fast_sync else "default", "rc": rc,
            "wall_s": round(wall, 1), "verified_s": round(max(verified), 1) if verified and rc == 0 else None,
            "builds": dict(builds), "recreates": dict(recreates), "actions": actions, "timeline": timeline,
            "log": str(parent / "output.log"),
        }
    finally:
        if stack is not None:
            lab.down(stack)
        subprocess.run([str(ROOT / "lab" / "sshd.sh"), "stop", str(ssh_dir)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run verified", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", choices=lab.VERSION_SETS, default=lab.DEFAULT_VERSIONS)
    parser.add_argument("--sync", choices=("default", "fast"), default="default",
                        help="default: Celery's own beat sync, as the write-up's server (fast: a named variant)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--out", default=str(BENCH / "results"))
    parser.add_argument("--keep", action="store_true", help="keep the run directories (logs, trail) under bench/.work")
    args = parser.parse_args()
    work = bench.WORK / "verified"
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = []
    for rep in range(args.reps):
        result = one(args.versions, args.sync == "fast", work, rep)
        results.append(result)
        with open(out / f"verified-{stamp}.jsonl", "a") as fh:
            fh.write(json.dumps(result) + "\n")
        print("\n".join(str(t) for t in result["timeline"]))  # type: ignore[attr-defined]
        print(f"rep {rep}: exit {result['rc']}; verified after {result['verified_s']} s; exit after {result['wall_s']} s; "
              f"builds per service {result['builds']}; recreates per service {result['recreates']}", flush=True)
        if not args.keep:
            shutil.rmtree(Path(str(result["log"])).parent, ignore_errors=True)
    ok = all(r["rc"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
