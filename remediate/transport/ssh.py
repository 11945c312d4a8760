"""SSH through one Fabric connection per host (with its jump hosts), one remote `sh` per identity; host keys
verified against known_hosts for the host and every jump host.

A host's transport owns its whole route: the connections to its jump hosts (opened in order, each verified
against the host's known_hosts, each carrying the next as a `direct-tcpip` channel) and the connection to the
host. Commands run in one remote `sh` per identity on that connection: the login user's, and one per
`become` user (`sudo … sh`, see sudo.py), each started once, so the login shell's startup files run once per
identity, not once per command.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import CommandFailed, Interrupted, StepError, Unreachable
from . import sudo
from .base import Become, CommandResult, Identity, Transport, shell_command
from .keys import KeyStore, KeyUnusable, Tried, auth_failure, fingerprint_of, strategy
from .sshconfig import Defaults, Hop, Route, SSHConfig, resolve

if TYPE_CHECKING:
    import paramiko

    from ..inputs.inventory import Host
    from .docker import DockerAPI

# a library's log is not the operator's output: without this, Python's last-resort handler prints paramiko's
# tracebacks (a host without a banner: 21 lines) on stderr; the CLI's -vvv attaches a handler of its own
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_known_hosts_lock = threading.Lock()
_parsed_lock = threading.Lock()
_parsed: dict[str, tuple[tuple[int, int, int], paramiko.HostKeys]] = {}
# sshd runs each session command in a new session (setsid), so the shell's pid is the process group to kill
# on interrupt; the shell reports it first on stderr, and the line is removed from the output. Under sudo the
# shell is a child of sudo, in the session's group: that group is reported (and killed as root).
_PID_PREFIX = "printf '\\036remediate-pid:%s\\n' \"$$\" >&2; "
_PGID_PREFIX = "pg=$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' '); printf '\\036remediate-pid:%s\\n' \"${pg:-$$}\" >&2; "
_PID_LINE = re.compile(rb"\x1eremediate-pid:(\d+)\n")
# How often a running command looks for an interrupt; it only bounds how late a kill starts.
_POLL = 0.2
# stdin up to this size goes to the host's one shell as a base64 here-document; larger stdin gets a channel
_INLINE_STDIN = 1 << 20


@dataclass(frozen=True)
class SSHOptions:
    """Connection settings shared by every host of a run.

    The defaults reach only what the inventory names: no ssh_config, no agent. The CLI builds the user's
    (cli.common): ~/.ssh/config and /etc/ssh/ssh_config, the agent of SSH_AUTH_SOCK, -u, --private-key.
    """

    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    accept_new_host_keys: bool = False
    ssh_config: SSHConfig = SSHConfig()
    defaults: Defaults = field(default_factory=Defaults)
    agent: bool = False
    keys: KeyStore = field(default_factory=KeyStore.from_environment, compare=False)
    become_password: str | None = field(default=None, repr=False, compare=False)


def route_of(host: Host, options: SSHOptions) -> Route:
    """Where the host's connection goes (InputError for a bad ssh_config value or ProxyJump)."""
    return resolve(host.name, options.ssh_config, options.defaults, address=host.address, port=host.port,
                   user=host.user, identity_file=host.identity_file, known_hosts=host.known_hosts,
                   proxy_jump=host.proxy_jump, origin=f"host {host.name} ({host.where})")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key."""
    return fingerprint_of(key.asbytes())


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


def _policy(hop: Hop, where: str, accept_new: bool, notices: list[str]) -> Any:
    import paramiko

    files = hop.known_hosts
    record = files[0] if files else os.path.expanduser("~/.ssh/known_hosts")

    class Policy(paramiko.MissingHostKeyPolicy):
        """Refuse unknown host keys, or with --accept-new-host-keys record them and say so."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            fp = fingerprint(key)
            if not accept_new:
                raise _Refused(
                    f"{where}: host key for {hop.known_name} is not in {' or '.join(files) or record} "
                    f"({key.get_name()} {fp}); refusing to connect (verify it and add it, or pass "
                    "--accept-new-host-keys)"
                )
            client.get_host_keys().add(hop.known_name, key.get_name(), key)
            with _known_hosts_lock:
                os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
                with open(record, "a", encoding="ascii") as fh:
                    fh.write(f"{hop.known_name} {key.get_name()} {key.get_base64()}\n")
            notices.append(f"added new host key for {hop.known_name} ({key.get_name()} {fp}) to {record}")

    return Policy()


