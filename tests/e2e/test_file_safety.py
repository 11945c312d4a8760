"""Remote writes, over a real SSH connection and locally: compare-and-swap atomic against other writers,
backups and staging outside the project, no half-written file and no temp file left on any exit path
(a killed controller included), an incomplete backup failing the step before the target is touched."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remediate.actions import ExecContext, WriteFile
from remediate.core.errors import StepError
from remediate.facts.files import WriteConflict, backup_path, read_file, write_file
from remediate.inputs.inventory import Host
from remediate.steps.base import PlanContext
from remediate.facts.files import FileProbe
from remediate.steps.files import LineInFile, PythonAssignment
from remediate.transport.base import Transport
from remediate.transport.local import LocalTransport
from remediate.transport.ssh import SSHOptions, SSHTransport
from tests.conftest import ROOT, Sshd

pytestmark = pytest.mark.ssh

RUN = "20261124T000000Z-abc123"


def ssh_host(sshd: Sshd) -> Host:
    return Host("web-1", sshd.addresses[0], sshd.port, "root", str(sshd.identity), str(sshd.known_hosts))


@pytest.fixture
def transport(sshd: Sshd) -> Iterator[SSHTransport]:
    t = SSHTransport(ssh_host(sshd), SSHOptions())
    yield t
    t.close()


@pytest.fixture(params=["local", "ssh"])
def make_transport(request: pytest.FixtureRequest) -> Iterator[Callable[[], Transport]]:
    """Fresh transports of one kind (each its own connection), closed after the test."""
    made: list[Transport] = []

    def make() -> Transport:
        t: Transport = LocalTransport("here") if request.param == "local" else \
            SSHTransport(ssh_host(request.getfixturevalue("sshd")), SSHOptions())
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory standing for the compose project: nothing but the files the test puts there."""
    path = tmp_path / "project"
    path.mkdir()
    return path


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def staged(backups: Path) -> list[Path]:
    staging = backups / ".staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def wait_for_no_staging(backups: Path, timeout: float = 15) -> list[Path]:
    deadline = time.monotonic() + timeout
    while (left := staged(backups)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def plan_edit(transport: Transport, path: Path, backups: Path, run_id: str = RUN) -> WriteFile:
    step = PythonAssignment(str(path), "CELERY_BEAT_SCHEDULER", "django_celery_beat.schedulers:DatabaseScheduler",
                            backup_dir=str(backups))
    probe = FileProbe(str(path), str(backups))
    (action,) = step.plan({probe: probe.gather(transport)}, PlanContext("web-1", run_id))
    assert isinstance(action, WriteFile)
    return action


def settings_in(project: Path) -> Path:
    return Path(shutil.copy(ROOT / "tests/fixtures/project/edms/settings/base.py", project / "base.py"))


def test_file_changed_between_read_and_write_is_left_alone(project: Path, backups: Path, transport: SSHTransport) -> None:
    path = settings_in(project)
    action = plan_edit(transport, path, backups)
    path.write_text("# someone else's edit\n")
    with pytest.raises(WriteConflict, match="changed since it was read"):
        action.execute(ExecContext("web-1", transport, RUN))
    assert path.read_text() == "# someone else's edit\n"
    assert names(project) == ["base.py"], "no temp file or backup left behind"
    assert not (backups / RUN).exists() and staged(backups) == []


def test_write_is_atomic_with_a_backup_outside_the_project(project: Path, backups: Path, transport: SSHTransport) -> None:
    path = settings_in(project)
    path.chmod(0o640)
    original = path.read_bytes()
    action = plan_edit(transport, path, backups)
    outcome = action.execute(ExecContext("web-1", transport, RUN))
    assert path.read_bytes() == action.content and path.stat().st_mode & 0o777 == 0o640
    backup = backups / RUN / path.relative_to("/")
    assert outcome.message == f"wrote {path} (backup {backup})"
    assert backup.read_bytes() == original
    assert backup.stat().st_mode & 0o777 == 0o600 and backup.parent.stat().st_mode & 0o777 == 0o700
    assert action.audit_fields(RUN)["backup"] == str(backup)
    assert names(project) == ["base.py"], "nothing but the edited file in the project"
    assert staged(backups) == []


def test_a_write_keeps_mode_and_owner_and_a_second_change_keeps_the_first_backup(
    project: Path, backups: Path, transport: SSHTransport
) -> None:
    """An executable owned by another user keeps its mode and owner (copied in one `cp --attributes-only`), its
    backup is 0600 whatever the file's mode; a second write in the same run compares the file itself and
    leaves the original's backup as it was."""
    path = project / "run.sh"
    path.write_bytes(b"#!/bin/sh\necho 1\n")
    path.chmod(0o751)
    os.chown(path, 65534, 65534)
    first = read_file(transport, str(path), str(backups))
    backup = backup_path(first.backup_root, RUN, str(path))
    write_file(transport, str(path), b"#!/bin/sh\necho 2\n", first.sha256, backup, root=first.backup_root)
    st = path.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o751, 65534, 65534)
    assert Path(backup).read_bytes() == b"#!/bin/sh\necho 1\n" and Path(backup).stat().st_mode & 0o777 == 0o600
    second = read_file(transport, str(path), str(backups))
    with pytest.raises(WriteConflict, match="changed since it was read"):
        write_file(transport, str(path), b"lost\n", first.sha256, backup, root=first.backup_root)
    write_file(transport, str(path), b"#!/bin/sh\necho 3\n", second.sha256, backup, root=first.backup_root)
    assert path.read_bytes() == b"#!/bin/sh\necho 3\n" and path.stat().st_mode & 0o7777 == 0o751
    assert Path(backup).read_bytes() == b"#!/bin/sh\necho 1\n", "the original's backup is kept"
    assert names(project) == ["run.sh"] and staged(backups) == []


