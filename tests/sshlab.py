"""Real SSH hosts as users have them, for the suite: sshd processes on loopback with users of their own (created
with useradd, removed afterwards), keys with and without a passphrase, an ssh-agent, sudo rules, noisy login
shells, and a jump host in front of a target that only the jump host can reach.

Nothing here reads or writes the developer's ~/.ssh: every key, known_hosts and ssh_config is created in a
directory of the test's own, and tests point HOME (or --ssh-config) at it.

The target behind a jump host lives in a network namespace of its own (`unshare --net`): its sshd listens on
that namespace's loopback, which no process of the suite can reach. The jump host is an sshd started per
connection in inetd mode (`sshd -i`) inside that namespace by a small acceptor listening on the suite's
loopback, so the jump host's `direct-tcpip` connections are the only way to the target.
"""
from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SSHD = "/usr/sbin/sshd"
# the environment variables a user gives the passphrase of a key and the sudo password in (never inherited)
KEY_ENV = "REMEDIATE_SSH_KEY_PASSPHRASE"
BECOME_ENV = "REMEDIATE_BECOME_PASSWORD"
# what every test user is called: rmdt-<8 hex>; nothing else on this machine is ever created or removed
USER_PREFIX = "rmdt-"


def base_dir() -> Path:
    """A directory every test user can traverse (pytest's own tmp directories are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="rmdt-", dir="/tmp"))
    path.chmod(0o755)
    return path


def keygen(path: Path, passphrase: str = "", kind: str = "ed25519") -> Path:
    """A new key pair at path (private, mode 0600) and path.pub."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", f"rmdt-{path.name}", "-f", str(path)],
                   check=True)
    return path


def public_key(path: Path) -> str:
    """'type base64' of a key pair's public half."""
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def fingerprint(pub: Path) -> str:
    """SHA256:... of a public key file, as ssh-keygen prints it."""
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _config(dir: Path, port: int, addresses: Sequence[str], extra: Sequence[str]) -> Path:
    lines = [*extra]  # first: sshd takes the first value of each keyword, and Match blocks must come last
    lines += [f"Port {port}", *(f"ListenAddress {a}:{port}" for a in addresses)]
    lines += [
        f"HostKey {dir}/ssh_host_ed25519_key",
        f"PidFile {dir}/sshd.pid",
        # read as the user logging in: a directory each user can read (its own authorized_keys only)
        f"AuthorizedKeysFile {dir}/users/%u/authorized_keys",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "MaxStartups 200:30:400",
        "MaxSessions 100",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    conf = dir / "sshd_config"
    # Match blocks go last (everything after a Match line belongs to it)
    plain = [line for line in lines if not line.startswith("Match ") and not line.startswith("  ")]
    matched = [line for line in lines if line.startswith("Match ") or line.startswith("  ")]
    conf.write_text("\n".join(plain + matched) + "\n")
    return conf


@dataclass
class Server:
    """One sshd: its directory (host key, config, log, users' authorized_keys), port and addresses."""

    dir: Path
    port: int
    addresses: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None
    stop_hook: list[object] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def host_key_pub(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"

    @property
    def host_fingerprint(self) -> str:
        return fingerprint(self.host_key_pub)

    @property
    def log(self) -> str:
        return (self.dir / "sshd.log").read_text() if (self.dir / "sshd.log").exists() else ""

    def known_hosts_lines(self) -> list[str]:
        """This server's known_hosts lines, one per address."""
        key = public_key(self.dir / "ssh_host_ed25519_key")
        return [f"{known_hosts_name(a, self.port)} {key}" for a in self.addresses]

    def authorize(self, user: str, key: Path) -> None:
        """Let key log in as user."""
        folder = self.dir / "users" / user
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        auth = folder / "authorized_keys"
        with auth.open("a") as fh:
            fh.write(public_key(key) + "\n")
        auth.chmod(0o644)

    def stop(self) -> None:
        for hook in self.stop_hook:
            hook()  # type: ignore[operator]
        self.stop_hook.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def _prepare(dir: Path) -> None:
    dir.mkdir(parents=True, exist_ok=True)
    dir.chmod(0o755)
    (dir / "users").mkdir(exist_ok=True)
    (dir / "users").chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)
    if not (dir / "ssh_host_ed25519_key").exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rmdt-host",
                        "-f", str(dir / "ssh_host_ed25519_key")], check=True)


