"""SSH through one Fabric connection and one remote shell per host; host keys verified against known_hosts."""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CommandFailed, Unreachable
from .base import CommandResult, shell_command

if TYPE_CHECKING:
    import paramiko

    from ..inventory import Host

_known_hosts_lock = threading.Lock()
_parsed_lock = threading.Lock()
_parsed: dict[str, tuple[tuple[int, int, int], paramiko.HostKeys]] = {}


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


class SSHTransport:
    """One lazily opened SSH connection; commands run one after another in one remote `sh` on it."""

    def __init__(self, host: Host, options: SSHOptions) -> None:
        self.name = host.name
        self.host = host
        self.options = options
        self.notices: list[str] = []
        self._conn: Any = None
        self._transport: paramiko.Transport | None = None
        self.host_key_fingerprint: str | None = None
        # the host's one remote shell and what it printed past the last command's end marker
        self._shell: paramiko.Channel | None = None
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Lock()

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
        client.set_missing_host_key_policy(_policy(known, self.options.accept_new_host_keys, self.notices))
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
        self._conn = conn
        self._transport = transport
        return transport

    def connect(self) -> None:
        """Open the connection now (to report an unreachable host before any step)."""
        self._open()

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
        command = shell_command(argv, env, cwd)
        limit = timeout if timeout is not None else self.options.command_timeout
        with self._lock:
            if stdin:
                return self._exec(argv, command, stdin, limit)
            return self._in_shell(argv, command, limit)

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
            out, err = _drain(chan, time.monotonic() + limit)
            if out is None:
                raise CommandFailed(tuple(argv), 124, "", f"timed out after {limit:g} s")
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        return CommandResult(tuple(argv), rc, out, err)

    def _in_shell(self, argv: Sequence[str], command: str, limit: float) -> CommandResult:
        # sshd runs every exec request through the login shell and its startup files (often ~0.1 s of
        # CPU each: pyenv, conda, rvm init); one `sh` per host reading commands pays that once, not per command
        deadline = time.monotonic() + limit
        if self._shell is not None and (self._shell.closed or self._shell.eof_received or not self._shell.active):
            self._drop_shell()
        ready = ""
        if self._shell is None:
            chan = self._channel()
            chan.exec_command("sh")
            self._shell, self._out, self._err = chan, bytearray(), bytearray()
            ready = secrets.token_hex(16)
        shell = self._shell
        token = secrets.token_hex(16)
        script = ""
        if ready:
            # whatever the startup files print comes before this marker and is dropped
            script += f"printf '%s 0\\n' {ready}o; printf '%s\\n' {ready}e >&2\n"
        # a subshell, so cd/exports stay with the command; stdin is never the shell's own input
        script += f"( {command}\n) </dev/null; printf '%s %d\\n' {token}o $?; printf '%s\\n' {token}e >&2\n"
        try:
            shell.sendall(script.encode())
            if ready:
                self._until(shell, ready, deadline)
            out, err, rc = self._until(shell, token, deadline)
        except _ShellTimeout:
            self._drop_shell()
            raise CommandFailed(tuple(argv), 124, "", f"timed out after {limit:g} s") from None
        except _ShellGone as gone:
            # the command ended the shell itself (or sshd did): report what it left, start a new shell next time
            self._drop_shell()
            return CommandResult(tuple(argv), gone.rc, gone.out, gone.err)
        return CommandResult(tuple(argv), rc, out, err)

    def _until(self, chan: paramiko.Channel, token: str, deadline: float) -> tuple[bytes, bytes, int]:
        """Read until the shell printed token's markers on stdout and stderr; what came before is the output."""
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
                result = bytes(out[:i]), bytes(err[:j]), int(out[i + len(out_mark):end])
                del out[:end + 1]
                del err[:j + len(err_mark)]
                return result
            if eof:
                chan.status_event.wait(5)
                rc = chan.exit_status if chan.exit_status_ready() else 255
                raise _ShellGone(rc, bytes(out), bytes(err))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ShellTimeout()
            select.select([chan], [], [], min(remaining, 5.0))

    def _drop_shell(self) -> None:
        if self._shell is not None:
            self._shell.close()
        self._shell = None

    def close(self) -> None:
        """Close the shell and the connection."""
        self._drop_shell()
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._transport = None


class _ShellTimeout(Exception):
    """The command did not finish before its deadline."""


class _ShellGone(Exception):
    """The remote shell exited before the command's end marker."""

    def __init__(self, rc: int, out: bytes, err: bytes) -> None:
        super().__init__(rc)
        self.rc, self.out, self.err = rc, out, err


def _drain(chan: paramiko.Channel, deadline: float) -> tuple[bytes | None, bytes]:
    """Read stdout and stderr until EOF; (None, ...) when the deadline passes first."""
    out: list[bytes] = []
    err: list[bytes] = []
    while True:
        # EOF is fed after all data on the wire, so once it is seen the buffers hold everything
        eof = chan.eof_received or chan.closed
        while chan.recv_ready():
            out.append(chan.recv(65536))
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))
        if eof:
            return b"".join(out), b"".join(err)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, b"".join(err)
        select.select([chan], [], [], min(remaining, 5.0))
