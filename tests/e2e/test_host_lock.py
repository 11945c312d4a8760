"""The run lock on the host (engine/lock.py HostSideLock), held in the host's own shell (transport `keep`): no
command inherits it, a shell killed with a command that timed out takes it again before the next command (or
fails that command when another controller took it meanwhile), and a released lock is free, not stale."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.core.errors import CommandFailed, StepError
from remediate.engine.lock import Holder, HostSideLock, Locked
from remediate.inputs.inventory import Host
from remediate.transport.base import Become
from remediate.transport.ssh import SSHOptions, SSHTransport
from tests.conftest import Sshd

pytestmark = pytest.mark.ssh

LOCKS = Path("/var/lib/remediate/backups/.locks")


@pytest.fixture
def name() -> Iterator[str]:
    """A host name of this test's own, so its lock file is nobody else's; its files removed afterwards."""
    host = f"lock-test-{secrets.token_hex(4)}"
    yield host
    for path in LOCKS.glob(f"run.{host}@*"):
        path.unlink()


def transport(sshd: Sshd, name: str, **options: float) -> SSHTransport:
    host = Host(name, sshd.addresses[0], sshd.port, "root", str(sshd.identity), str(sshd.known_hosts))
    return SSHTransport(host, SSHOptions(**options))  # type: ignore[arg-type]


def lock_of(t: SSHTransport, name: str) -> HostSideLock:
    return HostSideLock(t, name, t.identity().address)


def test_the_lock_is_the_shells_and_no_command_holds_it(sshd: Sshd, name: str) -> None:
    first, second = transport(sshd, name), transport(sshd, name)
    try:
        first.connect()
        lock = lock_of(first, name)
        assert lock.acquire(Holder.me("R1", "apply"), 0, lambda m: None) == ""
        held = next(LOCKS.glob(f"run.{name}@*[0-9]"))
        assert (held.stat().st_mode & 0o777, Path(f"{held}.holder").stat().st_mode & 0o777) == (0o600, 0o600)
        # a command sees no descriptor of the lock: nothing it leaves running can keep the host locked
        fds = first.run(["sh", "-c", 'for d in /proc/$$/fd/*; do readlink "$d" || :; done']).check().out
        assert str(held) not in fds, fds
        second.connect()
        with pytest.raises(Locked, match="locked by run R1 .*, on the host"):
            lock_of(second, name).acquire(Holder.me("R2", "apply"), 0, lambda m: None)
        lock.release()
        assert Path(f"{held}.holder").read_text() == ""
        assert lock_of(second, name).acquire(Holder.me("R2", "apply"), 0, lambda m: None) == "", "released, not stale"
    finally:
        first.close()
        second.close()


def test_a_shell_killed_with_a_timed_out_command_takes_the_lock_again_or_refuses(sshd: Sshd, name: str) -> None:
    first, second = transport(sshd, name), transport(sshd, name)
    try:
        first.connect()
        lock_of(first, name).acquire(Holder.me("R1", "apply"), 0, lambda m: None)
        with pytest.raises(CommandFailed, match="timed out"):
            first.run(["sleep", "30"], timeout=0.5)
        assert first.run(["true"]).ok, "the next command runs in a new shell that took the lock again"
        second.connect()
        with pytest.raises(Locked, match="locked by run R1"):
            lock_of(second, name).acquire(Holder.me("R2", "apply"), 0, lambda m: None)
        with pytest.raises(CommandFailed, match="timed out"):
            first.run(["sleep", "30"], timeout=0.5)
        # between the kill and first's next command another controller takes the host: first must not go on
        lock_of(second, name).acquire(Holder.me("R2", "apply"), 0, lambda m: None)
        with pytest.raises(StepError, match="the run lock on the host went with its shell .*HELD.*R2.*not run"):
            first.run(["true"])
    finally:
        first.close()
        second.close()


def test_become_of_the_login_user_keeps_the_lock_in_the_shell_its_commands_run_in(sshd: Sshd, name: str) -> None:
    host = Host(name, sshd.addresses[0], sshd.port, "root", str(sshd.identity), str(sshd.known_hosts))
    t = SSHTransport(host, SSHOptions(), become=Become("root"))
    try:
        t.connect()
        lock_of(t, name).acquire(Holder.me("R1", "apply"), 0, lambda m: None)
        assert set(t._shells) == {None}, "no sudo shell of its own for the lock"
        fds = t.run(["sh", "-c", 'for d in /proc/$$/fd/*; do readlink "$d" || :; done']).check().out
        assert f"run.{name}@" not in fds
    finally:
        t.close()
