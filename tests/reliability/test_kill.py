"""SIGKILL of the controller at random points: every file is exactly old or new, no temp file or staging is
left anywhere (the project, the backup directory, the state directory), and the next run converges: the files
hold the change and the reload ran after the last change. `audit show` of a killed run says it has no end.

Locally the backup directory is a tmpfs, another mount than the project: a write's last copy then goes
through a `.remediate.XXXXXX` beside the target, the case that used to leave 100 MB temp files behind. Over
SSH one file is 1.2 MB, so its content travels on a channel of its own rather than inline."""
from __future__ import annotations

import hashlib
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import (Target, finish, iterations, leftovers, records, run, staging_left, start, tmpfs,
                                        umount)

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]

KILLS = iterations(8, 60)  # REMEDIATE_SOAK=1: the 60 of issue 15

PLAYBOOK = """\
- hosts: all
  name: kill
  steps:
    - name: settings edited
      lineinfile: {path: "{{ dir }}/app.conf", line: "NEW = 1"}
      notify: [reload]
    - name: the big file edited
      lineinfile: {path: "{{ dir }}/big.conf", line: "NEW = 2"}
      notify: [reload]
    - name: a read-only look
      command: {argv: [cat, "{{ dir }}/app.conf"], read_only: true}
  handlers:
    - name: reload
      command: {argv: [sh, -c, 'cat "$0/app.conf" "$0/big.conf" | sha256sum >> "$0/reloads.log"', "{{ dir }}"]}
"""

APP_OLD = b"# settings\nDEBUG = False\n"
BIG_OLD = b"".join(b"# line %d of a big generated file\n" % i for i in range(36_000))  # 1.2 MB: more than goes inline


def digest(project: Path) -> str:
    return hashlib.sha256((project / "app.conf").read_bytes() + (project / "big.conf").read_bytes()).hexdigest()


def temp_files(state: Path) -> list[Path]:
    """Hidden files a writer of the state directory made and did not rename into place."""
    return sorted(p for p in state.rglob(".*") if p.is_file())


def test_random_sigkills_leave_no_temp_file_and_the_next_run_converges(
    tmp_path: Path, target: Target, state: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    backups = tmpfs(tmp_path / "backups", "64m") if target.kind == "local" else tmp_path / "backups"
    try:
        inventory = target.inventory(tmp_path / "inv.yml", {"web": {"dir": str(project), "backup_dir": str(backups)}})
        playbook = tmp_path / "kill.yml"
        playbook.write_text(PLAYBOOK)
        app_new = APP_OLD + b"NEW = 1\n"
        big_new = BIG_OLD + b"NEW = 2\n"
        args = ("apply", "x", "-i", str(inventory), "-p", str(playbook))

        def reset() -> None:
            (project / "app.conf").write_bytes(APP_OLD)
            (project / "big.conf").write_bytes(BIG_OLD)

        reset()
        began = time.monotonic()
        first = run(*args)
        span = time.monotonic() - began  # how long a whole run takes here: kills land anywhere in it
        assert first.rc == 0, first.text
        rng = random.Random(f"{target.kind}-15")
        outcomes = {"old": 0, "new": 0, "partly": 0}
        unended: set[str] = set()  # runs killed after their first record and before their last
        for i in range(KILLS):
            reset()
            seen = len(records(state))
            proc = start(*args)
            time.sleep(rng.uniform(0.0, span * 1.1))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            was_killed = proc.returncode == -signal.SIGKILL  # else it had ended before the kill came
            assert staging_left(backups) == [], i
            app, big = (project / "app.conf").read_bytes(), (project / "big.conf").read_bytes()
            assert app in (APP_OLD, app_new) and big in (BIG_OLD, big_new), (i, len(app), len(big))
            outcome = ("old" if (app, big) == (APP_OLD, BIG_OLD) else "new" if (app, big) == (app_new, big_new)
                       else "partly")
            outcomes[outcome] += 1
            mine = records(state)[seen:]
            started = {r["run_id"] for r in mine if r.get("event") == "run_start"}
            ended = {r["run_id"] for r in mine if r.get("event") == "run_end"}
            unended |= started - ended
            if was_killed and outcome == "partly":  # killed between its writes: before its end record
                assert started and not started & ended, (i, mine)
            assert leftovers(project) == [], i
            # a kill between a state file's temp copy and its rename leaves the copy: the next run removes it
            planted = temp_files(state)

            after = run(*args)
            assert after.rc == 0, (i, after.text)
            assert (project / "app.conf").read_bytes() == app_new and (project / "big.conf").read_bytes() == big_new
            reloads = (project / "reloads.log").read_text().split()
            assert reloads[-2] == digest(project), (i, "the reload did not run after the last change", after.text)
            assert leftovers(project) == [] and temp_files(state) == [], i
            assert all(str(p) in after.err for p in planted), (i, planted, after.err)
            for run_dir in backups.iterdir():  # keep the tmpfs small: each run keeps a 1.2 MB backup
                if not run_dir.name.startswith("."):
                    shutil.rmtree(run_dir)
        verify = run("audit", "verify")
        assert verify.rc == 0, verify.text
        listing = run("audit", "show").out
        killed = [line.split()[0] for line in listing.splitlines() if "no end record" in line]
        # `audit show` names exactly the runs killed between their first and last record as without an end
        assert set(killed) == unended, (outcomes, killed, unended, listing)
        if killed:
            shown = run("audit", "show", killed[-1])
            assert "no end record: the run was killed or lost" in shown.out, shown.out
        print(f"\n{target.kind}: {KILLS} SIGKILLs within {span * 1.1:.2f} s of the start: {outcomes}; "
              f"{len(killed)} runs without an end record")
    finally:
        if target.kind == "local":
            umount(backups)


def test_temp_files_a_killed_run_left_in_the_state_directory_are_removed_saying_so(tmp_path: Path, state: Path) -> None:
    """What SIGKILL leaves between a temp file's creation and its rename (the audit head, a host's owed
    reloads): the next run removes it, because its writer's process is gone, and says so."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "app.conf").write_bytes(APP_OLD)
    (project / "big.conf").write_bytes(b"small\n")
    inventory = Target("local").inventory(tmp_path / "inv.yml", {"web": {"dir": str(project),
                                                                         "backup_dir": str(tmp_path / "b")}})
    playbook = tmp_path / "kill.yml"
    playbook.write_text(PLAYBOOK)
    assert run("apply", "x", "-i", str(inventory), "-p", str(playbook)).rc == 0
    dead = 4_000_000  # above pid_max's default: no such process
    (state / "pending").mkdir(exist_ok=True)
    planted = [state / f".audit.head.{dead}.140000", state / "pending" / f".web.json.{dead}.140000"]
    for path in planted:
        path.write_text("{}")
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    assert out.rc == 0, out.text
    assert temp_files(state) == []
    for path in planted:
        assert str(path) in out.text, out.text