def test_content_that_arrives_damaged_is_never_written(project: Path, backups: Path, transport: SSHTransport) -> None:
    from remediate.facts.files import _WRITE

    path = project / "base.py"
    path.write_bytes(b"original\n")
    expected = hashlib.sha256(b"original\n").hexdigest()
    promised = hashlib.sha256(b"new content\n").hexdigest()
    backup = backup_path(str(backups), RUN, str(path))
    result = transport.run(["sh", "-c", _WRITE, "sh", str(path), expected, backup, "644", promised, str(backups), "", "5",
                            "0123456789abcdef"],
                           stdin=b"new cont")  # cut short
    assert result.rc == 74 and "arrived damaged" in result.err
    assert path.read_bytes() == b"original\n"
    assert names(project) == ["base.py"] and staged(backups) == [] and not Path(backup).exists()


def test_read_file_reports_missing_and_binary_exact(tmp_path: Path, transport: SSHTransport) -> None:
    missing = read_file(transport, str(tmp_path / "nope"))
    assert not missing.exists and missing.backup_root == "/var/lib/remediate/backups", "root's default"
    blob = bytes(range(256)) * 10
    (tmp_path / "blob").write_bytes(blob)
    fact = read_file(transport, str(tmp_path / "blob"), "~/elsewhere/")
    assert fact.exists and fact.data == blob and fact.backup_root == "/root/elsewhere"


def test_concurrent_writers_lose_no_update(project: Path, backups: Path, make_transport: Callable[[], Transport]) -> None:
    """Two writers read the same version and write at the same moment, 30 times: exactly one wins each
    time, the other gets the conflict, and every line a winner wrote is in the file at the end."""
    path = project / "app.conf"
    path.write_text("# settings\n")
    writers = (make_transport(), make_transport())
    won: list[str] = []
    for i in range(30):
        barrier = threading.Barrier(2)
        outcomes: dict[int, str] = {}

        def write(n: int) -> None:
            t = writers[n]
            step = LineInFile(str(path), f"W{n}-{i}=1", backup_dir=str(backups))
            probe = FileProbe(str(path), str(backups))
            (action,) = step.plan({probe: probe.gather(t)}, PlanContext("web-1", f"run-{i}-{n}"))
            barrier.wait()
            try:
                action.execute(ExecContext("web-1", t, f"run-{i}-{n}"))
                outcomes[n] = "ok"
            except WriteConflict:
                outcomes[n] = "conflict"

        threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(outcomes.values()) == ["conflict", "ok"], (i, outcomes)
        won += [f"W{n}-{i}=1" for n, o in outcomes.items() if o == "ok"]
    lines = path.read_text().splitlines()
    assert lines == ["# settings", *won], "an update was lost"
    assert names(project) == ["app.conf"] and staged(backups) == []


