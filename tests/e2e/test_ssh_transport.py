"""The SSH transport against a real sshd: commands share one remote shell per host and keep exact outputs."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.core.errors import CommandFailed
from remediate.inputs.inventory import Host
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


def _ppid(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _session_shells(sshd: Sshd) -> set[int]:
    """Local pids of `sh` processes whose parent is an sshd session of this suite's sshd (not another test
    worker's, nor anyone else's on this machine)."""
    listeners = {int(p.read_text()) for p in sshd.dir.glob("sshd.*.pid")}
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "sh":
                ppid = _ppid(entry.name)
                if Path(f"/proc/{ppid}/comm").read_text().strip() != "sshd":
                    continue
                ancestor = ppid
                while ancestor > 1 and ancestor not in listeners:
                    ancestor = _ppid(ancestor)
                if ancestor in listeners:
                    found.add(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_connect_starts_the_hosts_shell_and_the_first_command_runs_in_it(transport: SSHTransport, sshd: Sshd) -> None:
    before = _session_shells(sshd)
    transport.connect()  # sends the shell's start and returns: the first command waits for it
    deadline = time.monotonic() + 10
    while not (new := _session_shells(sshd) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(new) == 1
    assert transport.run(["sh", "-c", "echo $PPID"]).out.strip() == str(new.pop())


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


def _pgid(transport: SSHTransport, stdin: bytes | None = None) -> str:
    # every command of the host's one shell runs in that shell's process group
    return transport.run(["sh", "-c", 'cat >/dev/null; cut -d" " -f5 /proc/$$/stat'], stdin=stdin).out.strip()


def test_stdin_goes_through_the_hosts_one_shell_byte_for_byte(transport: SSHTransport) -> None:
    without = _pgid(transport)
    # every byte value, no final newline, and a line that looks like the here-document's end
    data = bytes(range(256)) * 40 + b"\nEND-0123\n)\nEOF\n'\"$HOME`x`" + b"\x00"
    result = transport.run(["sh", "-c", "cat; cat >&2"], stdin=data)
    assert (result.rc, result.stdout, result.stderr) == (0, data, b"")
    assert _pgid(transport, stdin=b"x") == without  # no session of its own
    assert transport.run(["sh", "-c", "wc -c; exit 5"], stdin=b"12345").out.strip() == "5"
    assert transport.run(["sh", "-c", "exit 5"], stdin=b"unread").rc == 5


def test_large_stdin_gets_a_channel_of_its_own(transport: SSHTransport) -> None:
    shell = _pgid(transport)
    data = bytes(range(256)) * (5 * 4096)  # 5 MiB, above what goes through the shell
    assert transport.run(["sha256sum"], stdin=data).out.split()[0] == hashlib.sha256(data).hexdigest()
    assert _pgid(transport, stdin=data) != shell


def test_a_host_without_base64_gets_stdin_on_a_channel(transport: SSHTransport) -> None:
    shell = _pgid(transport)
    transport._shells[None].has_base64 = False  # what the shell's start marker reports when `command -v base64` fails
    assert transport.run(["cat"], stdin=b"still exact\x00").stdout == b"still exact\x00"
    assert _pgid(transport, stdin=b"x") != shell