class _Refused(Exception):
    """A connection refused for a reason already put in words (host key, key file)."""


class _OpenFailures(logging.Handler):
    """What a jump host said when it could not open a forward (paramiko logs it; its exception says only
    "Connect failed")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"open FAILED: (.*): [^:]*$", record.getMessage())
        if found:
            self.reasons.append(found.group(1))


class SSHTransport:
    """One lazily opened SSH connection (through its jump hosts); commands without large stdin run one after
    another in the remote `sh` of their identity."""

    def __init__(self, host: Host, options: SSHOptions, route: Route | None = None,
                 become: Become | None = None) -> None:
        self.name = host.name
        self.become = become  # whom run() runs as: the host's `become` (None: the login user)
        self.host = host
        self.options = options
        self.route = route or route_of(host, options)
        self._notices: list[str] = []
        self._chain: list[Any] = []  # fabric Connections: the jump hosts in order, then the host
        self._transport: paramiko.Transport | None = None
        self._jump_logs: list[tuple[logging.Logger, _OpenFailures]] = []
        self.host_key_fingerprint: str | None = None
        self.client_key_fingerprint: str | None = None
        self._interrupted = threading.Event()
        self._shells: dict[str | None, _Shell] = {}  # by become user (None: the login user)
        self._kept: dict[str | None, str] = {}  # what keep() ran in each shell, to run again in a new one
        self._views: dict[str | None, AsUser] = {}
        self._lock = threading.Lock()
        self._dockers: dict[str | None, DockerAPI] = {}  # the Engine API, by become user (None: the login user)

    # ------------------------------------------------------------------------------------------------ connection

    def _open(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        self._drop_connection()
        hops = (*self.route.jumps, self.route.target)
        gateway: Any = None
        for hop in hops:
            conn = None
            try:
                conn, tried = self._connection(hop, gateway)
                self._connect(hop, conn, tried)
            except BaseException:
                if conn is not None:
                    conn.close()
                self._drop_connection()
                raise
            self._chain.append(conn)
            gateway = conn
        client: paramiko.SSHClient = self._chain[-1].client
        transport = client.get_transport()
        assert transport is not None
        self._transport = transport
        return transport

    def _connection(self, hop: Hop, gateway: Any) -> tuple[Any, list[Tried]]:
        import paramiko
        from fabric import Config, Connection

        where = self.route.via(hop)
        for key in hop.keys:
            if key.explicit and not os.path.exists(key.path):
                raise Unreachable(f"{where}: identity file {key.path} ({key.origin}) does not exist")
        tried: list[Tried] = []
        auth = strategy(hop, self.options.keys, self.options.agent, tried)
        # lazy: no /etc/fabric.yml, ~/.fabric.yml or ssh_config files; the route already says everything
        config = Config(lazy=True, overrides={"load_ssh_configs": False, "authentication": {"strategy_class": auth}})
        limit = self.options.connect_timeout
        connect_kwargs: dict[str, Any] = {"banner_timeout": limit, "auth_timeout": limit, "channel_timeout": limit}
        if gateway is None and self.route.proxy_command and hop is self.route.target:
            connect_kwargs["sock"] = paramiko.ProxyCommand(self.route.proxy_command)
        conn = Connection(hop.hostname, user=hop.user, port=hop.port, config=config, connect_timeout=limit,
                          connect_kwargs=connect_kwargs, gateway=gateway if gateway is not None else False)
        client: paramiko.SSHClient = conn.client
        for path in (*hop.known_hosts, *hop.global_known_hosts):
            if not os.path.exists(path):
                continue
            try:
                known = known_host_keys(path).lookup(hop.known_name)
            except (OSError, paramiko.SSHException) as exc:
                raise Unreachable(f"{where}: cannot read known_hosts {path}: {exc}") from None
            for keytype, host_key in (known or {}).items():
                client.get_host_keys().add(hop.known_name, keytype, host_key)
        client.set_missing_host_key_policy(_policy(hop, where, self.options.accept_new_host_keys, self._notices))
        return conn, tried

    def _connect(self, hop: Hop, conn: Any, tried: list[Tried]) -> None:
        import paramiko
        from paramiko.auth_strategy import AuthFailure

        where = self.route.via(hop)
        limit = self.options.connect_timeout
        try:
            conn.open()
        except _Refused as exc:
            raise Unreachable(str(exc)) from None
        except paramiko.BadHostKeyException as exc:
            files = [f for f in (*hop.known_hosts, *hop.global_known_hosts) if _lists(f, hop.known_name)]
            listed = " and ".join(files) or " or ".join((*hop.known_hosts, *hop.global_known_hosts))
            remove = f"ssh-keygen -R '{hop.known_name}'" + (f" -f {files[0]}" if files else "")
            raise Unreachable(
                f"{where}: host key CHANGED: server offered {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"{listed} expects {fingerprint(exc.expected_key)}; refusing to connect (someone may be "
                f"intercepting the connection; if the host was reinstalled, verify the new key, then `{remove}`)"
            ) from None
        except AuthFailure:
            raise Unreachable(f"{where}: {auth_failure(hop, tried, self.options.agent)}") from None
        except paramiko.AuthenticationException as exc:
            raise Unreachable(f"{where}: authentication failed as {hop.user}: {exc}") from None
        except paramiko.ChannelException as exc:
            # the previous hop could not open the forward to this one
            jump = self.route.jumps[self.route.jumps.index(hop) - 1] if hop in self.route.jumps else self.route.jumps[-1]
            reason = self._jump_reason() or exc.text
            raise Unreachable(f"{where}: the jump host {jump.where} could not connect to "
                              f"{hop.hostname}:{hop.port}: {reason}") from None
        except paramiko.SSHException as exc:
            client_transport = conn.client.get_transport()
            if client_transport is not None and not client_transport.remote_version:
                raise Unreachable(f"{where}: connected, but no SSH banner within {limit:g} s "
                                  "(is an SSH server listening there?)") from None
            raise Unreachable(f"{where}: {exc}") from None
        except (socket.timeout, TimeoutError):
            raise Unreachable(f"{where}: connection timed out after {limit:g} s (the host down, or packets dropped "
                              "on the way? --connect-timeout waits longer)") from None
        except socket.gaierror as exc:
            raise Unreachable(f"{where}: cannot resolve {hop.hostname}: {exc.strerror or exc}") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            raise Unreachable(f"{where}: {_socket_reason(exc)}") from None
        except EOFError:
            raise Unreachable(f"{where}: the server closed the connection during the SSH handshake") from None
        except OSError as exc:
            raise Unreachable(f"{where}: {_socket_reason(exc)}") from None
        transport = conn.client.get_transport()
        assert transport is not None
        transport.set_keepalive(30)
        if hop is not self.route.target:
            # a jump host's forward failures are logged, not raised: keep its words for the message
            logger_name = f"paramiko.transport.remediate.{self.name}.{len(self._chain)}"
            transport.set_log_channel(logger_name)
            logger = logging.getLogger(logger_name)
            handler = _OpenFailures()
            logger.addHandler(handler)
            self._jump_logs.append((logger, handler))
        else:
            self.host_key_fingerprint = fingerprint(transport.get_remote_server_key())
            accepted = [t for t in tried if t.failure is None]
            self.client_key_fingerprint = accepted[-1].fingerprint if accepted else None
            for t in tried:
                if t.failure is not None and "readable by group or others" in t.failure:
                    self._notices.append(t.failure)

    def _jump_reason(self) -> str | None:
        for _, handler in reversed(self._jump_logs):
            if handler.reasons:
                return handler.reasons[-1]
        return None

    def _drop_connection(self) -> None:
        for shell in self._shells.values():
            shell.close()
        self._shells.clear()
        for conn in reversed(self._chain):
            conn.close()
        self._chain.clear()
        for logger, handler in self._jump_logs:
            logger.removeHandler(handler)
        self._jump_logs.clear()
        self._transport = None

    def connect(self) -> None:
        """Open the connection and start the login user's shell now (to report an unreachable host before any
        step); the shell's start (the login shell's startup files) is not awaited."""
        self._connect_as(self.become)

    def _connect_as(self, become: Become | None) -> None:
        if become is not None and become.user == self.route.target.user:
            become = None  # as run() does: already that user, no sudo shell
        with self._lock:
            self._open()
            key = become.user if become else None
            if key not in self._shells and not (become and self.options.become_password):
                self._shells[key] = self._start_shell(become)

    def identity(self) -> Identity:
        """The SSH user and address (and jump hosts), the server's host key and the client key used."""
        target = self.route.target
        via = ", ".join(j.where for j in self.route.jumps) or None
        return Identity("ssh", target.user, f"{target.hostname}:{target.port}", self.host_key_fingerprint,
                        self.client_key_fingerprint, self.host.identity_file, via)

    def notices(self) -> tuple[str, ...]:
        """Host keys added with --accept-new-host-keys; key files skipped."""
        return tuple(self._notices)

    def interrupt(self) -> None:
        """Kill the running remote command (its whole process group) and refuse new ones."""
        self._interrupted.set()
        for api in list(self._dockers.values()):
            api.interrupt()

    def as_user(self, become: Become | None) -> Transport:
        """This host's commands as `become.user` through sudo, over the same connection (None: the login user)."""
        key = become.user if become else None
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = AsUser(self, become)
        return view

    # ------------------------------------------------------------------------------------------------ commands

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
        return self._run(self.become, argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)

    def _run(self, become: Become | None, argv: Sequence[str], *, stdin: bytes | None,
             env: Mapping[str, str] | None, cwd: str | None, timeout: float | None) -> CommandResult:
        limit = timeout if timeout is not None else self.options.command_timeout
        if self._interrupted.is_set():
            raise Interrupted(f"interrupted: {' '.join(argv)[:200]} was not started")
        if become is not None and become.user == self.route.target.user:
            become = None  # already that user: no sudo needed
        with self._lock:
            command = shell_command(argv, env, cwd)
            if stdin and len(stdin) > _INLINE_STDIN:
                return self._exec(become, argv, command, stdin, limit)
            return self._in_shell(become, argv, command, limit, stdin)

    def open_channel(self, argv: Sequence[str], timeout: float | None = None) -> paramiko.Channel:
        """A channel of its own on the host's connection running argv, its stdin and stdout the channel's (for
        streams such as `docker system dial-stdio`), through sudo when the host is become. What the login
        shell's startup files print comes before a start marker on both streams and is dropped; nothing of
        argv's own output is read. `timeout`: for the start (default --connect-timeout)."""
        return self._open_channel(argv, self.become, timeout)

    def _open_channel(self, argv: Sequence[str], become: Become | None, timeout: float | None) -> paramiko.Channel:
        # the hook for become: the channel's command goes through the same `sudo … sh -c` as the shells
        limit = timeout if timeout is not None else self.options.connect_timeout
        with self._lock:
            return self._start_channel(shell_command(argv), become, time.monotonic() + limit)

    def keep(self, script: str, args: Sequence[str]) -> CommandResult:
        """Run script, a shell function's body, with args in the host's shell itself (every other command runs
        in a subshell): what it opens (the run lock's descriptor) stays open as long as that shell, no command
        inherits it, and it costs no channel, session or login of its own. A shell started again later (after a
        command that timed out was killed with its shell) runs it again before its first command."""
        command = shell_command(["remediate_kept", *args])
        definition = f"remediate_kept() {{\n{script}\n}}; {command}"
        become = self._commands_become()
        key = become.user if become else None
        with self._lock:
            result = self._in_shell(become, ["remediate_kept", *args[:1]], definition,
                                    self.options.connect_timeout + self.options.command_timeout, itself=True)
            if result.ok:
                self._kept[key] = definition
        return result

    def let_go(self, script: str) -> None:
        """Run script in the host's shell itself, as keep's undoing, and stop keeping: best effort (an interrupted
        run or a shell that is gone lets go when the shell ends, which closing the connection does)."""
        become = self._commands_become()
        key = become.user if become else None
        with self._lock:
            if self._kept.pop(key, None) is None or self._interrupted.is_set() or key not in self._shells:
                return
            try:
                self._in_shell(become, ["remediate_let_go"], f"remediate_let_go() {{\n{script}\n}}; remediate_let_go",
                               self.options.connect_timeout, itself=True)
            except (StepError, CommandFailed, Interrupted, OSError, EOFError):
                pass

    def _commands_become(self) -> Become | None:
        """Whom this transport's commands run as, in which shell (run()'s rule: become of the login user is none)."""
        return None if self.become is None or self.become.user == self.route.target.user else self.become

    def _channel(self) -> paramiko.Channel:
        import paramiko

        transport = self._open()
        try:
            return transport.open_session(timeout=self.options.connect_timeout)
        except paramiko.SSHException as exc:
            raise Unreachable(f"{self.route.where}: cannot open a channel: {exc}") from None

    def _start_channel(self, command: str | None, become: Become | None, deadline: float,
                       interruptible: bool = True) -> paramiko.Channel:
        """A channel running command (None: a shell reading commands), read up to its start marker on both
        streams and no further, through sudo for become. BecomeFailed when sudo refuses."""
        chan = self._channel()
        marker = sudo.new_marker()
        prompt = sudo.new_prompt() if become and self.options.become_password else None
        chan.exec_command(sudo.start_command(marker, command, become, prompt))
        try:
            self._await_start(chan, marker, become, prompt, deadline, interruptible)
        except BaseException:
            chan.close()
            raise
        return chan

    def _await_start(self, chan: paramiko.Channel, marker: str, become: Become | None, prompt: str | None,
                     deadline: float, interruptible: bool) -> None:
        mark = marker.encode() + b"\n"
        out, err = bytearray(), bytearray()
        answered = 0
        while True:
            eof = chan.eof_received or chan.closed
            out_done = _read_through(chan.recv_ready, chan.recv, out, mark)
            err_done = _read_through(chan.recv_stderr_ready, chan.recv_stderr, err, mark)
            if out_done and err_done:
                return
            if prompt is not None and err.count(prompt.encode()) > answered:
                if answered:  # asked again: the password was wrong
                    chan.close()
                    raise BecomeFailed(sudo.failure(become or Become(), self.route.target.user,
                                                    self.route.where, "Sorry, try again.", None))
                assert self.options.become_password is not None
                chan.sendall(self.options.become_password.encode() + b"\n")
                answered += 1
            if eof:
                chan.status_event.wait(5)
                rc = chan.exit_status if chan.exit_status_ready() else None
                text = err.decode("utf-8", "replace").replace(prompt or "\0", "")
                if become is not None:
                    raise BecomeFailed(sudo.failure(become, self.route.target.user, self.route.where, text, rc))
                raise StepError(f"{self.route.where}: the login shell ended (exit {rc}) before running anything: "
                                f"{text.strip()[-300:]}")
            remaining = deadline - time.monotonic()
            if interruptible and self._interrupted.is_set():
                chan.close()
                raise Interrupted(f"interrupted while {self.route.where} started a command")
            if remaining <= 0:
                chan.close()
                who = f"sudo -u {become.user}" if become else "the login shell"
                raise StepError(f"{self.route.where}: {who} did not start within {self.options.connect_timeout:g} s")
            if out_done or err_done:
                # the command's own bytes, left unread behind one marker, keep the channel readable: nap instead
                time.sleep(min(remaining, 0.005))
            else:
                select.select([chan], [], [], min(remaining, _POLL))

    def _exec(self, become: Become | None, argv: Sequence[str], command: str, stdin: bytes,
              limit: float) -> CommandResult:
        deadline = time.monotonic() + limit
        prefix = _PGID_PREFIX if become else _PID_PREFIX
        chan = self._start_channel(prefix + command, become, time.monotonic() + self.options.connect_timeout)
        try:
            chan.sendall(stdin)
            chan.shutdown_write()
            rest, err, pid = _drain(chan, deadline, self._interrupted)
            if rest is None:
                self._abandon(become, argv, pid, limit)
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        assert rest is not None
        return CommandResult(tuple(argv), rc, rest, err)

    def _abandon(self, become: Become | None, argv: Sequence[str], pid: int | None, limit: float) -> None:
        """Kill a command that timed out or was interrupted, and raise accordingly."""
        killed = self._kill(become, pid)
        if self._interrupted.is_set():
            raise Interrupted(f"interrupted: {' '.join(argv)[:200]} {killed}")
        raise CommandFailed(tuple(argv), 124, "", f"timed out after {limit:g} s; {killed}")

    def _in_shell(self, become: Become | None, argv: Sequence[str], command: str, limit: float,
                  stdin: bytes | None = None, itself: bool = False) -> CommandResult:
        # sshd runs every exec request through the login shell and its startup files (often ~0.1 s of
        # CPU each: pyenv, conda, rvm init); one `sh` per identity reading commands pays that once, not per command
        deadline = time.monotonic() + limit
        key = become.user if become else None
        shell = self._shells.get(key)
        if shell is not None and not shell.alive:
            self._drop_shell(key)
            shell = None
        token = secrets.token_hex(16)
        if shell is None:
            shell = self._shells[key] = self._start_shell(become)
            kept = self._kept.get(key)
            if kept is not None and not itself:
                # the shell that held what keep() opened is gone (killed with a command that timed out): take it again
                again = self._in_shell(become, ["remediate_kept"], kept, limit, itself=True)
                if not again.ok:
                    self._kept.pop(key, None)
                    raise StepError(f"{self.route.where}: the run lock on the host went with its shell and cannot be "
                                    f"taken again: {(again.out + again.err).strip()[-300:]}; not run")
        try:
            if stdin and shell.ready:
                shell.await_ready(deadline, self._interrupted)  # inline stdin needs base64 on the host: learn it first
            if stdin:
                if not shell.has_base64:
                    return self._exec(become, argv, command, stdin, limit)
                # a here-document runs only once the shell has read all of it (a stream cut short leaves the
                # subshell's ")" unread: a syntax error, nothing runs); "-" is not in base64's alphabet
                end = f"END-{token}"
                command = f"base64 -d <<'{end}' | {command}\n{base64.encodebytes(stdin).decode()}{end}"
            # a subshell, so cd/exports stay with the command; stdin is never the shell's own input, nor is
            # descriptor 6 (keep()'s: the run lock) any command's, so nothing a command leaves running holds it
            run = f"{command}\n" if itself else f"( {command}\n) </dev/null 6>&-; "
            shell.send(f"{run}printf '%s %d\\n' {token}o $?; printf '%s\\n' {token}e >&2\n".encode())
            if shell.ready:
                shell.await_ready(deadline, self._interrupted)
            out, err, status = shell.until(token, deadline, self._interrupted)
        except _ShellTimeout:
            try:
                self._abandon(become, argv, shell.pid, limit)  # kills the shell's process group, then raises
            finally:
                self._drop_shell(key)
        except _ShellGone as gone:
            self._drop_shell(key)
            if gone.before_ready:
                # the shell never ran anything: sudo refused, or the login shell died
                text = gone.err.decode("utf-8", "replace")
                if become is not None:
                    raise BecomeFailed(sudo.failure(become, self.route.target.user, self.route.where, text, gone.rc))
                raise StepError(f"{self.route.where}: the login shell ended (exit {gone.rc}) before running "
                                f"anything: {text.strip()[-300:]}") from None
            # the command ended the shell itself (or sshd did): report what it left, start a new shell next time
            return CommandResult(tuple(argv), gone.rc, gone.out, gone.err)
        return CommandResult(tuple(argv), int(status), out, err)

    def _start_shell(self, become: Become | None) -> _Shell:
        """The identity's remote shell, its start marker sent (awaited with the first command); with a sudo
        password, sudo's question is answered here first."""
        if become is None:
            chan = self._channel()
            chan.exec_command("sh")
            shell = _Shell(chan, become)
        elif not self.options.become_password:
            # sudo -n never reads stdin: the shell's start goes right behind it (a refusal ends the channel
            # before the shell's ready marker, and is reported as sudo's)
            chan = self._channel()
            chan.exec_command(sudo.start_command(sudo.new_marker(), None, become))
            shell = _Shell(chan, become)
        else:
            shell = _Shell(self._start_channel(None, become, time.monotonic() + self.options.connect_timeout), become)
        shell.send_ready()
        return shell

    def _drop_shell(self, key: str | None) -> None:
        shell = self._shells.pop(key, None)
        if shell is not None:
            shell.close()

    def _kill(self, become: Become | None, pid: int | None) -> str:
        """TERM, then KILL after a bounded wait, the process group of an abandoned command (as root under sudo)."""
        if pid is None:
            return "(its process id was never seen; it may still run)"
        script = (
            # no "--": dash's kill builtin does not take it; a negative pid names the process group
            'kill -TERM "-$0" 2>/dev/null || exit 0; i=0; '
            'while kill -0 "-$0" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; '
            'kill -KILL "-$0" 2>/dev/null; exit 0'
        )
        try:
            # the kill is what an interrupt asks for: its own start is not interrupted
            chan = self._start_channel(shell_command(["sh", "-c", script, str(pid)]), become,
                                             time.monotonic() + self.options.connect_timeout, interruptible=False)
            try:
                chan.shutdown_write()
                chan.recv_exit_status()
            finally:
                chan.close()
        except Exception as exc:  # noqa: BLE001 - the kill is best effort; say it failed rather than hide the interrupt
            return f"(killing remote process group {pid} failed: {exc})"
        return f"(remote process group {pid} killed)"

    def docker(self) -> DockerAPI:
        """The host's Docker Engine API over a channel of this connection (`docker system dial-stdio`), as the
        host's become user."""
        return self._docker_as(self.become)

    def _docker_as(self, become: Become | None) -> DockerAPI:
        # become: dial-stdio runs through the same sudo as the user's shell (open_channel), one engine per user
        key = become.user if become else None
        with self._lock:
            api = self._dockers.get(key)
            if api is None:
                from .docker import DIAL_STDIO, DockerAPI

                api = self._dockers[key] = DockerAPI(
                    self.name, lambda: self._open_channel(DIAL_STDIO, become, None),
                    user=become.user if become else self.route.target.user,
                    role="the become user" if become else "the SSH user")
            return api

    def close(self) -> None:
        """Close the Engine API's channels, the shells, the connection and its jump hosts' connections."""
        for api in self._dockers.values():
            api.close()
        self._dockers.clear()
        self._drop_connection()


