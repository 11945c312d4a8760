"""Scheduling drift: cron schedules validated, cron/systemd files installed into a temporary root, the --every loop."""
from __future__ import annotations

import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from remediate.drift import schedule
from remediate.core.errors import InputError
from tests.conftest import remediate


@pytest.mark.parametrize("text, message", [
    ("*/30 * * *", "expected 5 fields"),
    ("*/30 * * * * *", "expected 5 fields"),
    ("", "expected 5 fields"),
    ("0 0 * * * %", "'%' is not allowed"),
    ("0 0 * * *\n* * * * * rm -rf /", "a newline is not allowed"),
    ("61 * * * *", "invalid cron expression"),
    ("0 0 31 2 *", "never fires"),
    ("0 0 30,31 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
])
def test_bad_schedules_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        schedule.parse_schedule(text)


@pytest.mark.parametrize("text, calendar", [
    ("*/30 * * * *", ("*-*-* *:00,30:00",)),
    ("5 4 * * *", ("*-*-* 04:05:00",)),
    ("0 9 * * 1-5", ("Mon,Tue,Wed,Thu,Fri *-*-* 09:00:00",)),
    ("0 9 * * 7", ("Sun *-*-* 09:00:00",)),
    ("15 2 1 */3 *", ("*-01,04,07,10-01 02:15:00",)),
    ("0 0 13 * 5", ("*-*-13 00:00:00", "Fri *-*-* 00:00:00")),  # cron ORs day of month and weekday
    ("0 0 29 2 *", ("*-02-29 00:00:00",)),  # leap days do come
])
def test_systemd_calendar_from_cron(text: str, calendar: tuple[str, ...]) -> None:
    assert schedule.on_calendar(schedule.parse_schedule(text)) == calendar


def job(tmp_path: Path, env: str = "lab", when: str = "*/30 * * * *") -> schedule.Job:
    argv = ("/opt/venv/bin/python", "-m", "remediate", "drift", env, "-i", str(tmp_path / "my inventory.yml"))
    return schedule.Job(env, schedule.parse_schedule(when), argv, "/srv/ops dir", str(tmp_path / "state"), "root")


def test_cron_install_is_one_flock_wrapped_line_and_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    j = job(tmp_path)
    (change,) = schedule.install(schedule.Kind.CRON, j, root)
    assert change.action == "written" and change.path == root / "etc/cron.d/remediate-drift-lab"
    text = change.path.read_text()
    assert text.splitlines()[0] == "# remediate-drift-lab: managed by remediate"
    entries = [line for line in text.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(entries) == 1
    fields = entries[0].split(None, 6)
    assert fields[:6] == ["*/30", "*", "*", "*", "*", "root"]
    words = shlex.split(fields[6])
    lock = str(tmp_path / "state" / "remediate-drift-lab.lock")
    assert words[:3] == ["cd", "/srv/ops dir", "&&"]
    assert words[3] == f"REMEDIATE_STATE_DIR={tmp_path / 'state'}"
    assert words[4:7] == ["flock", "-n", lock]
    assert words[7:14] == list(j.argv) and words[-3:] == [">>", str(tmp_path / "state" / "remediate-drift-lab.log"), "2>&1"]
    assert oct(change.path.stat().st_mode & 0o777) == "0o644"
    assert (tmp_path / "state").is_dir()

    (again,) = schedule.install(schedule.Kind.CRON, j, root)
    assert again.action == "unchanged" and again.path.read_text() == text
    (moved,) = schedule.install(schedule.Kind.CRON, job(tmp_path, when="0 * * * *"), root)
    assert moved.action == "updated" and moved.path.read_text().splitlines()[-1].startswith("0 * * * * root cd ")
    assert sorted(p.name for p in (root / "etc/cron.d").iterdir()) == ["remediate-drift-lab"]

    (gone,) = schedule.uninstall(schedule.Kind.CRON, "lab", root)
    assert gone.action == "removed" and not gone.path.exists()
    (absent,) = schedule.uninstall(schedule.Kind.CRON, "lab", root)
    assert absent.action == "absent"


def test_systemd_install_writes_service_and_timer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    changes = schedule.install(schedule.Kind.SYSTEMD, job(tmp_path, when="0 9 * * 1-5"), root)
    assert [(c.path.name, c.action) for c in changes] == [
        ("remediate-drift-lab.service", "written"), ("remediate-drift-lab.timer", "written")]
    service = (root / "etc/systemd/system/remediate-drift-lab.service").read_text()
    timer = (root / "etc/systemd/system/remediate-drift-lab.timer").read_text()
    lock = tmp_path / "state" / "remediate-drift-lab.lock"
    assert "Type=oneshot\n" in service and 'WorkingDirectory="/srv/ops dir"\n' in service
    assert f"Environment=REMEDIATE_STATE_DIR={tmp_path / 'state'}\n" in service
    assert (f"ExecStart=/usr/bin/flock -n {lock} /opt/venv/bin/python -m remediate drift lab -i "
            f"\"{tmp_path / 'my inventory.yml'}\"\n") in service
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 09:00:00\n" in timer
    assert "Unit=remediate-drift-lab.service\n" in timer and "WantedBy=timers.target" in timer
    assert [c.action for c in schedule.install(schedule.Kind.SYSTEMD, job(tmp_path, when="0 9 * * 1-5"), root)] == [
        "unchanged", "unchanged"]
    assert [c.action for c in schedule.uninstall(schedule.Kind.SYSTEMD, "lab", root)] == ["removed", "removed"]
    assert list((root / "etc/systemd/system").iterdir()) == []


def test_files_remediate_did_not_write_are_left_alone(tmp_path: Path) -> None:
    from remediate.core.errors import RemediateError

    root = tmp_path / "root"
    theirs = root / "etc/cron.d/remediate-drift-lab"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("0 * * * * root /usr/local/bin/their-own-job\n")
    with pytest.raises(RemediateError, match="not written by remediate"):
        schedule.install(schedule.Kind.CRON, job(tmp_path), root)
    with pytest.raises(RemediateError, match="not written by remediate"):
        schedule.uninstall(schedule.Kind.CRON, "lab", root)
    assert theirs.read_text() == "0 * * * * root /usr/local/bin/their-own-job\n"


def test_percent_or_newline_in_the_command_is_refused(tmp_path: Path) -> None:
    bad = schedule.Job("lab", schedule.parse_schedule("* * * * *"), ("remediate", "drift", "lab", "-i", "/x/50%.yml"),
                       "/", str(tmp_path), "root")
    with pytest.raises(InputError, match="'%' and newlines"):
        schedule.install(schedule.Kind.CRON, bad, tmp_path / "root")


def test_cli_install_and_uninstall_cron(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text("hosts:\n  here:\n    connection: local\n")
    env = {"REMEDIATE_STATE_DIR": str(tmp_path / "state")}
    root = tmp_path / "root"
    args = ("drift", "lab", "-i", str(inventory), "--root", str(root))
    first = remediate(*args, "--install", "cron", "--schedule", "*/30 * * * *", "--notify", "http://127.0.0.1:9/h", env=env)
    assert first.returncode == 0, first.stderr
    path = root / "etc/cron.d/remediate-drift-lab"
    assert first.stdout.split() == ["written", str(path)]
    line = path.read_text().splitlines()[-1]
    assert "flock -n" in line and f"drift lab -i {inventory}" in line and "--notify http://127.0.0.1:9/h" in line
    second = remediate(*args, "--install", "cron", "--schedule", "*/30 * * * *", "--notify", "http://127.0.0.1:9/h", env=env)
    assert second.returncode == 0 and second.stdout.split() == ["unchanged", str(path)]

    for bad, message in (("0 0 31 2 *", "never fires"), ("* * *", "expected 5 fields"), ("%", "'%' is not allowed")):
        out = remediate(*args, "--install", "cron", "--schedule", bad, env=env)
        assert out.returncode == 3 and message in out.stderr, out.stderr
    out = remediate(*args, "--install", "cron", env=env)
    assert out.returncode == 3 and "--install needs --schedule" in out.stderr

    systemd = remediate(*args, "--install", "systemd", "--schedule", "0 3 * * *", env=env)
    assert systemd.returncode == 0 and "systemctl enable --now remediate-drift-lab.timer" in systemd.stdout

    removed = remediate(*args, "--uninstall", "cron", env=env)
    assert removed.returncode == 0 and removed.stdout.split() == ["removed", str(path)]
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "etc/systemd/system/remediate-drift-lab.service", "etc/systemd/system/remediate-drift-lab.timer"]


def test_the_installed_cron_command_runs(tmp_path: Path) -> None:
    """The command line cron would run, run by sh as cron does: it records a drift run in history."""
    inventory = tmp_path / "lab.yml"
    project = tmp_path / "project"
    project.mkdir()
    (project / "marker").write_text("")
    inventory.write_text(f"hosts:\n  here:\n    connection: local\n    vars: {{p: {str(project)!r}}}\n")
    playbook = tmp_path / "pb.yml"
    playbook.write_text("- name: marker file\n  hosts: all\n  steps:\n    - name: marker\n      lineinfile:\n"
                        "        path: \"{{ p }}/marker\"\n        line: ok\n")
    env = {"REMEDIATE_STATE_DIR": str(tmp_path / "state")}
    root = tmp_path / "root"
    out = remediate("drift", "lab", "-i", str(inventory), "-p", str(playbook), "--no-health", "--root", str(root),
                    "--install", "cron", "--schedule", "* * * * *", env=env)
    assert out.returncode == 0, out.stderr
    command = (root / "etc/cron.d/remediate-drift-lab").read_text().splitlines()[-1].split(None, 6)[6]
    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2, ran.stderr  # drift: the marker line is missing
    log = (tmp_path / "state" / "remediate-drift-lab.log").read_text()
    assert "DRIFT   playbook:pb" in log and "drift found; exit 2" in log
    history = remediate("drift", "history", "lab", env=env)
    assert "hosts=1  drift  here/playbook:pb" in history.stdout


def test_every_loop_survives_a_failed_run_and_stops_when_told() -> None:
    stop = threading.Event()
    calls: list[int] = []
    log: list[str] = []

    def once() -> int:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the inventory vanished")
        if len(calls) == 3:
            stop.set()
        return 2

    ticks = iter(range(0, 1000, 5))
    assert schedule.run_every(0.001, once, stop, log.append, clock=lambda: next(ticks) / 1000) == 0
    assert len(calls) == 3
    assert "run 1 failed:" in log[0] and "RuntimeError: the inventory vanished" in log[0]
    assert log[1:] == ["run 2 ended with exit 2", "run 3 ended with exit 2", "stopped after 3 run(s)"]
