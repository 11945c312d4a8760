"""One run per host at a time: concurrent applies of the same host in a loop lose no update and the one that
loses names the holder; --wait-lock waits; two controllers (two state directories) exclude each other on the
host; a stale lock of a killed run is taken over, saying so; reloads owed by runs that queued for the host all
survive. Against `connection: local` and the suite's real sshd."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.conftest import Done, Target, cli_env, finish, iterations, run, start

CONCURRENT = iterations(8, 100)

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]

ADD = """\
- hosts: all
  name: add
  steps:
    - name: add a line
      lineinfile: {path: "{{ conf }}", line: "{{ marker }}"}
"""

HOLD = """\
- hosts: all
  name: hold
  steps:
    - name: add a line
      lineinfile: {path: "{{ conf }}", line: "{{ marker }}"}
    - name: a long step
      command:
        argv: [sh, -c, 'echo $$ > "$0.pid.tmp" && mv "$0.pid.tmp" "$0.pid"; n=0;
               while [ ! -e "$0.go" ] && [ "$n" -lt "$(($1 * 10))" ]; do sleep 0.1; n=$((n + 1)); done',
               "{{ conf }}", "{{ hold }}"]
"""
# HOLD's long step lasts until the test creates CONF.go (or `hold` seconds pass): no test relies on timing


def setup(tmp_path: Path, target: Target, playbook: str = ADD) -> tuple[Path, Path, Path]:
    conf = tmp_path / "project" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("# settings\n")
    inventory = target.inventory(tmp_path / "inv.yml", {"web": {"conf": str(conf), "backup_dir": str(tmp_path / "backups")}})
    pb = tmp_path / "pb.yml"
    pb.write_text(playbook)
    return conf, inventory, pb


def holder_named(loser: Done, winner: Done) -> bool:
    """The refusal names the holder: its run id, user, controller host and start time."""
    return (loser.rc == 1 and winner.run_id is not None and f"locked by run {winner.run_id}" in loser.text
            and "by root" in loser.text and socket.gethostname() in loser.text and "since" in loser.text)


def wait_pid(path: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared: the long step never started")


def test_concurrent_applies_lose_no_update_and_the_loser_names_the_holder(tmp_path: Path, target: Target) -> None:
    """CONCURRENT times (100 with REMEDIATE_SOAK=1): two `apply` of one host started together. Every run that exits 0 has its line in the
    file; a run that exits 1 was refused by the lock, naming the run that held it."""
    conf, inventory, pb = setup(tmp_path, target)
    won: list[str] = []
    refused = 0
    for i in range(CONCURRENT):
        procs = [start("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", f"marker=R{n}-{i}") for n in (0, 1)]
        done = [finish(p) for p in procs]
        lines = conf.read_text().splitlines()
        for n, d in enumerate(done):
            if d.rc == 0:
                assert f"R{n}-{i}" in lines, (i, n, d.text)
                won.append(f"R{n}-{i}")
            else:
                refused += 1
                assert holder_named(d, done[1 - n]), (i, n, d.text, done[1 - n].text)
    # two runs that did not overlap both win, in either order
    assert sorted(conf.read_text().splitlines()) == sorted(["# settings", *won]), "an update was lost"
    assert refused >= max(1, CONCURRENT // 10), f"only {refused} of {CONCURRENT} iterations met the lock: the test did not race"
    print(f"\n{target.kind}: {CONCURRENT} iterations, {refused} refused by the lock, {len(won)} lines written, none lost")


def release(conf: Path) -> None:
    """End HOLD's long step."""
    Path(f"{conf}.go").touch()


