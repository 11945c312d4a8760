"""remediate, pyinfra, ansible-playbook and a bare paramiko script on the same workload, side by side.

Run through bench/run, which installs the benchmark-only virtualenv (bench/.venv) first.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv" / "bin"
WORK = BENCH / ".work"
SSH_DIR = WORK / "ssh"
FIXTURE = (BENCH / "fixtures" / "settings.py").read_bytes()
SCHEDULER = b"CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\n"
ANCHOR = b"CELERY_BEAT_SCHEDULE_FILENAME ="
TOOLS = ("remediate", "pyinfra", "ansible", "floor")
MODES = ("check", "apply", "apply-again")
LABELS = {"remediate": "remediate", "pyinfra": "pyinfra", "ansible": "ansible-playbook", "floor": "paramiko floor"}
MIB = 1024 * 1024


def patched(tool: str) -> bytes:
    """The settings file as the tool leaves it after a successful apply."""
    lines = FIXTURE.splitlines(keepends=True)
    i = max(n for n, line in enumerate(lines) if line.startswith(ANCHOR)) + 1
    insert = [SCHEDULER]
    if tool == "pyinfra":  # files.block wraps its content in markers
        insert = [b"# BEGIN PYINFRA BLOCK\n", SCHEDULER, b"# END PYINFRA BLOCK\n"]
    return b"".join(lines[:i] + insert + lines[i:])


@dataclass(frozen=True)
class Setup:
    """The generated configuration of every tool for the first n hosts."""

    n: int
    port: int
    conf: Path

    def hosts(self) -> list[tuple[str, str, Path]]:
        return [(f"h{i:02d}", f"127.0.0.{i}", WORK / "hosts" / f"h{i:02d}") for i in range(1, self.n + 1)]


def write_configs(n: int, port: int) -> Setup:
    setup = Setup(n, port, WORK / "conf" / f"n{n}")
    conf = setup.conf
    conf.mkdir(parents=True, exist_ok=True)
    key, known = SSH_DIR / "id_ed25519", SSH_DIR / "known_hosts"
    hosts = setup.hosts()
    # remediate
    lines = ["hosts:"]
    for name, addr, project in hosts:
        lines += [f"  {name}:", f"    address: {addr}", f"    port: {port}", "    user: root",
                  f"    identity_file: {key}", f"    known_hosts: {known}", f"    vars: {{project_dir: {project}}}"]
    (conf / "remediate.yml").write_text("\n".join(lines) + "\n")
    # ansible
    lines = ["all:", "  hosts:"]
    for name, addr, project in hosts:
        lines += [f"    {name}: {{ansible_host: {addr}, ansible_port: {port}, project_dir: {project}}}"]
    lines += ["  vars:", "    ansible_user: root", f"    ansible_ssh_private_key_file: {key}",
              "    ansible_python_interpreter: /usr/bin/python3"]
    (conf / "ansible.yml").write_text("\n".join(lines) + "\n")
    (conf / "ansible.cfg").write_text(f"""[defaults]
host_key_checking = True
gathering = explicit
retry_files_enabled = False
interpreter_python = /usr/bin/python3
local_tmp = {WORK}/home/.ansible/tmp

