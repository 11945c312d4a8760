"""become in the SSH transport, against a real sshd and a real sudo: one shell per user on the host's one
connection, outputs and stdin exact through sudo and a noisy login shell, a timed-out root command's whole
process group killed, sudo's refusals in words, and a channel of its own (docker's dial-stdio) through sudo."""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.core.errors import CommandFailed
from remediate.inputs.inventory import Host
from remediate.transport.base import Become
from remediate.transport.ssh import BecomeFailed, SSHOptions, SSHTransport
from tests import sshlab

pytestmark = pytest.mark.ssh

NOISY = 'echo "motd: welcome"; echo "warning: stale" >&2; printf "no newline"\n'


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[sshlab.Server, Path]]:
    base = sshlab.base_dir()
    server = sshlab.start_sshd(base / "sshd", ["127.0.0.64"])
    (base / "known_hosts").write_text("\n".join(server.known_hosts_lines()) + "\n")
    yield server, base
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def deploy(lab: tuple[sshlab.Server, Path]) -> Iterator[tuple[sshlab.User, Path]]:
    server, base = lab
    user = sshlab.add_user(base, sudo="ALL=(ALL:ALL) NOPASSWD: ALL", bashrc=NOISY)
    key = sshlab.keygen(base / "keys" / user.name)
    server.authorize(user.name, key)
    yield user, key
    sshlab.remove_user(user)


@pytest.fixture(scope="module")
def asking(lab: tuple[sshlab.Server, Path]) -> Iterator[tuple[sshlab.User, Path, str]]:
    server, base = lab
    password = "pa ss'word"
    user = sshlab.add_user(base, password=password, sudo="ALL=(ALL:ALL) ALL", bashrc=NOISY)
    key = sshlab.keygen(base / "keys" / user.name)
    server.authorize(user.name, key)
    yield user, key, password
    sshlab.remove_user(user)


def transport(lab: tuple[sshlab.Server, Path], user: sshlab.User, key: Path, **options: object) -> SSHTransport:
    server, base = lab
    host = Host("web-1", server.address, server.port, user.name, str(key), str(base / "known_hosts"))
    return SSHTransport(host, SSHOptions(**options))  # type: ignore[arg-type]


@pytest.fixture
def t(lab: tuple[sshlab.Server, Path], deploy: tuple[sshlab.User, Path]) -> Iterator[SSHTransport]:
    conn = transport(lab, *deploy)
    yield conn
    conn.close()


def test_one_shell_per_user_on_one_connection(t: SSHTransport, deploy: tuple[sshlab.User, Path]) -> None:
    root = t.as_user(Become())
    assert root.run(["id", "-un"]).out == "root\n" and t.run(["id", "-un"]).out == f"{deploy[0].name}\n"
    shells = {root.run(["sh", "-c", "echo $PPID"]).out for _ in range(3)}
    assert len(shells) == 1  # every root command in one sudo'd shell
    assert t.run(["sh", "-c", "echo $PPID"]).out not in shells
    assert root.run(["sh", "-c", 'echo "$HOME"']).out == "/root\n"  # sudo -H: the backup root resolves as root's


def test_outputs_and_stdin_exact_through_sudo_and_a_noisy_login_shell(t: SSHTransport) -> None:
    root = t.as_user(Become())
    result = root.run(["sh", "-c", "printf 'no newline\\000\\377'; printf oops >&2; exit 3"])
    assert (result.rc, result.stdout, result.stderr) == (3, b"no newline\x00\xff", b"oops")
    data = bytes(range(256)) * 40 + b"\nEND-0123\n)\nEOF\n'\"$HOME`x`\x00"
    assert root.run(["sh", "-c", "cat; id -u >&2"], stdin=data).stdout == data
    big = os.urandom(3 << 20)  # above the inline limit: a channel of its own, through sudo, after the noise
    result = root.run(["sh", "-c", "sha256sum; id -u >&2"], stdin=big)
    assert (result.out.split()[0], result.err) == (hashlib.sha256(big).hexdigest(), "0\n")
    assert t.run(["cat"], stdin=big).stdout == big  # the login user's channel drops the noise too