def test_wait_lock_waits_for_the_holder_then_runs(tmp_path: Path, target: Target) -> None:
    conf, inventory, pb = setup(tmp_path, target, HOLD)
    first = start("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=first", "-e", "hold=300")
    wait_pid(Path(f"{conf}.pid"))
    log = tmp_path / "second.out"
    with log.open("w") as out:
        second = subprocess.Popen([sys.executable, "-m", "remediate", "apply", "x", "-i", str(inventory), "-p", str(pb),
                                   "-e", "marker=second", "-e", "hold=0", "--wait-lock=120"],
                                  cwd=ROOT, env=cli_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "waiting for the lock held by run" not in log.read_text():
        assert second.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    release(conf)
    held = finish(first)
    assert second.wait(timeout=120) == 0, log.read_text()
    assert held.rc == 0, held.text
    assert f"waiting for the lock held by run {held.run_id}" in log.read_text()
    assert conf.read_text().splitlines() == ["# settings", "first", "second"]


def test_wait_lock_gives_up_after_its_seconds_naming_the_holder(tmp_path: Path, target: Target) -> None:
    conf, inventory, pb = setup(tmp_path, target, HOLD)
    first = start("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=first", "-e", "hold=300")
    wait_pid(Path(f"{conf}.pid"))
    second = run("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=second", "-e", "hold=0",
                 "--wait-lock=1")
    still_held = first.poll() is None  # it gave up while the holder still ran: it did not wait it out
    release(conf)
    held = finish(first)
    assert holder_named(second, held) and "waited" in second.text, second.text
    assert still_held
    assert conf.read_text().splitlines() == ["# settings", "first"]


def test_two_controllers_exclude_each_other_on_the_host(tmp_path: Path, target: Target) -> None:
    """Two state directories are two controllers: only the lock on the host itself can stop the second. Over
    SSH only: for `connection: local` the state directory's lock is the run lock (README)."""
    if target.kind == "local":
        pytest.skip("connection: local takes no lock on the host besides the state directory's")
    conf, inventory, pb = setup(tmp_path, target, HOLD)
    other = {"REMEDIATE_STATE_DIR": str(tmp_path / "other-controller")}
    first = start("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=first", "-e", "hold=300")
    wait_pid(Path(f"{conf}.pid"))
    second = run("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=second", "-e", "hold=0", env=other)
    release(conf)
    held = finish(first)
    assert holder_named(second, held), second.text
    assert "on the host" in second.text, second.text
    assert conf.read_text().splitlines() == ["# settings", "first"]


def test_a_stale_lock_of_a_killed_run_is_taken_over_saying_so(tmp_path: Path, target: Target) -> None:
    conf, inventory, pb = setup(tmp_path, target, HOLD)
    killed = start("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=first", "-e", "hold=300")
    sleeper = wait_pid(Path(f"{conf}.pid"))
    killed.send_signal(signal.SIGKILL)  # no cleanup of any kind
    killed.communicate()
    os.kill(sleeper, signal.SIGKILL)  # the command a killed controller could not stop
    Path(f"{conf}.pid").unlink()
    shown = run("audit", "show")
    killed_id = next(line.split()[0] for line in shown.out.splitlines() if "no end record" in line)
    after = run("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=second", "-e", "hold=0")
    assert after.rc == 0, after.text
    assert f"took over a stale lock of run {killed_id}" in after.text, after.text
    assert conf.read_text().splitlines() == ["# settings", "first", "second"]
    again = run("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=second", "-e", "hold=0")
    assert again.rc == 0 and "took over a stale lock" not in again.text, again.text


OWES = """\
- hosts: all
  name: owes {n}
  steps:
    - name: edit {n}
      lineinfile: {{path: "{{{{ conf }}}}", line: "L{n}"}}
      notify: [reload {n}]
    - name: then fail
      command: {{argv: ["{{{{ 'false' if fail else 'true' }}}}"]}}
  handlers:
    - name: reload {n}
      command: {{argv: [sh, -c, 'echo reload {n} >> "$0"', "{{{{ conf }}}}.reloads"]}}
"""


def test_reloads_owed_by_runs_that_queued_for_the_host_all_survive(tmp_path: Path, target: Target) -> None:
    """Four runs at once, each a playbook of its own that edits, notifies and then fails: every one leaves a
    reload owed, and none of those debts is lost to another run's write of the host's pending file."""
    conf, inventory, _ = setup(tmp_path, target)
    books = []
    for n in range(4):
        pb = tmp_path / f"owes{n}.yml"
        pb.write_text(OWES.format(n=n))
        books.append(pb)
    procs = [start("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "fail=true", "--wait-lock=120") for pb in books]
    done = [finish(p) for p in procs]
    assert [d.rc for d in done] == [1, 1, 1, 1], [d.text for d in done]
    assert sorted(conf.read_text().splitlines()) == ["# settings", "L0", "L1", "L2", "L3"]
    for n, pb in enumerate(books):
        after = run("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "fail=false")
        assert after.rc == 0 and f"handler 'reload {n}' is owed since run" in after.text, after.text
    assert sorted(Path(f"{conf}.reloads").read_text().splitlines()) == [f"reload {n}" for n in range(4)]


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_wait_lock_is_invalid_input(tmp_path: Path, value: str) -> None:
    conf, inventory, pb = setup(tmp_path, Target("local"))
    out = run("apply", "x", "-i", str(inventory), "-p", str(pb), "-e", "marker=m", f"--wait-lock={value}")
    assert out.rc == 3 and "--wait-lock" in out.err, out.text
    assert conf.read_text() == "# settings\n"
