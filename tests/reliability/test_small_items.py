"""The smaller faults of issue 15: a backwards cron range is refused (Debian's cron 3.0pl1 accepts `5-1` and
sets nothing from it, where croniter reads it as a wrap-around); --connect-timeout must be a finite positive
number; --command-timeout bounds a command; in a file with mixed line endings an untouched LF line stays LF;
a backup that does not fit on its disk fails the step before the target is touched; a target whose own disk
is full is left as it was, with nothing beside it."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.reliability.conftest import Target, leftovers, run, tmpfs, umount

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]


@pytest.mark.parametrize("schedule", ["5-1 * * * *", "0 23-2 * * *", "0 0 * * 5-1", "0 0 20-10 * *"])
def test_a_backwards_cron_range_is_refused(tmp_path: Path, schedule: str) -> None:
    inventory = Target("local").inventory(tmp_path / "inv.yml", {"here": {}})
    out = run("drift", "x", "-i", str(inventory), "--no-health", "--install", "cron", "--schedule", schedule,
              "--root", str(tmp_path / "root"))
    assert out.rc == 3 and schedule.split()[[i for i, f in enumerate(schedule.split()) if "-" in f][0]] in out.err, out.text
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("remediate-drift-*"))


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
@pytest.mark.parametrize("command", ["apply", "drift"])
def test_a_connect_timeout_that_is_not_a_finite_positive_number_is_invalid_input(
    tmp_path: Path, value: str, command: str, state: Path
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("hosts:\n  web: {address: 127.0.0.1, port: 9}\n")
    playbook = tmp_path / "pb.yml"
    playbook.write_text("- hosts: all\n  steps:\n    - name: hi\n      command: {argv: ['true']}\n")
    extra = ("--no-health",) if command == "drift" else ()
    out = run(command, "x", "-i", str(inventory), "-p", str(playbook), *extra, f"--connect-timeout={value}")
    assert out.rc == 3 and "--connect-timeout" in out.err and "Traceback" not in out.err, out.text
    assert not (state / "audit.jsonl").exists() or "run_start" not in (state / "audit.jsonl").read_text()


def test_command_timeout_bounds_a_command(tmp_path: Path, target: Target) -> None:
    inventory = target.inventory(tmp_path / "inv.yml", {"web": {}})
    playbook = tmp_path / "slow.yml"
    playbook.write_text("- hosts: all\n  name: slow\n  steps:\n    - name: too slow\n"
                        "      command: {argv: [sleep, '60']}\n")
    began = time.monotonic()
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "--command-timeout", "2")
    took = time.monotonic() - began
    assert out.rc == 1 and "timed out after 2 s" in out.out, out.text
    assert took < 30, took
    bad = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "--command-timeout", "nan")
    assert bad.rc == 3 and "--command-timeout" in bad.err, bad.text


def test_mixed_line_endings_keep_every_untouched_line_as_it_was(tmp_path: Path, target: Target) -> None:
    conf = tmp_path / "project" / "app.conf"
    conf.parent.mkdir()
    original = b"A = 1\r\nB = 2\r\nC = 3\nD = 4\r\n"
    conf.write_bytes(original)
    inventory = target.inventory(tmp_path / "inv.yml", {"web": {"backup_dir": str(tmp_path / "backups")}})
    playbook = tmp_path / "pb.yml"
    playbook.write_text(f"- hosts: all\n  name: endings\n  steps:\n    - name: add\n"
                        f"      lineinfile: {{path: {str(conf)!r}, line: 'E = 5', after: '^B = '}}\n")
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "--diff")
    assert out.rc == 0, out.text
    data = conf.read_bytes()
    assert data == b"A = 1\r\nB = 2\r\nE = 5\r\nC = 3\nD = 4\r\n", data
    assert out.out.count("\n+E = 5") == 1


def test_a_backup_that_does_not_fit_fails_the_step_before_the_target_is_touched(tmp_path: Path, target: Target) -> None:
    tiny = tmpfs(tmp_path / "tiny", "64k")
    try:
        conf = tmp_path / "project" / "big.py"
        conf.parent.mkdir()
        original = b"A = 1\n" + b"# padding\n" * 4000  # 40 kB: staging fits, the backup beside it does not
        conf.write_bytes(original)
        inventory = target.inventory(tmp_path / "inv.yml", {"web": {"backup_dir": str(tiny)}})
        playbook = tmp_path / "pb.yml"
        playbook.write_text(f"- hosts: all\n  name: b\n  steps:\n    - name: add\n"
                            f"      lineinfile: {{path: {str(conf)!r}, line: 'B = 2'}}\n")
        out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
        assert out.rc == 1 and "No space left on device" in out.out, out.text
        assert conf.read_bytes() == original
        assert sorted(p.relative_to(tiny) for p in tiny.rglob("*")) == [Path(".staging")]
        assert leftovers(conf.parent) == []
    finally:
        umount(tiny)


def test_a_target_on_a_full_disk_is_left_as_it_was(tmp_path: Path, target: Target) -> None:
    """The target's own file system is full, the backups on another: the final copy beside the target
    cannot be written; the file is untouched and nothing is left beside it."""
    disk = tmpfs(tmp_path / "disk", "128k")
    try:
        conf = disk / "app.conf"
        conf.write_bytes(b"A = 1\n" + b"# padding\n" * 6000)  # 60 kB
        (disk / "filler").write_bytes(b"x" * (60 << 10))
        original = conf.read_bytes()
        inventory = target.inventory(tmp_path / "inv.yml", {"web": {"backup_dir": str(tmp_path / "backups")}})
        playbook = tmp_path / "pb.yml"
        playbook.write_text(f"- hosts: all\n  name: b\n  steps:\n    - name: add\n"
                            f"      lineinfile: {{path: {str(conf)!r}, line: 'B = 2'}}\n")
        out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
        assert out.rc == 1 and "No space left on device" in out.out, out.text
        assert conf.read_bytes() == original
        assert sorted(p.name for p in disk.iterdir()) == ["app.conf", "filler"]
    finally:
        umount(disk)
