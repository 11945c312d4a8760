"""argv -> options -> api -> rendered report -> exit code. No domain logic; heavy imports are lazy."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_INVALID = 3
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediate",
        description="Declarative, previewable remediation of Docker Compose hosts over SSH.",
        epilog="exit codes: 0 ok/in sync, 1 failed/unreachable, 2 --check found changes, 3 invalid input, "
        "4 verification pending, 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    apply = sub.add_parser("apply", help="run playbooks against an environment's hosts")
    apply.add_argument("env", metavar="ENV", help="environment: inventory/ENV.yml")
    _common(apply)
    apply.add_argument("--check", action="store_true", help="plan and show; change nothing (exit 2 if changes are pending)")
    apply.add_argument("--diff", action="store_true", help="show unified diffs of file changes")
    apply.add_argument("--forks", type=int, default=10, metavar="N", help="hosts in parallel (default 10)")
    apply.add_argument("-e", "--extra-vars", action="append", default=[], metavar="KEY=VALUE", help="override a variable")
    apply.add_argument("--tags", action="append", default=[], help="run only steps with these tags")
    apply.add_argument("--skip-tags", action="append", default=[], help="skip steps with these tags")
    apply.add_argument("--verify-timeout", default="15m", metavar="DURATION", help="bound on verification waits (default 15m)")
    apply.add_argument("--accept-new-host-keys", action="store_true", help="trust and record unknown host keys (never changed ones)")
    apply.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")

    inv = sub.add_parser("inventory", help="show an environment's resolved hosts and variables")
    inv.add_argument("env", metavar="ENV")
    inv.add_argument("-i", "--inventory", metavar="FILE")
    inv.add_argument("--format", choices=("text", "json"), default="text")

    diag = sub.add_parser("diagnose", help="read-only diagnosis of Celery beat, tasks and workers on each host")
    diag.add_argument("env", metavar="ENV")
    diag.add_argument("-i", "--inventory", metavar="FILE")
    diag.add_argument("--limit", metavar="HOSTS")
    diag.add_argument("--format", choices=("text", "json"), default="text")
    diag.add_argument("--forks", type=int, default=10, metavar="N")

    from .driftcli import add_parsers as add_drift_parsers

    add_drift_parsers(sub)

    val = sub.add_parser("validate", help="check playbooks without contacting any host")
    val.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default inventory/ENV.yml)")
    p.add_argument("-p", "--playbook", action="append", default=[], metavar="PLAYBOOK", help="default playbooks/site.yml")
    p.add_argument("--limit", metavar="HOSTS", help="hosts or groups, comma-separated")
    p.add_argument("--format", choices=("text", "json"), default="text")


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 15m, 1h)") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `remediate` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    from .errors import InputError

    try:
        if args.command == "apply":
            return _apply(args)
        if args.command == "inventory":
            return _inventory(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command in ("drift", "report"):
            from . import driftcli

            return driftcli.main(args)
    except InputError as exc:
        print(f"remediate: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("remediate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command}")
    return EXIT_INVALID


def _extra_vars(pairs: list[str]) -> dict[str, object]:
    from .errors import InputError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"-e expects KEY=VALUE with an identifier KEY, not {pair!r}")
        out[key] = _scalar(value)
    return out


def _scalar(text: str) -> object:
    """-e values: YAML scalars (10 -> int, true -> bool), anything else stays the string given."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


def _apply(args: argparse.Namespace) -> int:
    from . import api, report
    from .errors import InputError
    from .executor import RunOptions

    try:
        verify_timeout = parse_duration(args.verify_timeout)
    except ValueError as exc:
        raise InputError(f"--verify-timeout: {exc}") from None
    if args.forks < 1:
        raise InputError("--forks must be at least 1")
    options = RunOptions(
        check=args.check,
        diff=args.diff,
        forks=args.forks,
        limit=args.limit,
        tags=tuple(args.tags),
        skip_tags=tuple(args.skip_tags),
        extra_vars=_extra_vars(args.extra_vars),
        verify_timeout=verify_timeout,
        connect_timeout=args.connect_timeout,
        accept_new_host_keys=args.accept_new_host_keys,
    )
    loaded = api.load(args.env, tuple(args.playbook), options, args.inventory)
    events = report.TextEvents(sys.stdout, diff=args.diff) if args.format == "text" else None
    result = api.execute(loaded, options, events)
    if args.format == "json":
        print(report.to_json(result))
    else:
        print(report.recap(result))
    return int(result.exit_code())


def _inventory(args: argparse.Namespace) -> int:
    import json

    from . import api
    from .inventory import load_inventory

    inv = load_inventory(api.inventory_path(args.env, args.inventory))
    doc = {
        "path": inv.path,
        "hosts": {
            h.name: {
                "address": h.address, "port": h.port, "user": h.user, "connection": h.connection,
                "identity_file": h.identity_file, "known_hosts": h.known_hosts, "vars": dict(h.vars),
            }
            for h in inv.hosts
        },
        "groups": {g: list(m) for g, m in inv.groups.items()},
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2, default=str))
        return 0
    print(f"inventory {inv.path}")
    for name, host in doc["hosts"].items():
        target = "local" if host["connection"] == "local" else f"{host['user'] or ''}@{host['address']}:{host['port']}"
        print(f"{name}  {target}")
        for key, value in sorted(host["vars"].items()):
            print(f"    {key} = {value!r}")
    for group, members in doc["groups"].items():
        print(f"group {group}: {', '.join(members)}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from . import resources
    from .playbook import load_playbook

    for name in args.playbooks:
        path = resources.find("playbooks", name)
        plays = load_playbook(path)
        steps = sum(len(p.steps) + len(p.handlers) for p in plays)
        print(f"{path}: ok ({len(plays)} play(s), {steps} step(s))")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from . import api, diagnose
    from .executor import RunOptions
    from .inventory import load_inventory
    from .errors import Location

    inv = load_inventory(api.inventory_path(args.env, args.inventory))
    hosts = inv.select(args.limit or "all", "--limit", Location(inv.path))
    options = RunOptions()
    results = diagnose.diagnose(inv, hosts, lambda h: api.make_transport(h, options), args.forks)
    print(diagnose.render_json(results) if args.format == "json" else diagnose.render_text(results))
    return diagnose.exit_code(results)
