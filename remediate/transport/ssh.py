"""SSH through one Fabric connection per host; host keys verified against known_hosts by default."""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CommandFailed, Interrupted, Unreachable
from .base import CommandResult, shell_command

if TYPE_CHECKING:
    import paramiko

    from ..inventory import Host

_known_hosts_lock = threading.Lock()
# sshd runs each session command in a new session (setsid), so the shell's pid is the process group to kill
# on interrupt; the shell reports it first on stderr, and the line is removed from the output.
_PID_PREFIX = "printf '\\036remediate-pid:%s\\n' \"$$\" >&2; "
_PID_LINE = re.compile(rb"\x1eremediate-pid:(\d+)\n")
# How often a running command looks for an interrupt; it only bounds how late a kill starts.
_POLL = 0.2


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
    """One lazily opened SSH connection; every command is a new channel on it."""

    def __init__(self, host: Host, options: SSHOptions) -> None:
        self.name = host.name
        self.host = host
        self.options = options
        self.notices: list[str] = []
        self._conn: Any = None
        self._transport: paramiko.Transport | None = None
        self.host_key_fingerprint: str | None = None
        self.client_key_fingerprint: str | None = None
        self._interrupted = threading.Event()

    def _open(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        import paramiko
        from fabric import Config, Connection

        host = self.host
        where = f"{host.address}:{host.port}"
        config = Config(overrides={"load_ssh_configs": False})
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
            try:
                client.get_host_keys().load(known)
            except (OSError, paramiko.SSHException) as exc:
                raise Unreachable(f"{where}: cannot read known_hosts {known}: {exc}") from None
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
        self.client_key_fingerprint = _client_fingerprint(host.identity_file)
        self._conn = conn
        self._transport = transport
        return transport

    def interrupt(self) -> None:
        """Kill the running remote command (its whole process group) and refuse new ones."""
        self._interrupted.set()

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
        """Run argv on the host over a new channel of the one connection."""
        import paramiko

        command = _PID_PREFIX + shell_command(argv, env, cwd)
        limit = timeout if timeout is not None else self.options.command_timeout
        if self._interrupted.is_set():
            raise Interrupted(f"interrupted: {' '.join(argv)[:200]} was not started")
        transport = self._open()
        try:
            chan = transport.open_session(timeout=self.options.connect_timeout)
        except paramiko.SSHException as exc:
            raise Unreachable(f"{self.host.address}:{self.host.port}: cannot open a channel: {exc}") from None
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err, pid = _drain(chan, time.monotonic() + limit, self._interrupted)
            if out is None:
                killed = self._kill(transport, pid)
                if self._interrupted.is_set():
                    raise Interrupted(f"interrupted: {' '.join(argv)[:200]} {killed}")
                raise CommandFailed(tuple(argv), 124, "", f"timed out after {limit:g} s; {killed}")
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        return CommandResult(tuple(argv), rc, out, err)

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

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._transport = None


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
