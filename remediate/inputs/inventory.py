"""Inventory: YAML -> frozen, validated hosts and groups, before any host is contacted."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import schema
from ..core.errors import InputError, Location
from .yamlio import YMap, load_file

HOST_KEYS = ("address", "port", "user", "identity_file", "known_hosts", "proxy_jump", "connection", "become",
             "become_user", "vars")


@dataclass(frozen=True)
class Host:
    """One managed host and its merged variables."""

    name: str
    # what `ssh` is given: an address, a name or an ssh_config alias (None: the host's name); the values not
    # given here come from ssh_config, -u/--private-key, or OpenSSH's defaults (transport/sshconfig.py)
    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    connection: str = "ssh"
    vars: Mapping[str, Any] = field(default_factory=dict)
    where: Location = Location("<inventory>")
    proxy_jump: str | None = None  # OpenSSH's -J: [user@]host[:port][,...], or none
    become: bool | None = None  # sudo for every step on this host (a play's or step's `become` wins)
    become_user: str | None = None

    @property
    def is_local(self) -> bool:
        """Runs on this machine without SSH."""
        return self.connection == "local"


@dataclass(frozen=True)
class Inventory:
    """Hosts and groups of one environment."""

    path: str
    hosts: tuple[Host, ...]
    groups: Mapping[str, tuple[str, ...]]
    secret_vars: tuple[str, ...] = ()

    def host(self, name: str) -> Host:
        """The host of that name."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def select(self, pattern: str, what: str, at: Location) -> tuple[Host, ...]:
        """Hosts matching 'all', a group or host names, comma- or colon-separated."""
        names: list[str] = []
        known = {h.name for h in self.hosts}
        for part in filter(None, (p.strip() for p in pattern.replace(":", ",").split(","))):
            if part == "all":
                names.extend(h.name for h in self.hosts)
            elif part in self.groups:
                names.extend(self.groups[part])
            elif part in known:
                names.append(part)
            else:
                hint = schema.suggest(part, [*known, *self.groups, "all"])
                raise InputError(f"{what}: no host or group {part!r} in {self.path}{hint}", at)
        by_name = {h.name: h for h in self.hosts}
        return tuple(by_name[n] for n in dict.fromkeys(names))


def load_inventory(path: Path) -> Inventory:
    """Load and validate an inventory file."""
    data = schema.require_map(load_file(path), "an inventory", Location(str(path), 1))
    schema.check_keys(data, ("vars", "hosts", "groups", "secret_vars"), "the inventory", required=("hosts",))
    shared = schema.get_vars(data, "vars")
    hosts_data = data["hosts"]
    if not isinstance(hosts_data, YMap) or not hosts_data:
        raise InputError("'hosts' must be a non-empty mapping of host names", data.loc("hosts"), "hosts")
    hosts = []
    for name, spec in hosts_data.items():
        at = hosts_data.loc(name)
        spec = schema.require_map(spec if spec is not None else {}, f"host {name!r}", at)
        schema.check_keys(spec, HOST_KEYS, f"host {name!r}")
        connection = schema.get_str(spec, "connection", f"host {name!r}", "ssh") or "ssh"
        if connection not in ("ssh", "local"):
            raise InputError(f"connection must be 'ssh' or 'local', not {connection!r}", spec.loc("connection"))
        address = schema.get_str(spec, "address", f"host {name!r}")
        port = schema.get_int(spec, "port", 22, minimum=1) if spec.get("port") is not None else None
        if port is not None and port > 65535:
            raise InputError(f"port {port} is out of range", spec.loc("port"), "port")
        host_vars = {**shared, **schema.get_vars(spec, "vars")}
        hosts.append(
            Host(
                name=name,
                address=address,
                port=port,
                user=schema.get_str(spec, "user", f"host {name!r}"),
                identity_file=_expand(schema.get_str(spec, "identity_file", f"host {name!r}")),
                known_hosts=_expand(schema.get_str(spec, "known_hosts", f"host {name!r}")),
                connection=connection,
                vars=MappingProxyType(host_vars),
                where=at,
                proxy_jump=schema.get_str(spec, "proxy_jump", f"host {name!r}"),
                become=schema.get_flag(spec, "become"),
                become_user=schema.get_user(spec, "become_user", f"host {name!r}"),
            )
        )
    groups: dict[str, tuple[str, ...]] = {}
    groups_data = data.get("groups") or {}
    if not isinstance(groups_data, dict):
        raise InputError("'groups' must map group names to lists of hosts", data.loc("groups"), "groups")
    names = {h.name for h in hosts}
    for group, members in groups_data.items():
        at = groups_data.loc(group) if isinstance(groups_data, YMap) else data.loc("groups")
        if group == "all" or group in names:
            raise InputError(f"group name {group!r} clashes with 'all' or a host name", at, "groups")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InputError(f"group {group!r} must be a list of host names", at, "groups")
        for member in members:
            if member not in names:
                raise InputError(f"group {group!r} names unknown host {member!r}{schema.suggest(member, names)}", at)
        groups[group] = tuple(members)
    secret_vars = schema.get_str_list(data, "secret_vars")
    return Inventory(str(path), tuple(hosts), MappingProxyType(groups), secret_vars)


def _expand(value: str | None) -> str | None:
    return os.path.expanduser(value) if value else value
