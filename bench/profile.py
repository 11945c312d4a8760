"""Where remediate's time goes on the bench workload: bench/run profile [--hosts 50] [--modes check,apply].

For each host count and mode, on fair hosts (bench.py's sshd): the floor once, then remediate once under
bench/trace.py (every connection, remote command, audit append and owed-reload write timed), with the wall
time, the controller's CPU (user + system, wait4), the bytes of output, each step's median duration per host,
and `python -X importtime`'s slowest imports of the CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import bench


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, bytes, bytes, int]:
    """Wall time, controller CPU (the process tree it waited for), stdout, stderr, exit code."""
    r, w = os.pipe()
    e_r, e_w = os.pipe()
    began = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=w, stderr=e_w, env=env)
    os.close(w)
    os.close(e_w)
    with os.fdopen(r, "rb") as out_f, os.fdopen(e_r, "rb") as err_f:
        out, err = out_f.read(), err_f.read()  # stdout is small; stderr is the trace summary
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - began, usage.ru_utime + usage.ru_stime, out, err, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run profile", description=__doc__)
    parser.add_argument("--hosts", default="50")
    parser.add_argument("--modes", default="check,apply")
    parser.add_argument("--port", type=int, default=2320)
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(bench.WORK / "home"), "LANG": "C.UTF-8"}
    (bench.WORK / "home").mkdir(parents=True, exist_ok=True)
    imports = subprocess.run([str(bench.VENV / "python"), "-X", "importtime", "-c", "import remediate.cli"],
                             capture_output=True, text=True, check=True).stderr.splitlines()
    rows: list[tuple[int, int, str]] = []  # (own µs, cumulative µs, module)
    for line in imports[1:]:
        fields = line.split(":", 1)[1].split("|")
        rows.append((int(fields[0]), int(fields[1]), fields[2].strip()))
    print(f"import remediate.cli: {max(r[1] for r in rows) / 1000:.0f} ms in all; slowest own times:")
    for own_us, _, module in sorted(rows, reverse=True)[:8]:
        print(f"  {own_us / 1000:6.1f} ms {module}")
    login = bench.start_hosts([f"127.0.0.{i}" for i in range(1, max(counts) + 1)], args.port, fair=True)
    print(login.describe())
    try:
        for n in counts:
            setup = bench.write_configs(n, args.port)
            for mode in args.modes.split(","):
                bench.reset(setup, bench.FIXTURE)
                argv, _, _ = bench.command("floor", mode, setup, bench.WORK)
                floor_wall, floor_cpu, *_ = timed(argv, env)
                bench.reset(setup, bench.FIXTURE)
                argv, _, _ = bench.command("remediate", mode, setup, bench.WORK)
                argv = [str(bench.VENV / "python"), str(bench.BENCH / "trace.py"), *argv[1:], "--format", "json"]
                wall, cpu, out, err, rc = timed(argv, env)
                doc = json.loads(out)
                print(f"\n{n} hosts, {mode}: remediate {wall:.2f} s wall, {cpu:.2f} s controller CPU "
                      f"({cpu / n * 1000:.0f} ms per host), exit {rc}; floor {floor_wall:.2f} s, {floor_cpu:.2f} s CPU")
                steps: dict[str, list[float]] = {}
                for host in doc["hosts"].values():
                    for s in host["steps"]:
                        steps.setdefault(("handler: " if s["handler"] else "") + s["name"], []).append(s["duration"])
                for name, times in steps.items():
                    print(f"  step {name[:58]:58} median {statistics.median(times) * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms")
                print("  " + err.decode().strip().replace("\n", "\n  "))
    finally:
        subprocess.run([str(bench.ROOT / "lab" / "sshd.sh"), "stop", str(bench.SSH_DIR)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
