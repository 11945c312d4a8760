"""`remediate inventory` and `remediate validate`: the inputs, resolved or checked, without contacting a host."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import api
from ..core.results import ExitCode
from ..core.state import StateDir
from ..inputs import resources
from . import common


def add(sub: Any) -> None:
    """The inventory and validate parsers."""
    inv = sub.add_parser("inventory", help="show an environment's resolved hosts and variables")
    inv.add_argument("env", metavar="ENV")
    inv.add_argument("-i", "--inventory", metavar="FILE")
    common.output(inv)
    common.ssh_flags(inv)
    inv.set_defaults(handle=inventory_command)
    val = sub.add_parser("validate", help="check playbooks without contacting any host")
    val.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    val.set_defaults(handle=validate_command)


def inventory_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """Every host with its address and variables, and the groups; secrets masked."""
    options = common.run_options(args)
    loaded = api.load_hosts(args.env, options, args.inventory)
    inv, redactor = loaded.inventory, loaded.redactor
    routes = api.ssh_routes(inv.hosts, options)
    doc: dict[str, Any] = {
        "path": inv.path,
        "hosts": {
            h.name: {
                "address": h.address, "port": h.port, "user": h.user, "connection": h.connection,
                "identity_file": h.identity_file, "known_hosts": h.known_hosts, "proxy_jump": h.proxy_jump,
                "become": h.become, "become_user": h.become_user,
                # where the connection goes, as ssh_config, -u and --private-key make it
                "ssh": routes.get(h.name), "vars": dict(h.vars),
            }
            for h in inv.hosts
        },
        "groups": {g: list(m) for g, m in inv.groups.items()},
    }
    if args.format == "json":
        print(json.dumps(redactor.data(doc), indent=2, default=str))
        return ExitCode.OK
    lines = [f"inventory {inv.path}"]
    for name, host in doc["hosts"].items():
        target = "local" if host["connection"] == "local" else host["ssh"]
        lines.append(f"{name}  {target}")
        for key, value in sorted(host["vars"].items()):
            lines.append(f"    {key} = {value!r}")
    for group, members in doc["groups"].items():
        lines.append(f"group {group}: {', '.join(members)}")
    print(redactor.text("\n".join(lines)))
    return ExitCode.OK


def validate_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """Each playbook loaded and checked against the step kinds."""
    for name in args.playbooks:
        path = resources.find("playbooks", name)
        plays = api.load_playbook(path)
        steps = sum(len(p.steps) + len(p.handlers) for p in plays)
        print(f"{path}: ok ({len(plays)} play(s), {steps} step(s))")
    return ExitCode.OK
