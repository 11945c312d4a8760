"""SSH through one Fabric connection and one remote shell per host; host keys verified against known_hosts."""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import CommandFailed, Interrupted, Unreachable
from .base import CommandResult, Identity, shell_command

if TYPE_CHECKING:
    import paramiko

    from ..inputs.inventory import Host
    from .docker import DockerAPI

_known_hosts_lock = threading.Lock()
_parsed_lock = threading.Lock()
_parsed: dict[str, tuple[tuple[int, int, int], paramiko.HostKeys]] = {}
# sshd runs each session command in a new session (setsid), so the shell's pid is the process group to kill
# on interrupt; the shell reports it first on stderr, and the line is removed from the output.
_PID_PREFIX = "printf '\\036remediate-pid:%s\\n' \"$$\" >&2; "
_PID_LINE = re.compile(rb"\x1eremediate-pid:(\d+)\n")
# How often a running command looks for an interrupt; it only bounds how late a kill starts.
_POLL = 0.2
# stdin up to this size goes to the host's one shell as a base64 here-document; larger stdin gets a channel
_INLINE_STDIN = 1 << 20


@dataclass(frozen=True)
class SSHOptions:
    """Connection settings shared by every host of a run."""

    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    accept_new_host_keys: bool = False


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _policy(known_hosts: str, accept_new: bool, notices: list[str]) -> Any:
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        """Refuse unknown host keys, or with --accept-new-host-keys record them and say so."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            fp = fingerprint(key)
            if not accept_new:
                raise paramiko.SSHException(
                    f"host key for {hostname} is not in {known_hosts} ({key.get_name()} {fp}); "
                    "refusing to connect (verify it and add it, or pass --accept-new-host-keys)"
                )
            client.get_host_keys().add(hostname, key.get_name(), key)
            with _known_hosts_lock:
                os.makedirs(os.path.dirname(os.path.abspath(known_hosts)), exist_ok=True)
                with open(known_hosts, "a", encoding="ascii") as fh:
                    fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            notices.append(f"added new host key for {hostname} ({key.get_name()} {fp}) to {known_hosts}")

    return Policy()


def known_host_keys(path: str) -> paramiko.HostKeys:
    """known_hosts parsed once per version of the file, shared read-only by every host's connection."""
    import paramiko

    # paramiko's HostKeys.load is quadratic in the number of lines; parsing the file again for each
    # of N hosts made start-up O(N^3) in practice (50 hosts: ~1 s of CPU before the first byte was sent)
    with _parsed_lock:
        st = os.stat(path)
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = _parsed.get(path)
        if cached is None or cached[0] != version:
            cached = _parsed[path] = (version, paramiko.HostKeys(path))
        return cached[1]


