"""Output a person and a pipe can trust (issue 14, item 2).

A closed or full stdout never stops host work; an unreachable host is one line, never paramiko's traceback; a
long step shows it is running (a live line on a terminal, a start line in a pipe); NO_COLOR / FORCE_COLOR;
coloured diffs on a terminal; the check-mode recap counts would_change; durations with -v; the JSON report's
schema version, start and end times, per-step durations and (with -v) output.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.cliutil import (
    APPS, FIXTURES, SETTINGS, cli_env, local_inventory, not_an_sshd, on_tty, projects, run_end, shell,
    write_playbook,
)
from tests.conftest import remediate

COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def fix_playbook(path: Path) -> Path:
    """tests/fixtures/playbooks/fix.yml with a pause after the first step, so the pipe's reader is gone by then, and
    a step of 200 items whose lines alone (text or JSON) overflow a pipe's buffer."""
    text = (FIXTURES / "playbooks" / "fix.yml").read_text()
    pause = ("    - name: pause\n      command:\n        argv: [sleep, '0.5']\n"
             "    - name: many items\n      loop: \"{{ range(200) | list }}\"\n"
             "      command:\n        argv: [echo, \"{{ item }}-{{ 'x' * 400 }}\"]\n        read_only: true\n")
    text = text.replace("    - name: integrity tasks imported", pause + "    - name: integrity tasks imported", 1)
    path.write_text(text)
    return path


def assert_fully_applied(project: Path) -> None:
    assert "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in (project / SETTINGS).read_text()
    assert "import apps.audit.integrity_tasks  # noqa" in (project / APPS).read_text()
    assert (project / "poll.count").read_text().strip() == "3", "the poll step did not finish"
    assert (project / "restarts.log").read_text() == "restarted\n", "the handler did not run"


# --- a pipe cannot break a run ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [
    pytest.param("text"),
    pytest.param("json"),
])
def test_apply_into_head_leaves_every_host_fully_applied(tmp_path: Path, state_dir: Path, fmt: str) -> None:
    hosts = projects(tmp_path, "web-1", "web-2", "web-3")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = fix_playbook(tmp_path / "fix.yml")
    result = shell(f"remediate apply x -i {inv} -p {playbook} --format {fmt} | head -1; exit ${{PIPESTATUS[0]}}",
                   tmp_path, cli_env(state_dir))
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    for project in hosts.values():
        assert_fully_applied(project)
    end = run_end(state_dir)
    assert end is not None, "the audit trail has no run_end"
    assert end["exit_code"] == 0 and result.returncode == 0, (end, result.returncode, result.stderr)


@pytest.mark.parametrize("argv", [
    pytest.param("inventory x -i {inv} --format json"),
    pytest.param("inventory x -i {inv}"),
    pytest.param("drift x -i {inv} -p {drift} --no-health --format json"),
    "validate {playbook}",
    "audit show",
])
def test_read_commands_into_head_do_not_crash(tmp_path: Path, state_dir: Path, argv: str) -> None:
    hosts = projects(tmp_path, *(f"web-{i}" for i in range(1, 40)))
    inv = local_inventory(tmp_path / "inv.yml", hosts, shared={f"var_{i}": "x" * 80 for i in range(30)})
    playbook = fix_playbook(tmp_path / "fix.yml")
    remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--limit", "web-1")  # something for audit show
    command = argv.format(inv=inv, playbook=playbook, drift=FIXTURES / "playbooks" / "drift.yml")
    result = shell(f"remediate {command} | head -1; exit ${{PIPESTATUS[0]}}", tmp_path, cli_env(state_dir))
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr, result.stderr
    assert result.returncode in (0, 2), (result.returncode, result.stderr)  # drift of unfixed hosts is 2


