"""remediate, pyinfra, ansible-playbook and a bare paramiko script on the same workload, side by side.

Run through bench/run, which installs the benchmark-only virtualenv (bench/.venv) first.
"""
from __future__ import annotations

import argparse
import datetime
import re
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
# The fair login: sshd sets SHLVL=1 for every session, so the login shell starts as a nested shell (SHLVL 2)
# and Debian's bash, which sources /etc/bash.bashrc and ~/.bashrc for non-interactive sessions run by sshd
# only when SHLVL < 2, skips both. Without it (--slow-login) every session runs root's startup files.
FAIR_SETENV = "SetEnv SHLVL=1"


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


@dataclass(frozen=True)
class Measured:
    """One run of one tool: wall time, peak PSS of its process tree, its exit code and CPU time."""

    wall: float
    peak: int
    rc: int
    cpu: float  # user + system CPU of the tool and every descendant it waited for (the controller's work)
    machine_cpu: float  # busy CPU time of the whole machine meanwhile (the hosts' sshd and shells, and noise)
    load1: float  # 1-minute load average when the run started


def machine_busy() -> float:
    """CPU seconds the machine spent not idle since boot (all CPUs)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def measure(argv: list[str], env: dict[str, str], log: Path, marker: bytes | None) -> Measured:
    """Wall time, peak PSS of the process tree, exit code and CPU time of one run.

    PSS is sampled every 50 ms, or less often when one sample costs more than a tenth of that interval (a
    tree of hundreds of Ansible forks), so sampling never takes more than about a tenth of one CPU.
    """
    peak = 0
    done = threading.Event()
    load1 = load_average()
    with open(log, "wb") as out:
        busy = machine_busy()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)

        def sample() -> None:
            nonlocal peak
            interval = 0.05
            while not done.wait(interval):
                began = time.perf_counter()
                peak = max(peak, tree_pss(proc.pid, marker))
                interval = max(0.05, 10 * (time.perf_counter() - began))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        machine = machine_busy() - busy
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    return Measured(wall, peak, rc, usage.ru_utime + usage.ru_stime, machine, load1)


def stop_control_masters(run_dir: Path) -> None:
    """Ansible's ControlPersist masters outlive ansible-playbook: close exactly the ones of this run."""
    for sock in (run_dir / "cp").glob("*") if (run_dir / "cp").is_dir() else ():
        subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                       capture_output=True, check=False)


@dataclass(frozen=True)
class Login:
    """What one SSH session costs on the bench's hosts, as measured on the first host."""

    fair: bool
    shlvl: str  # $SHLVL as the login shell sees it: "2" when sshd set SHLVL=1 (startup files skipped)
    connect_ms: float  # TCP connect, SSH handshake and public-key authentication (paramiko), min of 5
    session_ms: float  # one `exec true` session on an open connection, min of 5
    processes: int  # processes the machine started during that session, min of 5 (the session's own)
    daemons: int  # sshd processes serving the addresses

    def describe(self) -> str:
        how = (f"sshd `{FAIR_SETENV}`, so bash skips /etc/bash.bashrc and ~/.bashrc for non-interactive sessions"
               if self.fair else "slow login (--slow-login): every session runs root's startup files")
        return (f"hosts: {how}; login shell sees SHLVL={self.shlvl}; per session {self.processes} "
                f"process{'es' if self.processes != 1 else ''} spawned, {self.session_ms:.0f} ms (exec of `true`); connect+handshake+auth {self.connect_ms:.0f} ms; "
                f"{self.daemons} sshd processes (at most 16 addresses each)")


def _forks_since_boot() -> int:
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("processes "):
                return int(line.split()[1])
    raise RuntimeError("/proc/stat has no processes line")