class SSHTransport:
    """One lazily opened SSH connection; commands without stdin run one after another in one remote `sh`."""

    def __init__(self, host: Host, options: SSHOptions) -> None:
        self.name = host.name
        self.host = host
        self.options = options
        self._notices: list[str] = []
        self._conn: Any = None
        self._transport: paramiko.Transport | None = None
        self.host_key_fingerprint: str | None = None
        self.client_key_fingerprint: str | None = None
        self._interrupted = threading.Event()
        # the host's one remote shell, its pid (= its process group: sshd starts each session with setsid),
        # and what it printed past the last command's end marker
        self._shell: paramiko.Channel | None = None
        self._shell_pid: int | None = None
        self._shell_base64 = False  # whether the host's shell finds base64 (to decode stdin sent inline)
        self._shell_ready = ""  # the start marker of a shell whose start has not been awaited yet
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Lock()
        self._docker: DockerAPI | None = None

    def _open(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        self._shell = None  # it belonged to the connection that is gone
        import paramiko
        from fabric import Config, Connection

        host = self.host
        where = f"{host.address}:{host.port}"
        # lazy: no /etc/fabric.yml, ~/.fabric.yml or ssh_config files, which the inventory alone decides
        config = Config(lazy=True, overrides={"load_ssh_configs": False})
        connect_kwargs: dict[str, Any] = {"allow_agent": False, "look_for_keys": False}
        if host.identity_file:
            connect_kwargs["key_filename"] = [host.identity_file]
        conn = Connection(
            host.address,
            user=host.user or getpass.getuser(),
            port=host.port,
            config=config,
            connect_timeout=self.options.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        client: paramiko.SSHClient = conn.client
        known = host.known_hosts
        if known and os.path.exists(known):
            # the name paramiko looks the server's key up by
            name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
            try:
                keys = known_host_keys(known).lookup(name)
            except (OSError, paramiko.SSHException) as exc:
                raise Unreachable(f"{where}: cannot read known_hosts {known}: {exc}") from None
            for keytype, key in (keys or {}).items():
                client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(_policy(known, self.options.accept_new_host_keys, self._notices))
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            raise Unreachable(
                f"{where}: host key CHANGED: server offered {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"{known} expects {fingerprint(exc.expected_key)}; refusing to connect"
            ) from None
        except paramiko.AuthenticationException as exc:
            raise Unreachable(f"{where}: authentication failed as {conn.user}: {exc}") from None
        except paramiko.SSHException as exc:
            raise Unreachable(f"{where}: {exc}") from None
        except (socket.timeout, TimeoutError):
            raise Unreachable(f"{where}: connection timed out after {self.options.connect_timeout:g} s") from None
        except OSError as exc:
            raise Unreachable(f"{where}: cannot connect: {exc.strerror or exc}") from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(30)
        self.host_key_fingerprint = fingerprint(transport.get_remote_server_key())
        self.client_key_fingerprint = _client_fingerprint(host.identity_file)
        self._conn = conn
        self._transport = transport
        return transport

    def interrupt(self) -> None:
        """Kill the running remote command (its whole process group) and refuse new ones."""
        self._interrupted.set()
        if self._docker is not None:
            self._docker.interrupt()

    def identity(self) -> Identity:
        """The SSH user and address, the server's host key and the client key, by their SHA256 fingerprints."""
        return Identity("ssh", self.host.user or getpass.getuser(), f"{self.host.address}:{self.host.port}",
                        self.host_key_fingerprint, self.client_key_fingerprint, self.host.identity_file)

    def notices(self) -> tuple[str, ...]:
        """Host keys added with --accept-new-host-keys."""
        return tuple(self._notices)

    def connect(self) -> None:
        """Open the connection and start the host's shell now (to report an unreachable host before any step).

        The shell's start (the login shell's startup files) is not awaited: it overlaps whatever the
        controller does before the first command.
        """
        with self._lock:
            self._open()
            if self._shell is None:
                self._start_shell()

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv on the host: in the host's one remote shell, or on a channel of its own when it has stdin."""
        limit = timeout if timeout is not None else self.options.command_timeout
        if self._interrupted.is_set():
            raise Interrupted(f"interrupted: {' '.join(argv)[:200]} was not started")
        with self._lock:
            command = shell_command(argv, env, cwd)
            if stdin and len(stdin) > _INLINE_STDIN:
                return self._exec(argv, _PID_PREFIX + command, stdin, limit)
            return self._in_shell(argv, command, limit, stdin)

    def _channel(self) -> paramiko.Channel:
        import paramiko

        transport = self._open()
        try:
            return transport.open_session(timeout=self.options.connect_timeout)
        except paramiko.SSHException as exc:
            raise Unreachable(f"{self.host.address}:{self.host.port}: cannot open a channel: {exc}") from None

    def _exec(self, argv: Sequence[str], command: str, stdin: bytes, limit: float) -> CommandResult:
        chan = self._channel()
        try:
            chan.exec_command(command)
            chan.sendall(stdin)
            chan.shutdown_write()
            out, err, pid = _drain(chan, time.monotonic() + limit, self._interrupted)
            if out is None:
                self._abandon(argv, pid, limit)
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        assert out is not None
        return CommandResult(tuple(argv), rc, out, err)

    def _abandon(self, argv: Sequence[str], pid: int | None, limit: float) -> None:
        """Kill a command that timed out or was interrupted, and raise accordingly."""
        assert self._transport is not None
        killed = self._kill(self._transport, pid)
        if self._interrupted.is_set():
            raise Interrupted(f"interrupted: {' '.join(argv)[:200]} {killed}")
        raise CommandFailed(tuple(argv), 124, "", f"timed out after {limit:g} s; {killed}")

    def _in_shell(self, argv: Sequence[str], command: str, limit: float, stdin: bytes | None = None) -> CommandResult:
        # sshd runs every exec request through the login shell and its startup files (often ~0.1 s of
        # CPU each: pyenv, conda, rvm init); one `sh` per host reading commands pays that once, not per command
        deadline = time.monotonic() + limit
        if self._shell is not None and (self._shell.closed or self._shell.eof_received or not self._shell.active):
            self._drop_shell()
        token = secrets.token_hex(16)
        try:
            if self._shell is None:
                self._start_shell()
            ready, self._shell_ready = self._shell_ready, ""
            shell = self._shell
            assert shell is not None
            if stdin and ready:
                # inline stdin needs base64 on the host: learn that before the first such command
                self._shell_pid, self._shell_base64 = self._ready(shell, ready, deadline)
                ready = ""
            if stdin:
                if not self._shell_base64:
                    return self._exec(argv, _PID_PREFIX + command, stdin, limit)
                # a here-document runs only once the shell has read all of it (a stream cut short leaves the
                # subshell's ")" unread: a syntax error, nothing runs); "-" is not in base64's alphabet
                end = f"END-{token}"
                command = f"base64 -d <<'{end}' | {command}\n{base64.encodebytes(stdin).decode()}{end}"
            # a subshell, so cd/exports stay with the command; stdin is never the shell's own input
            shell.sendall(
                f"( {command}\n) </dev/null; printf '%s %d\\n' {token}o $?; printf '%s\\n' {token}e >&2\n".encode()
            )
            if ready:
                self._shell_pid, self._shell_base64 = self._ready(shell, ready, deadline)
            out, err, status = self._until(shell, token, deadline)
        except _ShellTimeout:
            try:
                self._abandon(argv, self._shell_pid, limit)  # kills the shell's process group, then raises
            finally:
                self._drop_shell()
        except _ShellGone as gone:
            # the command ended the shell itself (or sshd did): report what it left, start a new shell next time
            self._drop_shell()
            return CommandResult(tuple(argv), gone.rc, gone.out, gone.err)
        return CommandResult(tuple(argv), int(status), out, err)

    def _start_shell(self) -> None:
        """Open the host's one remote shell and send its start marker (awaited with the first command)."""
        chan = self._channel()
        chan.exec_command("sh")
        self._shell, self._shell_pid, self._out, self._err = chan, None, bytearray(), bytearray()
        ready = secrets.token_hex(16)
        # whatever the startup files print comes before this marker and is dropped; $$ is the kill target
        chan.sendall(
            f"command -v base64 >/dev/null 2>&1 && remediate_b64=1 || remediate_b64=0; "
            f"printf '%s %d %d\\n' {ready}o $$ $remediate_b64; printf '%s\\n' {ready}e >&2\n".encode()
        )
        self._shell_ready = ready

    def _ready(self, chan: paramiko.Channel, token: str, deadline: float) -> tuple[int, bool]:
        """The new shell's pid and whether it has base64 (startup files' output before the marker is dropped)."""
        pid, has_base64 = self._until(chan, token, deadline)[2].split()
        return int(pid), has_base64 == "1"

    def _until(self, chan: paramiko.Channel, token: str, deadline: float) -> tuple[bytes, bytes, str]:
        """Read until the shell printed token's markers on stdout and stderr; what came before is the output,
        and the rest of the stdout marker's line the status."""
        out_mark, err_mark = f"{token}o ".encode(), f"{token}e\n".encode()
        out, err = self._out, self._err
        while True:
            eof = chan.eof_received or chan.closed
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            i, j = out.find(out_mark), err.find(err_mark)
            end = out.find(b"\n", i) if i >= 0 else -1
            if end >= 0 and j >= 0:
                result = bytes(out[:i]), bytes(err[:j]), out[i + len(out_mark):end].decode()
                del out[:end + 1]
                del err[:j + len(err_mark)]
                return result
            if eof:
                chan.status_event.wait(5)
                rc = chan.exit_status if chan.exit_status_ready() else 255
                raise _ShellGone(rc, bytes(out), bytes(err))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._interrupted.is_set():
                raise _ShellTimeout()
            select.select([chan], [], [], min(remaining, _POLL))

    def _drop_shell(self) -> None:
        if self._shell is not None:
            self._shell.close()
        self._shell = None
        self._shell_pid = None
        self._shell_base64 = False
        self._shell_ready = ""

    def _kill(self, transport: paramiko.Transport, pid: int | None) -> str:
        """TERM, then KILL after a bounded wait, the process group of an abandoned command."""
        if pid is None:
            return "(its process id was never seen; it may still run)"
        script = (
            # no "--": dash's kill builtin does not take it; a negative pid names the process group
            'kill -TERM "-$0" 2>/dev/null || exit 0; i=0; '
            'while kill -0 "-$0" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; '
            'kill -KILL "-$0" 2>/dev/null; exit 0'
        )
        try:
            chan = transport.open_session(timeout=self.options.connect_timeout)
            try:
                chan.exec_command(shell_command(["sh", "-c", script, str(pid)]))
                chan.shutdown_write()
                chan.recv_exit_status()
            finally:
                chan.close()
        except Exception as exc:  # noqa: BLE001 - the kill is best effort; say it failed rather than hide the interrupt
            return f"(killing remote process group {pid} failed: {exc})"
        return f"(remote process group {pid} killed)"

    def open_channel(self, argv: Sequence[str], timeout: float = 60.0) -> paramiko.Channel:
        """A channel of its own on the host's connection, running argv with the channel as its stdin and stdout
        (for a command that speaks only when spoken to, as `docker system dial-stdio`). What the login shell's
        startup files print comes before a start marker on both streams and is dropped."""
        with self._lock:
            chan = self._channel()
        token = secrets.token_hex(16)
        chan.exec_command(f"printf '%s\\n' {token}o; printf '%s\\n' {token}e >&2; exec {shell_command(argv)}")
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        out_mark, err_mark = f"{token}o\n".encode(), f"{token}e\n".encode()
        # Read no byte past a marker: what follows it (dial-stdio's own error, say) stays in the channel.
        while not out.endswith(out_mark) or not err.endswith(err_mark):
            if not out.endswith(out_mark) and chan.recv_ready():
                out += chan.recv(unread_to(out, out_mark))
            elif not err.endswith(err_mark) and chan.recv_stderr_ready():
                err += chan.recv_stderr(unread_to(err, err_mark))
            elif chan.exit_status_ready() or chan.closed:
                chan.close()
                raise Unreachable(f"{self.host.address}:{self.host.port}: the login shell ended before "
                                  f"`{shlex.join(argv)}` started: {bytes(err).decode(errors='replace').strip()[-300:]}")
            elif time.monotonic() > deadline:
                chan.close()
                raise Unreachable(f"{self.host.address}:{self.host.port}: the login shell did not start "
                                  f"`{shlex.join(argv)}` within {timeout:g} s")
            else:
                select.select([chan], [], [], _POLL)
        return chan

    def docker(self) -> DockerAPI:
        """The host's Docker Engine API over a channel of this connection (`docker system dial-stdio`).

        Become (sudo) hook: the engine dials through `open_channel`, so a become view of this connection whose
        `open_channel` runs argv through sudo gets the daemon as the become user by keeping an engine of its own,
        `DockerAPI(self.name, lambda: view.open_channel(DIAL_STDIO), user=<become user>)`, closed with the view;
        `sudo -n docker system dial-stdio` and `sudo -S` with the password line before the first request both
        work (tried against this machine's daemon)."""
        if self._docker is None:
            from .docker import DIAL_STDIO, DockerAPI

            self._docker = DockerAPI(self.name, lambda: self.open_channel(DIAL_STDIO),
                                     user=self.host.user or getpass.getuser())
        return self._docker

    def close(self) -> None:
        """Close the Engine API's channels, the shell and the connection."""
        if self._docker is not None:
            self._docker.close()
            self._docker = None
        self._drop_shell()
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._transport = None


def unread_to(seen: bytes | bytearray, mark: bytes) -> int:
    """How many bytes may be read after `seen` without reading past the first `mark` to come: mark's length
    less the longest end of `seen` that begins it (the mark cannot end sooner than that)."""
    for k in range(min(len(mark) - 1, len(seen)), 0, -1):
        if seen.endswith(mark[:k]):
            return len(mark) - k
    return len(mark)


class _ShellTimeout(Exception):
    """The command did not finish before its deadline, or the run was interrupted."""


class _ShellGone(Exception):
    """The remote shell exited before the command's end marker."""

    def __init__(self, rc: int, out: bytes, err: bytes) -> None:
        super().__init__(rc)
        self.rc, self.out, self.err = rc, out, err


def _client_fingerprint(identity_file: str | None) -> str | None:
    """SHA256 fingerprint of the client key used (from its .pub, else the private key file)."""
    if not identity_file:
        return None
    import paramiko

    try:
        pub = identity_file + ".pub"
        if os.path.exists(pub):
            kind, data = open(pub, encoding="ascii").read().split()[:2]
            digest = hashlib.sha256(base64.b64decode(data)).digest()
            return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        return fingerprint(paramiko.PKey.from_path(identity_file))
    except (OSError, ValueError, paramiko.SSHException):
        return None


def _drain(
    chan: paramiko.Channel, deadline: float, interrupted: threading.Event
) -> tuple[bytes | None, bytes, int | None]:
    """Read stdout and stderr until EOF; (None, ...) when the deadline passes or an interrupt comes first."""
    out: list[bytes] = []
    err = b""
    pid: int | None = None
    while True:
        # EOF is fed after all data on the wire, so once it is seen the buffers hold everything
        eof = chan.eof_received or chan.closed
        while chan.recv_ready():
            out.append(chan.recv(65536))
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if pid is None:
            found = _PID_LINE.search(err)
            if found:
                pid = int(found.group(1))
                err = err[: found.start()] + err[found.end():]
        if eof:
            return b"".join(out), err, pid
        remaining = deadline - time.monotonic()
        if remaining <= 0 or interrupted.is_set():
            return None, err, pid
        select.select([chan], [], [], min(remaining, _POLL))