class AsUser:
    """A host's transport running its commands as one user (another through sudo, or the login user itself)
    in that user's shell on the host's one connection; everything but the commands is the host transport's."""

    def __init__(self, owner: SSHTransport, become: Become | None) -> None:
        self._owner = owner
        self.become = become
        self.name = owner.name

    def connect(self) -> None:
        """Open the host's connection and start this user's shell (not awaited)."""
        self._owner._connect_as(self.become)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        """Run argv as the become user."""
        return self._owner._run(self.become, argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)

    def open_channel(self, argv: Sequence[str], timeout: float | None = None) -> paramiko.Channel:
        """A channel of its own running argv as the become user."""
        return self._owner._open_channel(argv, self.become, timeout)

    def docker(self) -> DockerAPI:
        """The host's Docker Engine API as the become user (dial-stdio through sudo)."""
        return self._owner._docker_as(self.become)

    def as_user(self, become: Become | None) -> Transport:
        return self._owner.as_user(become)

    def interrupt(self) -> None:
        self._owner.interrupt()

    def identity(self) -> Identity:
        return self._owner.identity()

    def notices(self) -> tuple[str, ...]:
        return self._owner.notices()

    def close(self) -> None:
        """The host's transport closes the connection."""


class BecomeFailed(StepError):
    """sudo did not let the command run (a password needed or refused, not allowed, not installed)."""