def _wait_listening(address: str, port: int, process: subprocess.Popen[bytes], log: Path, netns_pid: int | None = None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited {process.returncode}: {log.read_text() if log.exists() else ''}")
        if netns_pid is None:
            try:
                with socket.create_connection((address, port), timeout=1) as probe:
                    if probe.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                pass
        else:
            probe = subprocess.run(["nsenter", f"--net=/proc/{netns_pid}/ns/net", "python3", "-c",
                                    "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 1); "
                                    "sys.exit(0 if s.recv(4).startswith(b'SSH-') else 1)", address, str(port)],
                                   capture_output=True, check=False)
            if probe.returncode == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd on {address}:{port} did not start: {log.read_text() if log.exists() else ''}")


def start_sshd(dir: Path, addresses: Sequence[str], *, port: int | None = None, extra: Sequence[str] = ()) -> Server:
    """sshd (foreground, -D) on these loopback addresses; `extra` are sshd_config lines (Match blocks allowed)."""
    for address in addresses:
        if not address.startswith("127."):
            raise ValueError(f"refusing non-loopback address {address}")
    _prepare(dir)
    port = port or free_port(addresses[0])
    conf = _config(dir, port, addresses, extra)
    log = dir / "sshd.log"
    process = subprocess.Popen([SSHD, "-D", "-f", str(conf), "-E", str(log)], stdin=subprocess.DEVNULL)
    server = Server(dir, port, tuple(addresses), process)
    try:
        _wait_listening(addresses[0], port, process, log)
    except BaseException:
        server.stop()
        raise
    return server


def start_hidden_sshd(dir: Path, address: str, port: int = 22) -> Server:
    """sshd in a network namespace of its own, listening on its loopback: unreachable from the suite's."""
    _prepare(dir)
    conf = _config(dir, port, [address], ())
    log = dir / "sshd.log"
    process = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'ip link set lo up && exec {SSHD} -D -f "$0" -E "$1"', str(conf), str(log)],
        stdin=subprocess.DEVNULL,
    )
    server = Server(dir, port, (address,), process)
    try:
        _wait_listening(address, port, process, log, netns_pid=process.pid)
    except BaseException:
        server.stop()
        raise
    return server


def start_jump_sshd(dir: Path, address: str, inside: Server, extra: Sequence[str] = ()) -> Server:
    """A jump host: reached on the suite's loopback at address, its sshd (one `sshd -i` per connection) runs
    in the network namespace of `inside`, so its forwards reach what only that namespace has."""
    assert inside.process is not None
    _prepare(dir)
    port = free_port(address)
    conf = _config(dir, port, [address], extra)
    log = dir / "sshd.log"
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(64)
    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()
    netns = f"/proc/{inside.process.pid}/ns/net"

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    children.append(subprocess.Popen(
                        ["nsenter", f"--net={netns}", SSHD, "-i", "-f", str(conf), "-E", str(log)],
                        stdin=conn.fileno(), stdout=conn.fileno(), close_fds=True,
                    ))
                except OSError as exc:  # this connection gets no sshd; the next one is tried again
                    with open(log, "a") as fh:
                        fh.write(f"acceptor: cannot start sshd -i: {exc}\n")
            children[:] = [c for c in children if c.poll() is None]

    thread = threading.Thread(target=accept, name=f"jump-acceptor-{address}:{port}", daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        listener.close()
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
        thread.join(5)

    server = Server(dir, port, (address,), None, [stop])
    return server


@dataclass(frozen=True)
class User:
    """A user created for one test (useradd), with its own home under the test's directory."""

    name: str
    home: Path
    uid: int
    gid: int


def add_user(base: Path, *, password: str | None = None, sudo: str | None = None, shell: str = "/bin/bash",
             bashrc: str | None = None) -> User:
    """A new user `rmdt-XXXXXXXX` (home in base). sudo: a sudoers rule body such as "ALL=(ALL:ALL) NOPASSWD: ALL"
    (in /etc/sudoers.d/rmdt-XXXXXXXX, removed with the user). bashrc: the home's .bashrc (sshd runs it for
    every command, as Debian's bash does when started by sshd)."""
    sweep_stale_users()
    name = USER_PREFIX + uuid.uuid4().hex[:8]
    home = base / "home" / name
    home.parent.mkdir(parents=True, exist_ok=True)
    home.parent.chmod(0o755)
    # '*' (not useradd's locked '!'): sshd without PAM refuses locked accounts even for key logins
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", shell, "--password", "*", name],
                   check=True)
    if password is not None:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    if sudo is not None:
        rule = Path("/etc/sudoers.d") / name
        rule.write_text(f"{name} {sudo}\n")
        rule.chmod(0o440)
        check = subprocess.run(["visudo", "-cf", str(rule)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            rule.unlink()
            raise RuntimeError(f"bad sudoers rule {sudo!r}: {check.stdout}{check.stderr}")
    if bashrc is not None:
        (home / ".bashrc").write_text(bashrc)
    ids = subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout.strip()
    gid = subprocess.run(["id", "-g", name], capture_output=True, text=True, check=True).stdout.strip()
    return User(name, home, int(ids), int(gid))


STALE_AFTER = 2 * 3600.0  # no test run lives this long (CI allows 90 min): an older test user was left by a run that was killed


def sweep_stale_users(now: float | None = None) -> list[str]:
    """Remove test users (and their sudoers rules) that a killed run left behind: older than STALE_AFTER by their
    account's creation (the sudoers rule's or the home's mtime). Returns their names."""
    now = time.time() if now is None else now
    gone = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) < 7 or not fields[0].startswith(USER_PREFIX):
            continue
        name, home = fields[0], Path(fields[5])
        rule = Path("/etc/sudoers.d") / name
        made = [p.stat().st_mtime for p in (rule, home) if p.exists()]
        if made and now - max(made) < STALE_AFTER:
            continue
        remove_user(User(name, home, int(fields[2]), int(fields[3])))
        gone.append(name)
    for rule in Path("/etc/sudoers.d").glob(USER_PREFIX + "*"):  # a rule whose account is already gone
        if now - rule.stat().st_mtime >= STALE_AFTER:
            rule.unlink(missing_ok=True)
    return gone


def remove_user(user: User) -> None:
    """Remove a user add_user made: its processes, sudoers rule, account and home."""
    if not user.name.startswith(USER_PREFIX):
        raise ValueError(f"refusing to remove {user.name}: not a test user")
    subprocess.run(["pkill", "-KILL", "-u", user.name], check=False, capture_output=True)
    (Path("/etc/sudoers.d") / user.name).unlink(missing_ok=True)
    for _ in range(20):
        done = subprocess.run(["userdel", user.name], capture_output=True, text=True, check=False)
        if done.returncode in (0, 6):  # 6: no such user
            break
        time.sleep(0.2)  # 8: the user is still logged in (a session ending)
    shutil.rmtree(user.home, ignore_errors=True)
    subprocess.run(["rm", "-rf", f"/var/mail/{user.name}", f"/run/sudo/ts/{user.name}"], check=False)


@dataclass(frozen=True)
class Agent:
    """An ssh-agent of the test's own."""

    sock: Path
    process: subprocess.Popen[bytes]

    def add(self, key: Path, passphrase: str = "") -> None:
        """ssh-add key, answering its passphrase question through SSH_ASKPASS."""
        askpass = self.sock.parent / "askpass.sh"
        askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$RMDT_PASSPHRASE"\n')
        askpass.chmod(0o700)
        env = {**os.environ, "SSH_AUTH_SOCK": str(self.sock), "SSH_ASKPASS": str(askpass),
               "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0", "RMDT_PASSPHRASE": passphrase}
        subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)

    def keys(self) -> str:
        return subprocess.run(["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": str(self.sock)},
                              capture_output=True, text=True, check=False).stdout