def _connect(ssh_dir: Path, addr: str, port: int) -> object:
    import paramiko  # type: ignore[import-untyped,unused-ignore]

    client = paramiko.SSHClient()
    client.load_host_keys(str(ssh_dir / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(addr, port=port, username="root", key_filename=str(ssh_dir / "id_ed25519"),
                   allow_agent=False, look_for_keys=False, timeout=10)
    return client


def _exec(client: object, command: str) -> bytes:
    chan = client.get_transport().open_session()  # type: ignore[attr-defined]
    chan.exec_command(command)
    out = chan.makefile("rb").read()
    chan.recv_exit_status()
    chan.close()
    return bytes(out)


def listen_addresses(ssh_dir: Path) -> list[list[str]]:
    """The addresses each of lab/sshd.sh's daemons listens on, from the configs it wrote."""
    daemons = []
    for conf in sorted(ssh_dir.glob("sshd_config.*"), key=lambda p: int(p.suffix[1:])):
        daemons.append(re.findall(r"^ListenAddress (\S+):\d+$", conf.read_text(), re.M))
    return daemons


def start_hosts(addresses: list[str], port: int, fair: bool, ssh_dir: Path = SSH_DIR) -> Login:
    """sshd on the addresses (lab/sshd.sh), made fair unless asked not to; every daemon checked by a login.

    Stop it with `lab/sshd.sh stop SSH_DIR`.
    """
    for stale in ssh_dir.glob("sshd_config.*"):  # a previous run's, maybe for more daemons than this one's
        stale.unlink()
    subprocess.run([str(ROOT / "lab" / "sshd.sh"), "start", str(ssh_dir), str(port), *addresses], check=True)
    daemons = listen_addresses(ssh_dir)
    if fair:
        # sshd re-executes itself and rereads its configuration on SIGHUP (sshd(8))
        for n, _ in enumerate(daemons):
            with open(ssh_dir / f"sshd_config.{n}", "a") as fh:
                fh.write(FAIR_SETENV + "\n")
            os.kill(int((ssh_dir / f"sshd.{n}.pid").read_text()), signal.SIGHUP)
    want = "2" if fair else "1"
    for group in daemons:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = _connect(ssh_dir, group[0], port)
                try:
                    shlvl = _exec(client, "echo $SHLVL").decode().strip()
                finally:
                    client.close()  # type: ignore[attr-defined]
                if shlvl == want:
                    break
            except (OSError, EOFError) as exc:
                shlvl = f"no login ({exc})"
            except Exception as exc:  # noqa: BLE001 - paramiko's SSHException while the daemon re-executes
                shlvl = f"no login ({exc})"
            if time.monotonic() > deadline:
                raise SystemExit(f"bench/run: sshd on {group[0]}:{port}: login shell sees SHLVL={shlvl}, expected {want}")
            time.sleep(0.1)
    connects, sessions, spawned = [], [], []
    for _ in range(5):
        began = time.perf_counter()
        client = _connect(ssh_dir, addresses[0], port)
        connects.append(time.perf_counter() - began)
        try:
            before, began = _forks_since_boot(), time.perf_counter()
            _exec(client, "true")
            sessions.append(time.perf_counter() - began)
            spawned.append(_forks_since_boot() - before)
        finally:
            client.close()  # type: ignore[attr-defined]
    return Login(fair, want, min(connects) * 1000, min(sessions) * 1000, min(spawned), len(daemons))


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


def _runs(records: list[dict[str, object]], n: int, mode: str, tool: str) -> list[dict[str, object]]:
    return [r for r in records if r["hosts"] == n and r["mode"] == mode and r["tool"] == tool]


def medians(records: list[dict[str, object]], n: int, mode: str, tool: str) -> tuple[float, float] | None:
    """Median wall time and median peak MiB of the successful runs (None when a run failed or none ran)."""
    rs = _runs(records, n, mode, tool)
    if not rs or not all(r["ok"] for r in rs):
        return None
    return (statistics.median(float(r["wall_s"]) for r in rs),  # type: ignore[arg-type]
            statistics.median(float(r["peak_mib"]) for r in rs))  # type: ignore[arg-type]


def table(records: list[dict[str, object]], tools: tuple[str, ...], caps: dict[str, int]) -> str:
    """The Markdown results table: medians, min–max, peak memory, and remediate's ratios.

    Ratios compare medians of the same run: remediate / floor (at or under 1.00 is at or under the floor),
    and every other tool / remediate (how many times faster remediate is).
    """
    head = ["hosts", "mode", *(LABELS[t] for t in tools)]
    others = [t for t in tools if t not in ("remediate", "floor")]
    ratios = []
    if "remediate" in tools:
        ratios = (["remediate / floor"] if "floor" in tools else []) + [f"{LABELS[t]} / remediate" for t in others]
    rows = ["| " + " | ".join(head + ratios) + " |", "|" + "---|" * len(head + ratios)]
    keys = sorted({(int(str(r["hosts"])), str(r["mode"])) for r in records}, key=lambda k: (k[0], MODES.index(k[1])))
    for n, mode in keys:
        cells = [str(n), mode]
        med: dict[str, float] = {}
        for tool in tools:
            rs = _runs(records, n, mode, tool)
            if n > caps.get(tool, n):
                cells.append(f"not run (--cap {tool}={caps[tool]})")
                continue
            if not rs:
                cells.append("not measured")
                continue
            bad = [r for r in rs if not r["ok"]]
            walls = [float(r["wall_s"]) for r in rs]  # type: ignore[arg-type]
            mem = statistics.median(float(r["peak_mib"]) for r in rs)  # type: ignore[arg-type]
            if bad:
                cells.append(f"wrong in {len(bad)} of {len(rs)} runs")
                continue
            med[tool] = statistics.median(walls)
            cells.append(f"{fmt(walls)}, {mem:.0f} MiB")
        if ratios:
            if "floor" in tools:
                cells.append(f"{med['remediate'] / med['floor']:.2f}" if {"remediate", "floor"} <= set(med) else "–")
            for tool in others:
                cells.append(f"{med[tool] / med['remediate']:.2f}x" if tool in med and "remediate" in med else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def targets(records: list[dict[str, object]]) -> list[str]:
    """Issue 17's targets, each met or not, from this run's medians (only those this run measured)."""
    lines = []
    counts = sorted({int(str(r["hosts"])) for r in records})
    for n in (c for c in counts if c >= 10):
        for mode in ("check", "apply"):
            rem, floor = medians(records, n, mode, "remediate"), medians(records, n, mode, "floor")
            if rem and floor:
                ratio = rem[0] / floor[0]
                lines.append(f"{'met' if ratio <= 1.0 else 'NOT met'}: {mode} at {n} hosts at or under the floor "
                             f"(remediate / floor {ratio:.2f})")
    for mode in ("check", "apply"):
        rem, pyinfra = medians(records, 50, mode, "remediate"), medians(records, 50, mode, "pyinfra")
        if rem and pyinfra:
            ratio = pyinfra[0] / rem[0]
            lines.append(f"{'met' if ratio >= 2.0 else 'NOT met'}: {mode} at 50 hosts 2x faster than pyinfra "
                         f"(pyinfra / remediate {ratio:.2f}x)")
    peaks = [float(r["peak_mib"]) for r in records  # type: ignore[arg-type]
             if r["tool"] == "remediate" and r["hosts"] == 200 and r["ok"]]
    if peaks:
        lines.append(f"{'met' if max(peaks) < 100 else 'NOT met'}: remediate's peak memory at 200 hosts under 100 MiB "
                     f"(highest of its runs {max(peaks):.0f} MiB)")
    return lines


def cpu_table(records: list[dict[str, object]], tools: tuple[str, ...]) -> str:
    """Median controller CPU seconds (user + system of the tool's process tree) per run."""
    head = ["hosts", "mode", *(f"{LABELS[t]} CPU" for t in tools)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(int(str(r["hosts"])), str(r["mode"])) for r in records}, key=lambda k: (k[0], MODES.index(k[1])))
    for n, mode in keys:
        cells = [str(n), mode]
        for tool in tools:
            cpu = [float(r["cpu_s"]) for r in records  # type: ignore[arg-type]
                   if r["hosts"] == n and r["mode"] == mode and r["tool"] == tool and r["ok"]]
            cells.append(f"{statistics.median(cpu):.2f} s" if cpu else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse_caps(values: list[str], parser: argparse.ArgumentParser) -> dict[str, int]:
    caps = {}
    for value in values:
        tool, _, n = value.partition("=")
        if tool not in TOOLS or not n.isdigit():
            parser.error(f"--cap {value}: expected TOOL=N with TOOL one of {', '.join(TOOLS)}")
        caps[tool] = int(n)
    return caps


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--hosts", default="1,10,50", help="host counts, comma-separated (at most 250)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every (hosts, mode, tool)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {','.join(TOOLS)}")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {','.join(MODES)}")
    parser.add_argument("--cap", action="append", default=[], metavar="TOOL=N",
                        help="run TOOL only at host counts up to N (the table says so in its cells)")
    parser.add_argument("--slow-login", action="store_true",
                        help="hosts whose every session runs root's startup files (no SetEnv SHLVL=1): a separate figure")
    parser.add_argument("--port", type=int, default=2300)
    parser.add_argument("--out", default=str(BENCH / "results"), help="directory for the JSON lines and table")
    parser.add_argument("--table-from", metavar="JSONL",
                        help="print the tables and targets of an earlier run's raw records (one cut short) and exit")
    args = parser.parse_args()
    if args.table_from:
        earlier: list[dict[str, object]] = [json.loads(line) for line in Path(args.table_from).read_text().splitlines()
                                            if line.strip()]
        present = tuple(t for t in ("remediate", "floor", "pyinfra", "ansible") if any(r["tool"] == t for r in earlier))
        print(f"{table(earlier, present, parse_caps(args.cap, parser))}\n\n{cpu_table(earlier, present)}\n\n"
              + "".join(f"- {t}\n" for t in targets(earlier)))
        return 0
    counts = [int(n) for n in args.hosts.split(",")]
    tools = tuple(t for t in args.tools.split(",") if t)
    modes = tuple(m for m in args.modes.split(",") if m)
    if not counts or min(counts) < 1 or max(counts) > 250 or set(tools) - set(TOOLS) or set(modes) - set(MODES):
        parser.error("bad --hosts, --tools or --modes")
    caps = parse_caps(args.cap, parser)
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    records: list[dict[str, object]] = []
    uptime_before = Path("/proc/loadavg").read_text().split()[:3]
    began = time.monotonic()
    try:
        login = start_hosts(addresses, args.port, fair=not args.slow_login)
        print(login.describe(), flush=True)
        for tool, cap in caps.items():
            print(f"{LABELS[tool]}: run at host counts up to {cap} only (--cap)", flush=True)
        startup = help_time()
        print(f"remediate --help: {startup:.3f} s (median of 7)", flush=True)
        for n in counts:
            setup = write_configs(n, args.port)
            here = tuple(t for t in tools if n <= caps.get(t, n))
            for rep in range(args.reps):
                order = here[rep % len(here):] + here[:rep % len(here)]  # interleaved, rotated each repetition
                for mode in modes:
                    for tool in order:
                        run_dir = WORK / "runs" / f"{tool}-{mode}-n{n}-{rep}"
                        shutil.rmtree(run_dir, ignore_errors=True)
                        run_dir.mkdir(parents=True)
                        reset(setup, patched(tool) if mode == "apply-again" else FIXTURE)
                        argv, env, expected = command(tool, mode, setup, run_dir)
                        marker = str(run_dir / "cp").encode() if tool == "ansible" else None
                        m = measure(argv, {**base_env, **env}, run_dir / "output.log", marker)
                        stop_control_masters(run_dir)
                        problems = verify(setup, tool, mode)
                        if m.rc != expected:
                            problems.insert(0, f"exit code {m.rc}, expected {expected}")
                        record = {"hosts": n, "mode": mode, "tool": tool, "rep": rep, "wall_s": round(m.wall, 4),
                                  "peak_mib": round(m.peak / MIB, 1), "cpu_s": round(m.cpu, 3),
                                  "machine_cpu_s": round(m.machine_cpu, 2), "load1": m.load1,
                                  "login": "fair" if login.fair else "slow", "rc": m.rc, "ok": not problems,
                                  "problems": problems[:5], "log": str(run_dir / "output.log")}
                        records.append(record)
                        with open(raw, "a") as fh:
                            fh.write(json.dumps(record) + "\n")
                        status = "ok" if not problems else "WRONG: " + "; ".join(problems[:3])
                        print(f"N={n:<3} {mode:<11} {tool:<9} rep {rep}: {m.wall:6.2f} s {m.peak / MIB:6.0f} MiB "
                              f"cpu {m.cpu:5.2f} s  load {m.load1:4.2f}  {status}", flush=True)
    finally:
        subprocess.run([str(ROOT / "lab" / "sshd.sh"), "stop", str(SSH_DIR)], check=False)
    minutes = (time.monotonic() - began) / 60
    versions = subprocess.run(
        [str(VENV / "python"), "-c", "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
         "('remediate', 'ansible-core', 'pyinfra', 'paramiko')))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    loads = [float(r["load1"]) for r in records]  # type: ignore[arg-type]
    load = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "–"
    command_line = "bench/run " + " ".join(sys.argv[1:])
    md = (f"{table(records, tools, caps)}\n\n`{command_line}`: median of {args.reps} runs (min–max), peak PSS of "
          f"the controller's process tree; {os.cpu_count()} CPUs; {versions}; `remediate --help`: {startup:.3f} s; "
          f"the run took {minutes:.0f} minutes; 1-minute load average at the start of each run {load} "
          f"(before the bench: {' '.join(uptime_before)}).\n\n{login.describe()}.\n\n"
          f"Controller CPU (user + system of the tool's process tree, median):\n\n{cpu_table(records, tools)}\n\n"
          "Targets of issue 17 in this run:\n\n" + "".join(f"- {t}\n" for t in targets(records)))
    (out_dir / f"{stamp}.md").write_text(md)
    print("\n" + md)
    print(f"raw: {raw}\ntable: {out_dir / f'{stamp}.md'}")
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