def test_a_timed_out_root_command_is_killed_with_its_process_group(t: SSHTransport, tmp_path: Path) -> None:
    root = t.as_user(Become())
    pidfile = tmp_path / "child"
    with pytest.raises(CommandFailed) as exc:
        root.run(["sh", "-c", 'sleep 300 & echo $! > "$0"; wait', str(pidfile)], timeout=1)
    assert exc.value.rc == 124 and "killed" in exc.value.stderr
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists(), "root's sleep outlived the kill"
    assert root.run(["id", "-u"]).out == "0\n"  # a new root shell for what comes next


def test_a_channel_of_its_own_through_sudo(t: SSHTransport) -> None:
    # docker's dial-stdio channel goes through here: the command's first output is never eaten by the start
    chan = t.as_user(Become()).open_channel(["sh", "-c", "id -u; cat"])  # type: ignore[attr-defined]
    try:
        chan.sendall(b"echoed\x00back")
        chan.shutdown_write()
        out = b""
        while not chan.exit_status_ready() or chan.recv_ready():
            out += chan.recv(65536)
            if not out and chan.exit_status_ready():
                break
    finally:
        chan.close()
    assert out == b"0\necho\x00back".replace(b"echo\x00", b"echoed\x00")


NO_PROJECT = {"com.docker.compose.project": "rmdt-no-such-project"}


def test_the_engine_api_of_a_become_view_is_dialled_through_sudo(
        t: SSHTransport, lab: tuple[sshlab.Server, Path], deploy: tuple[sshlab.User, Path],
        asking: tuple[sshlab.User, Path, str]) -> None:
    from remediate.transport.docker import DockerUnavailable

    # the deploy user is not in group docker: as itself the daemon refuses it, in words naming it
    with pytest.raises(DockerUnavailable, match=f"the SSH user {deploy[0].name} may not use the Docker socket"):
        t.docker().containers(NO_PROJECT)
    assert t.as_user(Become()).docker().containers(NO_PROJECT) == []  # sudo -n docker system dial-stdio
    user, key, password = asking
    conn = transport(lab, user, key, become_password=password)
    try:  # sudo -S: the password line goes before the first request, never into the API stream
        assert conn.as_user(Become()).docker().containers(NO_PROJECT) == []
    finally:
        conn.close()


def test_sudo_without_a_password_when_it_needs_one_is_refused_in_words(
        lab: tuple[sshlab.Server, Path], asking: tuple[sshlab.User, Path, str]) -> None:
    conn = transport(lab, asking[0], asking[1])
    try:
        with pytest.raises(BecomeFailed, match="asks for a password to become root as .*--ask-become-pass"):
            conn.as_user(Become()).run(["id", "-u"])
        assert conn.run(["id", "-u"]).out == f"{asking[0].uid}\n"  # the login user's shell is unharmed
    finally:
        conn.close()


def test_sudo_with_its_password_and_with_a_wrong_one(lab: tuple[sshlab.Server, Path],
                                                     asking: tuple[sshlab.User, Path, str]) -> None:
    user, key, password = asking
    conn = transport(lab, user, key, become_password=password)
    try:
        root = conn.as_user(Become())
        assert root.run(["id", "-u"]).out == "0\n"
        assert root.run(["cat"], stdin=b"after the password\n").stdout == b"after the password\n"
        big = os.urandom(2 << 20)  # the channel path asks sudo again, and answers it again
        assert root.run(["sha256sum"], stdin=big).out.split()[0] == hashlib.sha256(big).hexdigest()
    finally:
        conn.close()
    wrong = transport(lab, user, key, become_password="not it")
    try:
        with pytest.raises(BecomeFailed, match="refused the become password"):
            wrong.as_user(Become()).run(["id", "-u"])
    finally:
        wrong.close()