def test_two_apply_runs_at_once_never_both_report_a_write_of_one_version(tmp_path: Path, project: Path, backups: Path) -> None:
    """The lost-update campaign's case, through the CLI: the loser exits 1 saying who holds the host (or that
    the file changed)."""
    path = project / "app.conf"
    path.write_text("# settings\n")
    inventory = tmp_path / "inv.yml"
    inventory.write_text(f"hosts:\n  here:\n    connection: local\n    vars: {{backup_dir: {str(backups)!r}}}\n")
    playbook = tmp_path / "add.yml"
    playbook.write_text(f"- hosts: all\n  name: add\n  steps:\n    - name: add a line\n"
                        f"      lineinfile: {{path: {str(path)!r}, line: '{{{{ marker }}}}'}}\n")
    for i in range(4):
        procs = [subprocess.Popen([sys.executable, "-m", "remediate", "apply", "x", "-i", str(inventory), "-p", str(playbook),
                                   "-e", f"marker=R{n}-{i}"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in (0, 1)]
        results = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "") for p in procs]
        text = path.read_text()
        for n, (rc, out) in enumerate(results):
            if rc == 0:
                assert f"R{n}-{i}\n" in text, (i, n, out)
            else:
                # refused by the run lock (issue 15), or, had the runs not overlapped there, by the write's CAS
                assert rc == 1 and ("locked by run" in out or "changed since it was read" in out), out
    assert names(project) == ["app.conf"] and staged(backups) == []


def test_backup_that_cannot_be_completely_written_fails_before_the_target_is_touched(
    project: Path, tmp_path: Path, transport: SSHTransport
) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], check=True)
    try:
        path = project / "big.py"
        original = b"A = 1\n" + b"# padding\n" * 4000  # 40 kB: the staged new content fits, its backup does not
        path.write_bytes(original)
        step = LineInFile(str(path), "B = 2", backup_dir=str(tiny))
        probe = FileProbe(str(path), str(tiny))
        (action,) = step.plan({probe: probe.gather(transport)}, PlanContext("web-1", RUN))
        with pytest.raises(StepError, match="cannot back .* up to .*No space left on device.*left as it is"):
            action.execute(ExecContext("web-1", transport, RUN))
        assert path.read_bytes() == original, "the target was touched"
        assert names(project) == ["big.py"]
        assert [p for p in tiny.rglob("*")] == [tiny / ".staging"], "the partial backup (and its run directory) removed"
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_staging_on_another_mount_renames_through_the_targets_directory_and_leaves_nothing(
    project: Path, tmp_path: Path, make_transport: Callable[[], Transport]
) -> None:
    """backup_dir on another file system (a tmpfs), and the target behind a bind mount of the same file
    system (same st_dev, but rename(2) fails with EXDEV and mv would copy in place): both end atomic."""
    t = make_transport()
    other = tmp_path / "other-fs"
    bind = tmp_path / "bind"
    other.mkdir()
    bind.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(other)], check=True)
    subprocess.run(["mount", "--bind", str(project), str(bind)], check=True)
    try:
        for root, target in ((other, project / "a.py"), (tmp_path / "same-fs", bind / "b.py")):
            target.write_text("A = 1\n")
            target.chmod(0o604)
            inode = target.stat().st_ino
            step = LineInFile(str(target), "B = 2", backup_dir=str(root))
            probe = FileProbe(str(target), str(root))
            (action,) = step.plan({probe: probe.gather(t)}, PlanContext("web-1", RUN))
            action.execute(ExecContext("web-1", t, RUN))
            assert target.read_text() == "A = 1\nB = 2\n" and target.stat().st_mode & 0o777 == 0o604
            assert target.stat().st_ino != inode, "replaced by a rename, not rewritten in place"
            assert (root / RUN / target.relative_to("/")).read_text() == "A = 1\n"
            assert staged(root) == []
        assert names(project) == ["a.py", "b.py"]
    finally:
        subprocess.run(["umount", str(bind)], check=False)
        subprocess.run(["umount", str(other)], check=False)