def test_a_full_stdout_never_stops_host_work(tmp_path: Path, state_dir: Path) -> None:
    """Nobody reads the pipe until the run has ended on every host: about 110 KB of output (more than a pipe's
    64 KiB buffer) must not hold the hosts up."""
    hosts = projects(tmp_path, "web-1", "web-2")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "loud.yml", {"hosts": "all", "steps": [
        {"name": "many items", "loop": [f"item-{i:04d}-" + "x" * 200 for i in range(250)],
         "command": {"argv": ["true", "{{ item }}"]}},
        {"name": "last", "command": {"argv": ["sh", "-c", 'echo done > "$0"', "{{ project_dir }}/last.txt"]}},
    ]})
    proc = subprocess.Popen([sys.executable, "-m", "remediate", "apply", "x", "-i", str(inv), "-p", str(playbook)],
                            cwd=tmp_path, env=cli_env(state_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while run_end(state_dir) is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        ended = run_end(state_dir)
        done = [(p / "last.txt").exists() for p in hosts.values()]
    finally:
        out, err = proc.communicate(timeout=60)
    assert ended is not None, "with its stdout not read, the run never ended"
    assert all(done), done
    assert ended["exit_code"] == 0 and proc.returncode == 0, err.decode()
    assert len(out) > 65536 and b"RECAP" in out, err.decode()[-3000:]  # and nothing was lost once it was read


# --- an unreachable host is one line ------------------------------------------------------------------------


def _dead_inventory(tmp_path: Path, port: int) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "dead.yml"
    path.write_text(json.dumps({"hosts": {"dead": {
        "address": "127.0.0.1", "port": port, "user": "root", "known_hosts": str(tmp_path / "known_hosts"),
        "vars": {"project_dir": "/nonexistent", "compose_dir": "/nonexistent"}}}}))
    return path


@pytest.mark.parametrize("command", ["apply", "drift", "diagnose"])
def test_unreachable_host_prints_one_line(tmp_path: Path, command: str) -> None:
    with not_an_sshd() as listener:
        inv = _dead_inventory(tmp_path, listener.port)
        argv = [command, "x", "-i", str(inv), "--connect-timeout", "2"]
        if command != "diagnose":
            argv += ["-p", str(FIXTURES / "playbooks" / "drift.yml")]
        if command == "drift":
            argv.append("--no-health")
        result = remediate(*argv, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # no "Exception (client)", no traceback
    # one line, naming where (paramiko's "Error reading SSH protocol banner", or the ssh transport's own words)
    said = [line for line in result.stdout.splitlines() if "banner" in line.lower()]
    assert len(said) == 1 and f"127.0.0.1:{listener.port}" in said[0], result.stdout


def test_paramiko_log_goes_to_the_vvv_stream(tmp_path: Path) -> None:
    with not_an_sshd() as listener:
        inv = _dead_inventory(tmp_path, listener.port)
        result = remediate("apply", "x", "-i", str(inv), "-p", str(FIXTURES / "playbooks" / "drift.yml"), "-vvv",
                           cwd=tmp_path)
    assert result.returncode == 1
    assert "paramiko" in result.stderr and "Error reading SSH protocol banner" in result.stderr, result.stderr


# --- a long step shows it is running ------------------------------------------------------------------------


def _slow_playbook(path: Path) -> Path:
    return write_playbook(path, {"name": "slow", "hosts": "all", "steps": [
        {"name": "quick one", "command": {"argv": ["true"]}},
        {"name": "slow one", "command": {"argv": ["sleep", "2.5"]}},
        {"name": "quick two", "command": {"argv": ["true"]}},
    ]})


def test_a_long_step_gets_a_start_line_in_a_pipe(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_slow_playbook(tmp_path / "slow.yml")), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    running = [i for i, line in enumerate(lines) if re.match(r"here \| running +\| ", line)]
    assert len(running) == 1 and "slow one" in lines[running[0]], result.stdout  # the quick ones have none
    done = next(i for i, line in enumerate(lines) if re.match(r"here \| changed +\| slow one", line))
    assert running[0] < done
    assert COLOUR.search(result.stdout) is None and "\r" not in result.stdout


def test_a_long_step_gets_a_live_line_on_a_terminal(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    rc, out = on_tty(["apply", "x", "-i", str(inv), "-p", str(_slow_playbook(tmp_path / "slow.yml"))], tmp_path,
                     cli_env(state_dir))
    assert rc == 0, out
    # a line rewritten in place (carriage return, erase to end of line) naming the host, the step and its time
    assert re.search(r"\r\x1b\[K[^\r\n]*here[^\r\n]*slow one[^\r\n]*\d+ ?s", out), repr(out[-2000:])
    assert "here | running" not in out  # a terminal gets the live line instead of a start line


def test_colour_on_a_terminal_by_default_and_none_in_a_pipe(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    argv = ["apply", "x", "-i", str(inv), "-p", str(FIXTURES / "playbooks" / "drift.yml"), "--check"]
    rc, out = on_tty(argv, tmp_path, cli_env(state_dir))
    assert rc == 2 and COLOUR.search(out), out
    piped = remediate(*argv, cwd=tmp_path, env={"NO_COLOR": "", "FORCE_COLOR": ""})
    assert piped.returncode == 2 and COLOUR.search(piped.stdout) is None


def test_no_color_and_force_color(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    argv = ["apply", "x", "-i", str(inv), "-p", str(FIXTURES / "playbooks" / "drift.yml"), "--check", "--diff"]
    rc, out = on_tty(argv, tmp_path, cli_env(state_dir, NO_COLOR="1"))
    assert rc == 2 and "+CELERY_BEAT_SCHEDULER" in out and COLOUR.search(out) is None, repr(out)
    forced = subprocess.run([sys.executable, "-m", "remediate", *argv], cwd=tmp_path, capture_output=True, text=True,
                            env=cli_env(state_dir, FORCE_COLOR="1"))
    assert forced.returncode == 2 and COLOUR.search(forced.stdout), forced.stdout
    both = subprocess.run([sys.executable, "-m", "remediate", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=cli_env(state_dir, FORCE_COLOR="1", NO_COLOR="1"))
    assert COLOUR.search(both.stdout) is None  # NO_COLOR wins, as in CPython's own colour rules


def test_diffs_are_coloured_on_a_terminal(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    rc, out = on_tty(["apply", "x", "-i", str(inv), "-p", str(FIXTURES / "playbooks" / "drift.yml"), "-C", "-D"],
                     tmp_path, cli_env(state_dir))
    assert rc == 2, out
    assert re.search(r"\x1b\[[0-9;]*32m\+CELERY_BEAT_SCHEDULER = ", out), repr(out)  # added lines green
    assert re.search(r"\x1b\[[0-9;]*m@@ ", out)  # hunk headers coloured too


# --- the recap and durations --------------------------------------------------------------------------------


def test_check_mode_recap_counts_would_change(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "web-1", "web-2")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    argv = ["apply", "x", "-i", str(inv), "-p", str(FIXTURES / "playbooks" / "drift.yml"), "--check"]
    result = remediate(*argv, cwd=tmp_path)
    assert result.returncode == 2
    summary = next(line for line in result.stdout.splitlines() if line.startswith("hosts: "))
    assert "would_change=2" in summary and not re.search(r"\bchanged=", summary), summary
    doc = json.loads(remediate(*argv, "--format", "json", cwd=tmp_path).stdout)
    assert doc["summary"]["would_change"] == 2 and "changed" not in doc["summary"], doc["summary"]


def test_step_durations_with_v(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_slow_playbook(tmp_path / "slow.yml")), "-v",
                       cwd=tmp_path)
    assert result.returncode == 0
    slow = next(line for line in result.stdout.splitlines() if re.match(r"here \| changed +\| slow one", line))
    seconds = float(re.search(r"\((\d+\.\d+) s\)", slow).group(1))  # type: ignore[union-attr]
    assert 2.4 <= seconds < 10, slow


# --- the JSON report ----------------------------------------------------------------------------------------


def _utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_json_report_has_schema_version_times_durations_and_output_with_v(tmp_path: Path, state_dir: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "pb.yml", {"name": "talk", "hosts": "all", "steps": [
        {"name": "talk", "command": {"argv": ["sh", "-c", "sleep 1.2; echo out-line-42; echo err-line-43 >&2"]}}]})
    began = datetime.now().astimezone()
    plain = json.loads(remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--format", "json",
                                 cwd=tmp_path).stdout)
    assert plain["schema_version"] == 1
    started, ended = _utc(plain["started"]), _utc(plain["ended"])
    assert began.timestamp() - 1 <= started.timestamp() <= ended.timestamp() <= datetime.now().timestamp() + 1
    step = plain["hosts"]["here"]["steps"][0]
    assert 1.2 <= step["duration"] < 10 and (ended - started).total_seconds() >= step["duration"]
    assert "stdout" not in step and "stderr" not in step
    verbose = json.loads(remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--format", "json", "-v",
                                   cwd=tmp_path).stdout)
    step = verbose["hosts"]["here"]["steps"][0]
    assert step["stdout"] == "out-line-42\n" and step["stderr"] == "err-line-43\n"


def test_report_json_is_one_document(tmp_path: Path, state_dir: Path) -> None:
    """Live lines never go into a JSON report's stdout."""
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_slow_playbook(tmp_path / "slow.yml")), "--format",
                       "json", cwd=tmp_path)
    assert result.returncode == 0
    json.loads(result.stdout)
