#!/usr/bin/env python3
"""How a compose action proves its service, measured on a real lab stack over a real sshd (issue 18).

    .venv/bin/python bench/compose_proof.py [--reps 5] [--tree DIR] [--processes]

Brings up its own lab stack (`lab/up`, free ports) and sshd (`lab/sshd.sh`, 127.0.0.16), runs three scenarios
N times each on one SSH transport (as one run's steps on a host) with the `ServiceAction` of the tree at DIR
(default: this one; an older checkout measures the `docker inspect` polling it had), and prints per scenario:
the commands remediate ran over the host's shell, its Engine API requests, the processes started on the host
(with --processes: strace of the sshd's process tree, in untimed runs of their own, for the first compose step
on a host and for a later one; needs strace), the time from the compose command returning to the decision,
and how late the proof was: the moment remediate decided minus the moment the condition
held, from `docker events` on this machine (the host: StartedAt + settle without a healthcheck, the
`health_status: healthy` event, the `die` event). Tears both down. Figures go to stdout and, as JSON lines,
to bench/results/compose-proof-*.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ADDRESS = "127.0.0.16"
SETTLE = 5.0
SCENARIOS = (
    # label, service, mode, extra compose file, what the proof waits for
    ("beat restart (no healthcheck, settle 5 s)", "celery_beat", "restart", None, "settle"),
    ("backend restart (healthcheck)", "backend", "restart", None, "healthy"),
    ("beat recreated with a command that dies 2 s after start", "celery_beat", "recreate", "broken-beat.yml", "die"),
)
BROKEN = "services:\n  celery_beat:\n    command: [sh, -c, 'echo \"beat: no broker\" >&2; sleep 2; exit 3']\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def free_block(count: int = 3) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        try:
            for port in range(base, base + count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise SystemExit("no free ports")


def load(tree: Path) -> dict[str, Any]:
    """The tree's ServiceAction and what it needs (the layout of issue 13 on)."""
    sys.path.insert(0, str(tree))
    from remediate.actions.base import ExecContext
    from remediate.actions.compose import ServiceAction
    from remediate.core.errors import StepError
    from remediate.facts.compose import Compose, Project
    from remediate.inputs.inventory import Host
    from remediate.transport.ssh import SSHOptions, SSHTransport
    return dict(ExecContext=ExecContext, ServiceAction=ServiceAction, StepError=StepError, Compose=Compose,
                Project=Project, Host=Host, SSHOptions=SSHOptions, SSHTransport=SSHTransport)


