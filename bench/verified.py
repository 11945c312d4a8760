"""Time to verified: `remediate apply` of the shipped site fix on a fresh broken lab stack, start to "verified".

    bench/run verified [--versions old|current] [--sync default|fast] [--reps 1]

Each repetition brings up a new lab stack (tests/lab.py: its own directory, name and free ports, never the
default instance), reached as root through an sshd of its own with the fair login (bench/bench.py), runs
`remediate apply lab -i INVENTORY --format json` (playbooks/site.yml: both seed fixes, each verified). It
reports the time from the host's start to the end of its last verification (the recap's "verified N s after
start"), the time to exit, every step's end, issue 17's limit for it (one rebuild + the soonest due time after
beat started + beat's sync lag + 15 s) and from the run's audit trail how many compose builds and recreates
it ran per service. The stack is torn down afterwards (`lab/down --purge`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
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
        argv = [str(bench.VENV / "remediate"), "apply", "lab", "-i", str(inventory), "--format", "json"]
        began = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - began
        (parent / "output.log").write_text(done.stdout + done.stderr)
        trail = state / "audit.jsonl"
        builds, recreates, actions = service_actions(trail)
        host = json.loads(done.stdout)["hosts"]["lab"]
        timeline, at = [], 0.0
        for step in host["steps"]:
            at += step["duration"]
            timeline.append(f"{at:7.1f} s  {step['status']:<9} {'handler: ' if step['handler'] else ''}{step['name']}")
        reloads = [s for s in host["steps"] if s["handler"] and s["kind"] == "compose_reload"]
        # the seed fix's proof: the first celery_tasks_run that ran (the catalogue's are skipped on the write-up's host)
        ran = next((s for s in host["steps"] if s["kind"] == "celery_tasks_run" and "due" in (s.get("data") or {})), None)
        bound = None
        if ran is not None and "due" in (ran.get("data") or {}) and reloads:
            data = ran["data"]
            due_wait = (datetime.datetime.fromisoformat(data["due"])
                        - datetime.datetime.fromisoformat(data["beat_started"])).total_seconds()
            rebuild = sum(s["duration"] for s in reloads)
            bound = {"rebuild_s": round(rebuild, 1), "due_after_beat_start_s": round(due_wait, 1),
                     "sync_lag_s": data["sync_lag"], "slack_s": 15,
                     "before_reload_s": round(sum(s["duration"] for s in host["steps"][:host["steps"].index(reloads[0])]), 1),
                     "limit_s": round(rebuild + due_wait + float(data["sync_lag"]) + 15, 1)}
        return {
            "rep": rep, "versions": versions, "sync": "fast" if fast_sync else "default", "rc": done.returncode,
            "wall_s": round(wall, 1), "verified_s": host.get("verified_s") if done.returncode == 0 else None,
            "bound": bound, "builds": dict(builds), "recreates": dict(recreates), "actions": actions,
            "timeline": timeline, "log": str(parent / "output.log"),
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
        print(f"rep {rep}: exit {result['rc']}; verified after {result['verified_s']} s (the recap's figure); exit after "
              f"{result['wall_s']} s; builds per service {result['builds']}; recreates per service {result['recreates']}",
              flush=True)
        bound = result["bound"]
        if isinstance(bound, dict) and result["verified_s"] is not None:
            within = float(str(result["verified_s"])) <= bound["limit_s"]
            print(f"rep {rep}: limit one rebuild ({bound['rebuild_s']} s) + soonest due after beat started "
                  f"({bound['due_after_beat_start_s']} s) + beat's sync lag ({bound['sync_lag_s']:g} s) + 15 s = "
                  f"{bound['limit_s']} s: {'met' if within else 'NOT met'} (the steps before the reload took "
                  f"{bound['before_reload_s']} s)", flush=True)
        if not args.keep:
            shutil.rmtree(Path(str(result["log"])).parent, ignore_errors=True)
    ok = all(r["rc"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