def test_lock_held_by_another_writer_is_waited_for_then_refused_clearly(
    project: Path, backups: Path, transport: SSHTransport
) -> None:
    path = project / "app.conf"
    path.write_text("A=1\n")
    fact = read_file(transport, str(path), str(backups))
    fd = os.open(project, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another remediate write is replacing a file in this directory
        with pytest.raises(StepError, match=f"another remediate write held the lock on {project} for more than 1 s"):
            write_file(transport, str(path), b"A=2\n", fact.sha256, backup_path(fact.backup_root, RUN, str(path)),
                       root=fact.backup_root, wait=1)
    finally:
        os.close(fd)
    assert path.read_text() == "A=1\n" and names(project) == ["app.conf"] and staged(backups) == []


def test_a_later_write_removes_what_killed_writers_left_and_says_so(
    project: Path, backups: Path, transport: SSHTransport
) -> None:
    path = project / "app.conf"
    path.write_text("A=1\n")
    old = time.time() - 600
    dead = backups / ".staging" / "w.dead01"
    dead.mkdir(parents=True)
    (dead / "new").write_bytes(b"half a file")
    beside = project / ".remediate.dead01"  # a killed writer's temp for a rename across mounts
    beside.write_bytes(b"half a file")
    (dead / "project-temp").write_text(f"{beside}\n")
    legacy = project / ".remediate.Xy12Ab"  # left by remediate before backups moved out of the project
    legacy.write_bytes(b"old temp")
    live = backups / ".staging" / "w.live01"  # a writer still at work: its lock is held
    live.mkdir()
    for p in (dead / "new", beside, legacy, dead / "project-temp", dead, live):
        os.utime(p, (old, old))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        action = WriteFile(str(path), read_file(transport, str(path), str(backups)), b"A=2\n", "A=1\n", "A=2\n")
        outcome = action.execute(ExecContext("web-1", transport, RUN))
    finally:
        os.close(fd)
    assert path.read_text() == "A=2\n"
    assert "removed what a killed run left:" in outcome.message
    for gone in (beside, dead, legacy):
        assert str(gone) in outcome.message and not gone.exists()
    assert live.exists() and str(live) not in outcome.message, "a live writer's staging is left alone"
    assert names(project) == ["app.conf"]


# A controller that is SIGKILLed while it sends a file: the child below writes over its own connection
_CHILD = """
import sys
from remediate.facts.files import backup_path, read_file, write_file
from remediate.inputs.inventory import Host
from remediate.transport.local import LocalTransport
from remediate.transport.ssh import SSHOptions, SSHTransport
kind, path, root, size, address, port, identity, known = sys.argv[1:]
t = LocalTransport("here") if kind == "local" else SSHTransport(Host("h", address, int(port), "root", identity, known), SSHOptions())
fact = read_file(t, path, root)
print("read", flush=True)
write_file(t, path, b"n" * int(size), fact.sha256, backup_path(fact.backup_root, "RUNK", path), root=fact.backup_root)
print("wrote", flush=True)
"""


def _child(kind: str, path: Path, backups: Path, size: int, sshd: Sshd | None) -> subprocess.Popen[str]:
    ssh = [sshd.addresses[0], str(sshd.port), str(sshd.identity), str(sshd.known_hosts)] if sshd else ["", "0", "", ""]
    return subprocess.Popen([sys.executable, "-c", _CHILD, kind, str(path), str(backups), str(size), *ssh],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_controller_killed_mid_transfer_leaves_no_temp_file(
    kind: str, project: Path, backups: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL while the new content is on its way (a channel of its own over SSH: more than 1 MiB): the
    host-side script sees its stdin end short, and removes what it staged."""
    sshd = request.getfixturevalue("sshd") if kind == "ssh" else None
    path = project / "big.bin"
    path.write_bytes(b"o" * 1000)
    child = _child(kind, path, backups, 100 << 20, sshd)
    assert child.stdout is not None and child.stdout.readline() == "read\n"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the transfer is under way: the staged file grows
        growing = [p for d in staged(backups) for p in d.glob("new") if p.stat().st_size > (1 << 20)]
        if growing:
            break
        time.sleep(0.01)
    assert growing, "the transfer never started"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert wait_for_no_staging(backups) == [], "the host-side script left its staging behind"
    assert path.read_bytes() == b"o" * 1000 and names(project) == ["big.bin"]
    assert not (backups / "RUNK").exists()


@pytest.mark.parametrize("size", [200_000, 3 << 20], ids=["inline", "channel"])
def test_controller_killed_at_random_points_leaves_the_file_old_or_new_and_no_temp_file(
    size: int, project: Path, backups: Path, sshd: Sshd
) -> None:
    """Over SSH, stdin up to 1 MiB goes inline in a here-document (cut short, nothing runs), more goes on
    a channel of its own (cut short, the script sees a short stream): killed anywhere, nothing is left."""
    import random

    rng = random.Random(size)
    path = project / "f.bin"
    for i in range(8):
        path.write_bytes(b"o" * 1000)
        child = _child("ssh", path, backups, size, sshd)
        assert child.stdout is not None and child.stdout.readline() == "read\n"
        time.sleep(rng.uniform(0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert wait_for_no_staging(backups) == [], i
        assert path.read_bytes() in (b"o" * 1000, b"n" * size), i
        assert names(project) == ["f.bin"], i
        if (backups / "RUNK").exists():  # the write went through: its backup is complete
            assert path.read_bytes() == b"n" * size
            assert (backups / "RUNK" / path.relative_to("/")).read_bytes() == b"o" * 1000
            shutil.rmtree(backups / "RUNK")


class AsUser(LocalTransport):
    """Commands on this machine as an unprivileged uid with its own HOME, like a non-root SSH user's."""

    def __init__(self, uid: int, home: Path) -> None:
        super().__init__("deploy")
        self.prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "env", f"HOME={home}"]

    def run(self, argv, **kwargs):  # type: ignore[no-untyped-def, override]
        return super().run([*self.prefix, *argv], **kwargs)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory other users can reach (pytest's own are root's only)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="remediate-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_non_root_user_keeps_backups_under_its_home_by_default(open_tmp: Path) -> None:
    uid = 4321
    home, project = open_tmp / "home", open_tmp / "project"
    for d in (home, project):
        d.mkdir()
        os.chown(d, uid, uid)
    path = project / "settings.py"
    path.write_text("A = 1\n")
    os.chown(path, uid, uid)
    t = AsUser(uid, home)
    step = LineInFile(str(path), "B = 2")
    probe = FileProbe(str(path))
    fact = probe.gather(t)
    assert fact.backup_root == f"{home}/.local/state/remediate/backups"
    (action,) = step.plan({probe: fact}, PlanContext("web-1", RUN))
    action.execute(ExecContext("web-1", t, RUN))
    backup = home / ".local/state/remediate/backups" / RUN / path.relative_to("/")
    assert path.read_text() == "A = 1\nB = 2\n" and backup.read_text() == "A = 1\n"
    assert (path.stat().st_uid, backup.stat().st_uid, backup.stat().st_mode & 0o777) == (uid, uid, 0o600)
    assert (home / ".local").stat().st_mode & 0o777 == 0o700, "directories remediate creates are private"
    assert names(project) == ["settings.py"]
