"""ssh_config as OpenSSH reads it, and where each host's connection really goes (pure, once per run).

Files: `~/.ssh/config` then `/etc/ssh/ssh_config` (first value wins), or only the file of `--ssh-config`
(as `ssh -F`), or none (`--no-ssh-config`); `REMEDIATE_SSH_CONFIG=FILE|none` is the environment form.
`Include` is expanded (globs, `~`, relative to ~/.ssh or /etc/ssh, 16 levels deep as OpenSSH); parsing and
lookups are paramiko's `SSHConfig` (Host/Match blocks, tokens), and a line it cannot read is an input error
naming file and line.

Precedence, for the target: the inventory's `port`/`user`/`identity_file`/`known_hosts`/`proxy_jump` win;
then `-u`/`--private-key`; then ssh_config; then OpenSSH's defaults. A jump host is looked up in ssh_config
by its own name and gets no `-i` (as `ssh -J`), but is checked against the same known_hosts as the host.
"""
from __future__ import annotations

import getpass
import glob
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import InputError, Location

if TYPE_CHECKING:
    import paramiko

ENV = "REMEDIATE_SSH_CONFIG"
USER_CONFIG = "~/.ssh/config"
SYSTEM_CONFIG = "/etc/ssh/ssh_config"
USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# OpenSSH's default identities that paramiko can use (no FIDO *_sk keys, no DSA)
DEFAULT_KEYS = ("~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519")
_MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
_MAX_JUMPS = 8
# what paramiko's SSHConfig.parse accepts as a line (its SETTINGS_REGEX), checked here to name file:line
_SETTING = re.compile(r"(\w+)(?:\s*=\s*|\s+)(.+)")
_MATCH_CRITERIA = ("all", "canonical", "final", "exec", "host", "originalhost", "user", "localuser")
_HOP = re.compile(r"^(?:ssh://)?(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\[\]]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class SSHConfig:
    """The parsed ssh_config files of a run (none: an empty config)."""

    files: tuple[str, ...] = ()
    parsed: Any = field(default=None, compare=False, repr=False)  # paramiko.SSHConfig

    def lookup(self, name: str) -> Mapping[str, Any]:
        """The options for `name`, as `ssh name` would see them (empty without files)."""
        if self.parsed is None:
            return {}
        options: Mapping[str, Any] = self.parsed.lookup(name)
        return options


@dataclass(frozen=True)
class KeyFile:
    """A private key to offer, and where it was named (for messages)."""

    path: str
    origin: str
    explicit: bool = True  # named by the inventory or --private-key: missing is an error (ssh_config's: skipped)


@dataclass(frozen=True)
class Hop:
    """One SSH endpoint of a route: where it connects, as whom, with which keys, checked against which files."""

    name: str  # as written: an alias, a name or an address
    hostname: str
    port: int
    user: str
    keys: tuple[KeyFile, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = ()  # the first is where --accept-new-host-keys records a key
    global_known_hosts: tuple[str, ...] = ()
    host_key_alias: str | None = None
    default_keys: bool = True  # no identity named anywhere: OpenSSH's ~/.ssh/id_* are tried

    @property
    def where(self) -> str:
        """user@hostname:port."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{self.user}@{host}:{self.port}"

    @property
    def known_name(self) -> str:
        """The name known_hosts lists this endpoint's key under."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


@dataclass(frozen=True)
class Route:
    """How a host is reached: through `jumps` in order (the first one directly), then the target."""

    target: Hop
    jumps: tuple[Hop, ...] = ()
    proxy_command: str | None = None

    @property
    def where(self) -> str:
        """user@address:port [via user@jump:port, ...]."""
        via = [j.where for j in self.jumps] + ([f"ProxyCommand {self.proxy_command}"] if self.proxy_command else [])
        return self.target.where + (f" via {', '.join(via)}" if via else "")

    def via(self, hop: Hop) -> str:
        """Where hop is reached from (for messages about it)."""
        index = self.jumps.index(hop) if hop in self.jumps else len(self.jumps)
        earlier = [j.where for j in self.jumps[:index]]
        return hop.where + (f" via {', '.join(earlier)}" if earlier else "")


@dataclass(frozen=True)
class Defaults:
    """What the command line and this machine supply when neither the inventory nor ssh_config does."""

    user: str | None = None  # -u/--user
    private_key: str | None = None  # --private-key
    local_user: str = field(default_factory=getpass.getuser)


# ---------------------------------------------------------------------------------------------------- loading


def load(path: str | None = None, *, enabled: bool = True, env: Mapping[str, str] | None = None) -> SSHConfig:
    """The run's ssh_config: `path` only (-F), or the user's and the system's files, or none.

    Without `path` and with `enabled`, REMEDIATE_SSH_CONFIG in env may name a file or say `none`.
    """
    import paramiko

    env = os.environ if env is None else env
    if path is None and enabled and env.get(ENV):
        value = env[ENV]
        if value == "none":
            enabled = False
        else:
            path = value
    if not enabled:
        return SSHConfig()
    if path is not None:
        full = os.path.expanduser(path)
        if not os.path.isfile(full):
            raise InputError(f"ssh_config file {path} does not exist", None, "--ssh-config")
        sources = [(full, os.path.dirname(os.path.abspath(full)))]
    else:
        sources = [(os.path.expanduser(USER_CONFIG), os.path.expanduser("~/.ssh")), (SYSTEM_CONFIG, "/etc/ssh")]
    lines: list[str] = []
    read: list[str] = []
    for file, base in sources:
        if os.path.isfile(file):
            read.append(file)
            lines.extend(_lines(file, base, 0, read))
    parsed = paramiko.SSHConfig()
    try:
        parsed.parse(iter(lines))
    except paramiko.ConfigParseError as exc:  # a Match line's arguments: name it by parsing each alone
        raise _locate(lines, read, exc) from None
    return SSHConfig(tuple(read), parsed)


def _lines(file: str, base: str, depth: int, read: list[str]) -> Iterator[str]:
    """The file's lines with Include expanded, each checked as paramiko will parse it."""
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ssh_config {file}: {exc}", Location(file)) from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            yield raw + "\n"
            continue
        match = _SETTING.match(line)
        if not match:
            raise InputError(f"cannot parse {line!r}: an ssh_config line is `Keyword value`", Location(file, number))
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "match":
            _check_match(value, Location(file, number))
        if key != "include":
            yield raw + "\n"
            continue
        if depth >= _MAX_INCLUDE_DEPTH:
            raise InputError(f"Include nested more than {_MAX_INCLUDE_DEPTH} levels deep", Location(file, number))
        for pattern in _words(value):
            pattern = os.path.expanduser(pattern)
            if not os.path.isabs(pattern):
                pattern = os.path.join(base, pattern)
            for included in sorted(glob.glob(pattern)):
                if os.path.isfile(included):
                    read.append(included)
                    yield from _lines(included, base, depth + 1, read)


def _words(value: str) -> list[str]:
    import shlex

    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def _check_match(value: str, where: Location) -> None:
    import paramiko

    try:
        parsed = paramiko.SSHConfig.from_text(f"Match {value}\n")
    except paramiko.ConfigParseError as exc:
        raise InputError(f"Match {value}: {exc}", where) from None
    blocks: list[dict[str, Any]] = getattr(parsed, "_config")  # paramiko keeps the parsed blocks there
    for criterion in blocks[-1].get("matches", ()):
        # paramiko lets a criterion it does not know match every host (localnetwork, tagged): refuse it
        if criterion["type"] not in _MATCH_CRITERIA:
            raise InputError(f"Match {criterion['type']} is not supported (paramiko evaluates only "
                             f"{', '.join(_MATCH_CRITERIA)})", where)


def _locate(lines: list[str], read: list[str], exc: Exception) -> InputError:
    return InputError(f"ssh_config ({', '.join(read)}): {exc}")


# ---------------------------------------------------------------------------------------------------- resolution


def resolve(
    name: str,
    config: SSHConfig,
    defaults: Defaults = Defaults(),
    *,
    address: str | None = None,
    port: int | None = None,
    user: str | None = None,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    proxy_jump: str | None = None,
    origin: str = "",
) -> Route:
    """Where host `name` (its inventory values given) is reached, as `ssh` would go there."""
    wanted = address or name
    options = config.lookup(wanted)
    keys: list[KeyFile] = []
    if identity_file:
        keys.append(KeyFile(os.path.expanduser(identity_file), f"identity_file of {origin or name}"))
    if defaults.private_key:
        keys.append(KeyFile(os.path.expanduser(defaults.private_key), "--private-key"))
    target = _hop(wanted, options, config, port=port, user=user or defaults.user or None,
                  local_user=defaults.local_user, keys=tuple(keys), known_hosts=known_hosts, where=origin or name)
    if proxy_jump is not None:
        spec: str | None = proxy_jump
        spec_from = f"proxy_jump of {origin or name}"
    else:
        spec = options.get("proxyjump")
        spec_from = f"ProxyJump for {wanted} in {', '.join(config.files)}"
    proxy_command = None
    jumps: tuple[Hop, ...] = ()
    if spec and spec.strip().lower() != "none":
        jumps = _jumps(spec, spec_from, config, defaults, known_hosts, target, seen=(wanted,))
    elif proxy_jump is None and options.get("proxycommand"):
        proxy_command = str(options["proxycommand"])
    return Route(target, jumps, proxy_command)


def _hop(name: str, options: Mapping[str, Any], config: SSHConfig, *, port: int | None, user: str | None,
         local_user: str, keys: tuple[KeyFile, ...], known_hosts: str | None, where: str) -> Hop:
    hostname = str(options.get("hostname") or name)
    if port is None:
        port = _port(options.get("port"), name, config) if options.get("port") else 22
    configured = tuple(KeyFile(os.path.expanduser(p), f"IdentityFile for {name} in {', '.join(config.files)}", False)
                       for p in options.get("identityfile", ()))
    all_keys = tuple({k.path: k for k in reversed((*keys, *configured))}.values())[::-1]  # first naming wins
    if known_hosts:
        user_files: tuple[str, ...] = (os.path.expanduser(known_hosts),)
    elif options.get("userknownhostsfile"):
        user_files = tuple(os.path.expanduser(p) for p in _words(str(options["userknownhostsfile"])) if p != "none")
    else:
        user_files = tuple(os.path.expanduser(p) for p in USER_KNOWN_HOSTS)
    if options.get("globalknownhostsfile"):
        global_files = tuple(os.path.expanduser(p) for p in _words(str(options["globalknownhostsfile"])) if p != "none")
    else:
        global_files = GLOBAL_KNOWN_HOSTS
    return Hop(
        name=name,
        hostname=hostname,
        port=port,
        user=user or str(options.get("user") or local_user),
        keys=all_keys,
        identities_only=str(options.get("identitiesonly", "no")).lower() == "yes",
        known_hosts=user_files,
        global_known_hosts=global_files,
        host_key_alias=str(options["hostkeyalias"]) if options.get("hostkeyalias") else None,
        default_keys=not all_keys,
    )


def _port(value: Any, name: str, config: SSHConfig) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise InputError(f"Port {value!r} for {name} in {', '.join(config.files)} is not a port number")
    return port


def parse_jump(text: str, spec_from: str) -> tuple[str | None, str, int | None]:
    """One hop of a ProxyJump list: ([user], host, [port])."""
    match = _HOP.match(text.strip())
    if not match:
        raise InputError(f"{spec_from}: {text!r} is not [user@]host[:port]")
    port = int(match.group("port")) if match.group("port") else None
    if port is not None and not 1 <= port <= 65535:
        raise InputError(f"{spec_from}: port {port} is out of range")
    return match.group("user"), match.group("v6") or match.group("host"), port


def _jumps(spec: str, spec_from: str, config: SSHConfig, defaults: Defaults, known_hosts: str | None,
           target: Hop, seen: tuple[str, ...]) -> tuple[Hop, ...]:
    hops: list[Hop] = []
    parts = [p for p in spec.split(",") if p.strip()]
    for i, part in enumerate(parts):
        user, host, port = parse_jump(part, spec_from)
        if i == 0 and host == seen[-1]:
            return ()  # a host that would jump through itself (`Host * ProxyJump bastion`, for bastion)
        if host in seen:
            raise InputError(f"{spec_from}: ProxyJump loop through {' -> '.join((*seen, host))}")
        options = config.lookup(host)
        hop = _hop(host, options, config, port=port, user=user, local_user=defaults.local_user, keys=(),
                   known_hosts=known_hosts, where=host)
        if (hop.hostname, hop.port) == (target.hostname, target.port):
            return ()
        if i == 0:
            # the first hop's own ProxyJump applies (ssh -J a,b,c runs `ssh -J a,b -W c`); the others' do not
            inner = options.get("proxyjump")
            if inner and str(inner).strip().lower() != "none":
                if len(seen) >= _MAX_JUMPS:
                    raise InputError(f"{spec_from}: more than {_MAX_JUMPS} jump hosts")
                hops.extend(_jumps(str(inner), f"ProxyJump for {host} in {', '.join(config.files)}", config,
                                   defaults, known_hosts, hop, (*seen, host)))
        hops.append(hop)
    return tuple(hops)