class _Shell:
    """One remote `sh` reading commands on a channel; its pid (process group), whether it has base64, and
    what it printed past the last command's end marker."""

    def __init__(self, chan: paramiko.Channel, become: Become | None) -> None:
        self.chan = chan
        self.become = become
        self.pid: int | None = None
        self.has_base64 = False
        self.ready = ""  # the start marker of a shell whose start has not been awaited yet
        self.out = bytearray()
        self.err = bytearray()

    @property
    def alive(self) -> bool:
        return not (self.chan.closed or self.chan.eof_received or not self.chan.active)

    def send(self, data: bytes) -> None:
        """Write to the shell; a shell already gone (sudo refused at once) is told by reading, not here."""
        try:
            self.chan.sendall(data)
        except OSError:
            if not (self.chan.closed or self.chan.eof_received):
                raise

    def send_ready(self) -> None:
        ready = secrets.token_hex(16)
        # whatever the startup files print comes before this marker and is dropped; the pid is the kill target
        pid = '"$$"' if self.become is None else '"$(ps -o pgid= -p $$ 2>/dev/null | tr -d \' \')"'
        self.send(
            f"command -v base64 >/dev/null 2>&1 && remediate_b64=1 || remediate_b64=0; "
            f"remediate_pg={pid}; "
            f"printf '%s %s %d\\n' {ready}o \"${{remediate_pg:-$$}}\" $remediate_b64; printf '%s\\n' {ready}e >&2\n".encode()
        )
        self.ready = ready

    def await_ready(self, deadline: float, interrupted: threading.Event) -> None:
        """The new shell's pid and whether it has base64 (startup files' output before the marker is dropped)."""
        ready, self.ready = self.ready, ""
        try:
            pid, has_base64 = self.until(ready, deadline, interrupted)[2].split()
        except _ShellGone as gone:
            gone.before_ready = True
            raise
        self.pid, self.has_base64 = int(pid), has_base64 == "1"

    def until(self, token: str, deadline: float, interrupted: threading.Event) -> tuple[bytes, bytes, str]:
        """Read until the shell printed token's markers on stdout and stderr; what came before is the output,
        and the rest of the stdout marker's line the status."""
        chan = self.chan
        out_mark, err_mark = f"{token}o ".encode(), f"{token}e\n".encode()
        out, err = self.out, self.err
        while True:
            eof = _pump(chan, out, err)
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
            if remaining <= 0 or interrupted.is_set():
                raise _ShellTimeout()
            select.select([chan], [], [], min(remaining, _POLL))

    def close(self) -> None:
        self.chan.close()


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
        self.before_ready = False