[ssh_connection]
pipelining = True
ssh_args = -F /dev/null -C -o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes
""")
    # pyinfra
    common = {"ssh_port": port, "ssh_user": "root", "ssh_key": str(key), "ssh_known_hosts_file": str(known),
              "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False, "ssh_look_for_keys": False,
              "ssh_config_file": "/dev/null"}
    entries = ",\n".join(
        f"    ({name!r}, {{**COMMON, 'ssh_hostname': {addr!r}, 'project_dir': {str(project)!r}}})"
        for name, addr, project in hosts
    )
    (conf / "pyinfra_inventory.py").write_text(f"COMMON = {common!r}\nhosts = [\n{entries},\n]\n")
    (conf / "pyinfra_config.py").write_text("")
    # floor
    (conf / "floor.json").write_text(json.dumps([
        {"name": name, "address": addr, "port": port, "user": "root", "identity": str(key),
         "known_hosts": str(known), "project_dir": str(project)} for name, addr, project in hosts
    ]))
    return setup


def command(tool: str, mode: str, setup: Setup, run_dir: Path) -> tuple[list[str], dict[str, str], int]:
    """argv, extra environment and the expected exit code of one run."""
    check = mode == "check"
    n, conf = setup.n, setup.conf
    if tool == "remediate":
        argv = [str(VENV / "remediate"), "apply", "bench", "-i", str(conf / "remediate.yml"),
                "-p", str(BENCH / "playbooks" / "workload.yml"), "--forks", str(n)]
        return argv + (["--check", "--diff"] if check else []), {}, 2 if check else 0
    if tool == "ansible":
        argv = [str(VENV / "ansible-playbook"), "-i", str(conf / "ansible.yml"),
                str(BENCH / "ansible" / "workload.yml"), "--forks", str(n)]
        env = {"ANSIBLE_CONFIG": str(conf / "ansible.cfg"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_dir / "cp")}
        return argv + (["--check", "--diff"] if check else []), env, 0
    if tool == "pyinfra":
        argv = [str(VENV / "pyinfra"), str(conf / "pyinfra_inventory.py"), str(BENCH / "pyinfra_deploy.py"),
                "--parallel", str(n), "--config", str(conf / "pyinfra_config.py")]
        # --dry without -y: pyinfra's change detection is its check mode; -y would skip it
        return argv + (["--dry", "--diff"] if check else ["-y"]), {}, 0
    argv = [str(VENV / "python"), str(BENCH / "floor.py"), str(conf / "floor.json")]
    return argv + (["--check"] if check else []), {}, 0


def reset(setup: Setup, content: bytes) -> None:
    for _, _, project in setup.hosts():
        shutil.rmtree(project, ignore_errors=True)
        (project / "edms" / "settings").mkdir(parents=True)
        (project / "edms" / "settings" / "base.py").write_bytes(content)


def verify(setup: Setup, tool: str, mode: str) -> list[str]:
    """What is wrong on each host after a run (empty: every host is as it should be)."""
    want = FIXTURE if mode == "check" else patched(tool)
    restarts = b"restarted\n" if mode == "apply" else None
    polls = None if mode == "check" else b"3\n"
    problems = []
    for name, _, project in setup.hosts():
        got = (project / "edms" / "settings" / "base.py").read_bytes()
        if got != want:
            problems.append(f"{name}: settings file is not as expected")
        for file, expected in (("restarts.log", restarts), ("poll.count", polls)):
            path = project / file
            actual = path.read_bytes() if path.exists() else None
            if actual != expected:
                problems.append(f"{name}: {file} is {actual!r}, expected {expected!r}")
    return problems


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss(root: int, marker: bytes | None) -> int:
    """PSS of root and all its descendants (plus processes whose argv names marker), in bytes."""
    children: dict[int, list[int]] = {}
    extra = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        pid, ppid = int(entry), int(rest[1])
        children.setdefault(ppid, []).append(pid)
        if marker and b"(ssh)" in stat:
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                    extra.append(pid)
            except OSError:
                pass
    seen, todo = set(), [root, *extra]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return sum(_pss_kib(pid) for pid in seen) * 1024


def measure(argv: list[str], env: dict[str, str], log: Path, marker: bytes | None) -> tuple[float, int, int]:
    """Wall time, peak PSS of the process tree (sampled every 50 ms) and exit code of one run."""
    peak = 0
    done = threading.Event()
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, tree_pss(proc.pid, marker))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    return wall, peak, rc


def stop_control_masters(run_dir: Path) -> None:
    """Ansible's ControlPersist masters outlive ansible-playbook: close exactly the ones of this run."""
    for sock in (run_dir / "cp").glob("*") if (run_dir / "cp").is_dir() else ():
        subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                       capture_output=True, check=False)


