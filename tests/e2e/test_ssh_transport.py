"""The SSH transport against a real sshd: commands share one remote shell per host and keep exact outputs."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.errors import CommandFailed
from remediate.inventory import Host
from remediate.transport.ssh import SSHOptions, SSHTransport
from tests.conftest import Sshd

pytestmark = pytest.mark.ssh


@pytest.fixture
def transport(sshd: Sshd) -> Iterator[SSHTransport]:
    host = Host("web-1", sshd.addresses[0], sshd.port, "root", str(sshd.identity), str(sshd.known_hosts))
    t = SSHTransport(host, SSHOptions())
    yield t
    t.close()


def test_output_exit_code_and_stderr_are_exactly_the_commands(transport: SSHTransport) -> None:
    result = transport.run(["sh", "-c", "printf 'no newline\\000\\377'; printf oops >&2; exit 3"])
    assert (result.rc, result.stdout, result.stderr) == (3, b"no newline\x00\xff", b"oops")
    assert transport.run(["true"]).stdout == b""


def test_commands_share_one_shell_but_not_its_state(transport: SSHTransport, tmp_path: Path) -> None:
    first = transport.run(["sh", "-c", "echo $PPID"], cwd=str(tmp_path), env={"MARK": "set"})
    second = transport.run(["sh", "-c", 'echo $PPID; pwd; echo "${MARK-unset}"'])
    shell_pid = first.out.strip()
    assert second.out.split("\n")[0] == shell_pid  # the same remote shell ran both
    assert second.out.split("\n")[1:3] != [str(tmp_path), "set"]  # cd and env stayed with the first command


def test_a_command_reading_stdin_gets_end_of_file_not_the_next_command(transport: SSHTransport) -> None:
    assert transport.run(["cat"]).stdout == b""
    assert transport.run(["cat"], stdin=b"given\n").stdout == b"given\n"
    assert transport.run(["echo", "after"]).out == "after\n"


def test_a_command_that_ends_the_shell_is_reported_and_the_next_command_gets_a_new_shell(transport: SSHTransport) -> None:
    before = transport.run(["sh", "-c", "echo $PPID"]).out
    gone = transport.run(["sh", "-c", "echo partial; kill -9 $PPID"])
    assert gone.rc != 0 and gone.stdout.startswith(b"partial")
    after = transport.run(["sh", "-c", "echo $PPID"])
    assert after.ok and after.out != before


def test_timeout_stops_waiting_and_the_next_command_still_runs(transport: SSHTransport) -> None:
    with pytest.raises(CommandFailed) as exc:
        transport.run(["sleep", "30"], timeout=0.5)
    assert exc.value.rc == 124
    assert transport.run(["echo", "ok"]).out == "ok\n"