@contextmanager
def agent(dir: Path) -> Iterator[Agent]:
    """ssh-agent in the foreground (-D) on a socket in dir, stopped afterwards."""
    dir.mkdir(parents=True, exist_ok=True)
    sock = dir / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.05)
        yield Agent(sock, process)
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def silent_listener(address: str) -> Iterator[int]:
    """A TCP port that accepts connections and never says anything (a host whose sshd hangs before its banner)."""
    listener = socket.socket()
    listener.bind((address, 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        listener.close()
        for conn in held:
            conn.close()
        thread.join(5)


# ---------------------------------------------------------------------------------------------------- the CLI, as a user


def user_env(home: Path, agent: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user whose home is `home`: no agent unless given, no passphrase or sudo password."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SSH_AUTH_SOCK", "REMEDIATE_SSH_CONFIG", KEY_ENV, BECOME_ENV)}
    # the Docker CLI finds its compose plugin under the real home's ~/.docker, whatever HOME says
    env.setdefault("DOCKER_CONFIG", os.path.expanduser("~/.docker"))
    env.update(PYTHONPATH=str(ROOT), HOME=str(home))
    if agent is not None:
        env["SSH_AUTH_SOCK"] = str(agent)
    env.update(extra)
    return env


def run(*args: str, home: Path, agent: Path | None = None, timeout: float = 300,
        **extra: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process, stdin not a terminal (as in CI)."""
    return subprocess.run([sys.executable, "-m", "remediate", *args], cwd=ROOT, env=user_env(home, agent, **extra),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_on_tty(args: list[str], home: Path, answers: dict[str, str], timeout: float = 120,
               **extra: str) -> tuple[int, str, dict[str, int]]:
    """The CLI on a pseudo-terminal, typing answers[prompt] whenever a prompt appears; (exit code, everything
    the terminal showed, how often each prompt appeared)."""
    env = user_env(home, **extra)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, on the terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "remediate", *args], env)
    seen = {prompt: 0 for prompt in answers}
    shown = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            text = shown.decode("utf-8", "replace")
            for prompt, answer in answers.items():
                count = text.count(prompt)
                if count > seen[prompt]:
                    seen[prompt] = count
            total = sum(seen.values())
            while answered < total:
                prompt = max(answers, key=lambda p: text.rfind(p))
                os.write(fd, answers[prompt].encode() + b"\n")
                answered += 1
        else:
            os.kill(pid, 9)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace"), seen