def help_time(reps: int = 7) -> float:
    """Median wall time of `remediate --help`."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([str(VENV / "remediate"), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt(values: list[float], unit: str = "s") -> str:
    med = statistics.median(values)
    if unit == "MiB":
        return f"{med:.0f} MiB"
    return f"{med:.2f} s ({min(values):.2f}–{max(values):.2f})"


def table(records: list[dict[str, object]], tools: tuple[str, ...]) -> str:
    """The Markdown results table: medians, min–max, peak memory, and remediate's ratios."""
    head = ["hosts", "mode", *(LABELS[t] for t in tools)]
    others = [t for t in tools if t != "remediate"]
    if "remediate" in tools:
        head += [f"{LABELS[t]} / remediate" for t in others]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(int(r["hosts"]), str(r["mode"])) for r in records}, key=lambda k: (k[0], MODES.index(k[1])))
    for n, mode in keys:
        cells = [str(n), mode]
        med: dict[str, float] = {}
        for tool in tools:
            rs = [r for r in records if r["hosts"] == n and r["mode"] == mode and r["tool"] == tool and r["ok"]]
            if not rs:
                cells.append("failed")
                continue
            walls = [float(r["wall_s"]) for r in rs]  # type: ignore[arg-type]
            mem = statistics.median(float(r["peak_mib"]) for r in rs)  # type: ignore[arg-type]
            med[tool] = statistics.median(walls)
            cells.append(f"{fmt(walls)}, {mem:.0f} MiB")
        if "remediate" in tools:
            for tool in others:
                cells.append(f"{med[tool] / med['remediate']:.2f}x" if tool in med and "remediate" in med else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--hosts", default="1,10,50", help="host counts, comma-separated (at most 250)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every (hosts, mode, tool)")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--port", type=int, default=2300)
    parser.add_argument("--out", default=str(BENCH / "results"), help="directory for the JSON lines and table")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    tools = tuple(t for t in args.tools.split(",") if t)
    modes = tuple(m for m in args.modes.split(",") if m)
    if not counts or min(counts) < 1 or max(counts) > 250 or set(tools) - set(TOOLS) or set(modes) - set(MODES):
        parser.error("bad --hosts, --tools or --modes")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    raw = out_dir / f"{stamp}.jsonl"
    home = WORK / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    # no agent, no ~/.ssh/config: every tool gets an empty HOME and only the generated keys
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
                "PYINFRA_PROGRESS": "off", "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}
    addresses = [f"127.0.0.{i}" for i in range(1, max(counts) + 1)]
    sshd = [str(ROOT / "lab" / "sshd.sh")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    subprocess.run([*sshd, "start", str(SSH_DIR), str(args.port), *addresses], check=True)
    records: list[dict[str, object]] = []
    try:
        startup = help_time()
        print(f"remediate --help: {startup:.3f} s (median of 7)", flush=True)
        for n in counts:
            setup = write_configs(n, args.port)
            for rep in range(args.reps):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]  # interleaved, rotated each repetition
                for mode in modes:
                    for tool in order:
                        run_dir = WORK / "runs" / f"{tool}-{mode}-n{n}-{rep}"
                        shutil.rmtree(run_dir, ignore_errors=True)
                        run_dir.mkdir(parents=True)
                        reset(setup, patched(tool) if mode == "apply-again" else FIXTURE)
                        argv, env, expected = command(tool, mode, setup, run_dir)
                        marker = str(run_dir / "cp").encode() if tool == "ansible" else None
                        wall, peak, rc = measure(argv, {**base_env, **env}, run_dir / "output.log", marker)
                        stop_control_masters(run_dir)
                        problems = verify(setup, tool, mode)
                        if rc != expected:
                            problems.insert(0, f"exit code {rc}, expected {expected}")
                        record = {"hosts": n, "mode": mode, "tool": tool, "rep": rep, "wall_s": round(wall, 4),
                                  "peak_mib": round(peak / MIB, 1), "rc": rc, "ok": not problems,
                                  "problems": problems[:5], "log": str(run_dir / "output.log")}
                        records.append(record)
                        with open(raw, "a") as fh:
                            fh.write(json.dumps(record) + "\n")
                        status = "ok" if not problems else "WRONG: " + "; ".join(problems[:3])
                        print(f"N={n:<3} {mode:<11} {tool:<9} rep {rep}: {wall:6.2f} s {peak / MIB:6.0f} MiB  {status}",
                              flush=True)
    finally:
        subprocess.run([*sshd, "stop", str(SSH_DIR)], check=False)
    versions = subprocess.run(
        [str(VENV / "python"), "-c", "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
         "('remediate', 'ansible-core', 'pyinfra', 'paramiko')))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    md = (f"{table(records, tools)}\n\nMedian of {args.reps} runs (min–max), peak PSS of the controller's process "
          f"tree; {os.cpu_count()} CPUs; {versions}; `remediate --help`: {startup:.3f} s.\n")
    (out_dir / f"{stamp}.md").write_text(md)
    print("\n" + md)
    print(f"raw: {raw}\ntable: {out_dir / f'{stamp}.md'}")
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