def _pump(chan: paramiko.Channel, out: bytearray, err: bytearray) -> bool:
    """Append what the channel has on stdout and stderr; whether EOF had come before (so nothing is left)."""
    # EOF is fed after all data on the wire, so once it is seen the buffers hold everything
    eof = chan.eof_received or chan.closed
    while chan.recv_ready():
        out += chan.recv(65536)
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(65536)
    return bool(eof)


def _read_through(ready: Any, recv: Any, buf: bytearray, mark: bytes) -> bool:
    """Read one stream of a channel into buf until buf ends with mark, never a byte past it (what follows
    is the command's own); whether it does."""
    while not buf.endswith(mark) and ready():
        buf += recv(unread_to(buf, mark))
    return buf.endswith(mark)


def _lists(path: str, name: str) -> bool:
    """Whether the known_hosts file at path has a key for name."""
    try:
        return bool(os.path.exists(path) and known_host_keys(path).lookup(name))
    except Exception:  # noqa: BLE001 - only for the hint; the connection is refused either way
        return False


def _socket_reason(exc: OSError) -> str:
    """A failed TCP connection in words ("connection refused"), from paramiko's per-address errors too."""
    errors = getattr(exc, "errors", None)
    if errors:
        exc = next(iter(errors.values()))
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return "connection refused (is an SSH server listening on that port?)"
    if code in (errno.ETIMEDOUT,):
        return "connection timed out"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"cannot connect: {os.strerror(code).lower()}"
    return f"cannot connect: {exc.strerror or exc}"


def _drain(chan: paramiko.Channel, deadline: float, interrupted: threading.Event) -> tuple[bytes | None, bytes, int | None]:
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


__all__ = ["AsUser", "BecomeFailed", "KeyUnusable", "SSHOptions", "SSHTransport",
           "fingerprint", "known_host_keys", "route_of"]