class Counting:
    """The host's transport, counting the commands run over it and noting when the starting command returned."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.commands, self.returned = inner, inner.name, 0, 0.0

    def run(self, argv: Any, **kwargs: Any) -> Any:
        self.commands += 1
        result = self.inner.run(argv, **kwargs)
        if "up" in argv or "restart" in argv:
            self.returned = time.time()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Truth:
    """`docker events` of the project on this machine (which is the host)."""

    def __init__(self, project: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(["docker", "events", "--format", "{{json .}}", "--filter",
                                      f"label=com.docker.compose.project={project}"], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.5)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seen.append(json.loads(line))

    def held(self, since: int, service: str, kind: str) -> float:
        mine = [e for e in self.seen[since:] if e["Actor"]["Attributes"].get("com.docker.compose.service") == service]
        if kind == "settle":
            return float([e["timeNano"] / 1e9 for e in mine if e["Action"] == "start"][-1]) + SETTLE
        action = "health_status: healthy" if kind == "healthy" else "die"
        return float([e["timeNano"] / 1e9 for e in mine if e["Action"] == action][-1])

    def stop(self) -> None:
        self.proc.terminate()


def host_processes(sshd_pidfile: Path, work: Any) -> tuple[Any, int]:
    """Run work() while strace counts the processes created under the sshd (its whole tree)."""
    def tree(pid: str) -> list[str]:
        children = subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout.split()
        return [pid] + [p for c in children for p in tree(c)]

    log = Path(tempfile.mktemp(prefix="remediate-strace-"))
    pids = tree(sshd_pidfile.read_text().strip())
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o", str(log),
                               *[a for p in pids for a in ("-p", p)]])
    time.sleep(1.5)
    try:
        result = work()
    finally:
        time.sleep(0.5)
        tracer.terminate()
        tracer.wait()
    lines = log.read_text().splitlines()
    log.unlink()
    forks = [x for x in lines if ("clone" in x or "fork" in x) and "CLONE_THREAD" not in x and "resumed" not in x]
    return result, len(forks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the remediate checkout whose ServiceAction runs")
    parser.add_argument("--processes", action="store_true",
                        help="first count host processes (strace; untimed runs: strace slows what it traces)")
    args = parser.parse_args()
    r = load(args.tree.resolve())
    work = Path(tempfile.mkdtemp(prefix="remediate-proof-"))
    name = f"proof{uuid.uuid4().hex[:8]}"
    stack, keys, port = work / name, work / "ssh", free_port()
    subprocess.run([str(ROOT / "lab" / "up"), "--dir", str(stack), "--name", name, "--port-base", str(free_block())],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(ROOT / "lab" / "sshd.sh"), "start", str(keys), str(port), ADDRESS], check=True)
    (stack / "broken-beat.yml").write_text(BROKEN)
    truth = Truth(name)
    rows: list[dict[str, Any]] = []
    processes: dict[tuple[str, str], int] = {}
    out = HERE / "results" / f"compose-proof-{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    out.parent.mkdir(exist_ok=True)
    host = r["Host"]("bench", ADDRESS, port, "root", str(keys / "id_ed25519"), str(keys / "known_hosts"))

    def connect() -> Any:
        transport = r["SSHTransport"](host, r["SSHOptions"]())
        transport.connect()
        transport.run(["true"])  # the login shell has started: measure the step, not the login
        return transport

    def step(transport: Any, scenario: tuple[Any, ...], traced: bool = False) -> dict[str, Any]:
        """One compose action on the host's transport; the figures of that one step."""
        label, service, mode, extra, kind = scenario
        counting = Counting(transport)
        engine = transport.docker() if hasattr(transport, "docker") else None
        asked = engine.requests if engine is not None else 0
        files = ("docker-compose.yml", extra) if extra else ()
        action = r["ServiceAction"](r["Compose"](("docker", "compose")), r["Project"](str(stack), files), name,
                                    (service,), mode, wait=120, settle=SETTLE)
        mark = len(truth.seen)

        def act() -> str:
            try:
                outcome = action.execute(r["ExecContext"]("bench", counting, "bench"))
                return "failed" if outcome.failed else "proved"
            except r["StepError"]:
                return "failed"

        forks = None
        if traced:
            verdict, forks = host_processes(keys / "sshd.0.pid", act)
        else:
            verdict = act()
        decided = time.time()
        time.sleep(0.3)
        row = {"scenario": label, "verdict": verdict, "commands": counting.commands,
               "api_requests": (engine.requests - asked) if engine is not None else 0, "host_processes": forks,
               "after_command": round(decided - counting.returned, 3),
               "late": round(decided - truth.held(mark, service, kind), 3)}
        if extra:  # back to the stack's own beat
            subprocess.run(["docker", "compose", "--project-directory", str(stack), "up", "-d", "--no-deps",
                            "--force-recreate", service], check=True, capture_output=True)
        return row

    try:
        if args.processes:
            # the first compose step on a host (its transport fresh: the API's channels are dialled), then a
            # later one (the same transport)
            for scenario in SCENARIOS:
                transport = connect()
                for when in ("first", "later"):
                    row = step(transport, scenario, traced=True)
                    processes[(scenario[0], when)] = row["host_processes"]
                    print(json.dumps({**row, "step": when, "timed": False}), flush=True)
                transport.close()
        transport = connect()
        for rep in range(args.reps):  # one transport for all of them, as one run's steps on a host
            for scenario in SCENARIOS:
                row = {**step(transport, scenario), "rep": rep}
                rows.append(row)
                with out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
        transport.close()
    finally:
        truth.stop()
        subprocess.run([str(ROOT / "lab" / "sshd.sh"), "stop", str(keys)], check=False)
        subprocess.run([str(ROOT / "lab" / "down"), "--dir", str(stack), "--name", name, "--purge"], check=False,
                       stdout=subprocess.DEVNULL)
    print(f"\ntree {args.tree}, {args.reps} reps on one transport; medians (min-max); host processes of the "
          "first compose step on a host / of a later one")
    print("| scenario | verdict | shell commands | API requests | host processes | decided after the command returned | late |")
    print("|---|---|---|---|---|---|---|")
    for label, *_ in SCENARIOS:
        mine = [x for x in rows if x["scenario"] == label]
        late = [x["late"] for x in mine]
        forks = (f"{processes[(label, 'first')]} / {processes[(label, 'later')]}"
                 if (label, "first") in processes else "-")
        print(f"| {label} | {mine[0]['verdict']} | {statistics.median(x['commands'] for x in mine):g} | "
              f"{statistics.median(x['api_requests'] for x in mine):g} | {forks} | "
              f"{statistics.median(x['after_command'] for x in mine):.2f} s | "
              f"{statistics.median(late):.3f} s ({min(late):.3f}-{max(late):.3f}) |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
