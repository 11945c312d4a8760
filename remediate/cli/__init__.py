"""argv -> options -> api -> rendered report -> exit code. No domain logic; heavy imports are lazy."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

EXIT_FAILED = 1
EXIT_INVALID = 3
EXIT_INTERRUPTED = 130


class _Secrets:
    """The run's redactor, for error messages printed after loading (set once the inputs are loaded)."""

    def __init__(self) -> None:
        from ..core.redact import NO_SECRETS

        self.redactor = NO_SECRETS

    def text(self, text: str) -> str:
        """text, secrets masked."""
        return self.redactor.text(text)


_REDACT = _Secrets()


@contextlib.contextmanager
def _interruptible() -> Iterator[Any]:
    """SIGINT/SIGTERM stop the run through an Interrupt instead of an exception at a random point."""
    from ..engine.host import Interrupt

    interrupt = Interrupt()
    handler = lambda signum, frame: interrupt.trigger()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupt
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remediate",
        description="Declarative, previewable remediation of Docker Compose hosts over SSH.",
        epilog="exit codes: 0 ok/in sync, 1 failed/unreachable/audit trail unwritable or tampered, "
        "2 --check found changes, 3 invalid input, 4 verification pending, 130 interrupted",
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
    _why(apply)

    rb = sub.add_parser("rollback", help="restore the files a run changed, reload, and verify again (audited)")
    rb.add_argument("run_id", metavar="RUN_ID", help="the run to undo (see `remediate audit show`)")
    rb.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default: the one that run used)")
    rb.add_argument("--limit", metavar="HOSTS", help="only these hosts or groups")
    rb.add_argument("--check", action="store_true", help="show what would be restored; change nothing (exit 2)")
    rb.add_argument("--diff", action="store_true", help="show unified diffs of the restores")
    rb.add_argument("--force", action="store_true",
                    help="restore files changed since that run; use a changed playbook or an unverifiable trail")
    rb.add_argument("--no-verify", action="store_true",
                    help="skip the playbook's verifications (they may assert the fix that is being undone)")
    rb.add_argument("--format", choices=("text", "json"), default="text")
    rb.add_argument("--forks", type=int, default=10, metavar="N")
    rb.add_argument("--verify-timeout", default="15m", metavar="DURATION")
    rb.add_argument("--accept-new-host-keys", action="store_true")
    rb.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    _why(rb)

    aud = sub.add_parser("audit", help="verify or show the audit trail (STATE_DIR/audit.jsonl)")
    aud_sub = aud.add_subparsers(dest="audit_command", metavar="ACTION")
    aud_sub.required = True
    ver = aud_sub.add_parser("verify", help="exit 0 if the trail is intact, 1 naming the first record tampered with")
    ver.add_argument("--file", metavar="PATH", help="a trail other than the state directory's")
    show = aud_sub.add_parser("show", help="list runs, or show one run's records readably")
    show.add_argument("run_id", nargs="?", metavar="RUN_ID")
    show.add_argument("--file", metavar="PATH", help="a trail other than the state directory's")
    show.add_argument("--format", choices=("text", "json"), default="text")

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
    _why(diag)

    bk = sub.add_parser("backups", help="list or prune the backups runs keep on each host (BACKUP_DIR/RUN_ID/...)")
    bk_sub = bk.add_subparsers(dest="backups_command", metavar="ACTION")
    bk_sub.required = True
    bk_list = bk_sub.add_parser("list", help="per host: run directories with dates, sizes and files, and which a rollback needs")
    bk_prune = bk_sub.add_parser("prune", help="remove backups older than --older-than that no rollback needs (audited)")
    for p in (bk_list, bk_prune):
        p.add_argument("env", nargs="?", metavar="ENV", help="environment: inventory/ENV.yml (or -i)")
        p.add_argument("-i", "--inventory", metavar="FILE")
        p.add_argument("--limit", metavar="HOSTS")
        p.add_argument("--format", choices=("text", "json"), default="text")
        p.add_argument("--forks", type=int, default=10, metavar="N")
    bk_prune.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h")
    bk_prune.add_argument("--force", action="store_true",
                          help="also remove backups a rollback still needs, or use a trail that fails verification")
    bk_prune.add_argument("--check", action="store_true", help="show what would be removed; remove nothing (exit 2)")
    _why(bk_prune)

    from ..cli.drift import add_parsers as add_drift_parsers

    add_drift_parsers(sub)

    val = sub.add_parser("validate", help="check playbooks without contacting any host")
    val.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default inventory/ENV.yml)")
    p.add_argument("-p", "--playbook", action="append", default=[], metavar="PLAYBOOK", help="default playbooks/site.yml")
    p.add_argument("--limit", metavar="HOSTS", help="hosts or groups, comma-separated")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _why(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", metavar="TEXT", help="why this run happens (recorded in the audit trail)")
    p.add_argument("--change-ref", metavar="REF", help="change request or ticket (recorded in the audit trail)")


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '30d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 15m, 1h, 30d)") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `remediate` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    from ..core.audit import AuditError
    from ..core.errors import InputError

    try:
        if args.command == "apply":
            return _apply(args)
        if args.command == "rollback":
            return _rollback(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "inventory":
            return _inventory(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "diagnose":
            return _diagnose(args)
        if args.command == "backups":
            return _backups(args)
        if args.command in ("drift", "report"):
            from ..cli import drift as driftcli

            return driftcli.main(args)
    except InputError as exc:
        print(f"remediate: error: {_REDACT.text(str(exc))}", file=sys.stderr)
        return EXIT_INVALID
    except AuditError as exc:
        print(f"remediate: error: {_REDACT.text(str(exc))}; refusing to run: nothing was changed", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("remediate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command}")
    return EXIT_INVALID


def _extra_vars(pairs: list[str]) -> dict[str, object]:
    from ..core.errors import InputError

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
    from .. import api
    from ..core import report
    from ..core.errors import InputError
    from ..engine.host import RunOptions

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
    _REDACT.redactor = loaded.redactor
    events = report.TextEvents(sys.stdout, diff=args.diff, redactor=loaded.redactor) if args.format == "text" else None
    why = api.Why(args.reason, args.change_ref)
    run_id = api.new_run_id()
    audit = api.start_audit(loaded, options, run_id, why)
    with _interruptible() as interrupt:
        result = api.execute(loaded, options, events, audit=audit, interrupt=interrupt)
    return _print_report(result, args.format)


def _print_report(result: Any, fmt: str) -> int:
    from ..core import report

    if fmt == "json":
        print(report.to_json(result))
    else:
        print(report.recap(result))
    if result.interrupted:
        print("remediate: interrupted", file=sys.stderr)
    return int(result.exit_code())


def _rollback(args: argparse.Namespace) -> int:
    from .. import api
    from ..core import report
    from ..core.errors import InputError
    from ..engine.host import RunOptions

    try:
        verify_timeout = parse_duration(args.verify_timeout)
    except ValueError as exc:
        raise InputError(f"--verify-timeout: {exc}") from None
    options = RunOptions(
        check=args.check, diff=args.diff, forks=max(1, args.forks), limit=args.limit, verify_timeout=verify_timeout,
        connect_timeout=args.connect_timeout, accept_new_host_keys=args.accept_new_host_keys,
    )
    loaded = api.prepare_rollback(args.run_id, options, args.force, inventory=args.inventory, verify=not args.no_verify)
    _REDACT.redactor = loaded.redactor
    events = report.TextEvents(sys.stdout, diff=args.diff, redactor=loaded.redactor) if args.format == "text" else None
    audit = api.start_rollback_audit(loaded, options, args.run_id, args.force, api.Why(args.reason, args.change_ref))
    with _interruptible() as interrupt:
        result = api.execute(loaded, options, events, audit=audit, interrupt=interrupt, mode=api.rollback_mode(options))
    return _print_report(result, args.format)


def _audit(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..core import audit

    path = Path(args.file) if args.file else audit.AuditLog.default().path
    if args.audit_command == "verify":
        verdict = audit.verify(path)
        if verdict.ok:
            print(f"{path}: intact, {verdict.records} record(s)")
            return 0
        print(f"{path}: TAMPERED: {verdict.problem}")
        return EXIT_FAILED
    records = audit.read_records(path)
    if args.run_id:
        records = audit.run_records(records, args.run_id)
        if not records:
            from ..core.errors import InputError

            raise InputError(f"no run {args.run_id!r} in the audit trail {path}")
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        print(audit.render_run(records) if args.run_id else audit.render_runs(records))
    return 0


def _inventory(args: argparse.Namespace) -> int:
    import json

    from .. import api
    from ..engine.host import RunOptions
    from ..inputs.inventory import load_inventory

    inv = load_inventory(api.inventory_path(args.env, args.inventory))
    redactor = api.secrets_of(inv, (), RunOptions())
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
        print(json.dumps(redactor.data(doc), indent=2, default=str))
        return 0
    lines = [f"inventory {inv.path}"]
    for name, host in doc["hosts"].items():
        target = "local" if host["connection"] == "local" else f"{host['user'] or ''}@{host['address']}:{host['port']}"
        lines.append(f"{name}  {target}")
        for key, value in sorted(host["vars"].items()):
            lines.append(f"    {key} = {value!r}")
    for group, members in doc["groups"].items():
        lines.append(f"group {group}: {', '.join(members)}")
    print(redactor.text("\n".join(lines)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ..inputs import resources
    from ..inputs.playbook import load_playbook

    for name in args.playbooks:
        path = resources.find("playbooks", name)
        plays = load_playbook(path)
        steps = sum(len(p.steps) + len(p.handlers) for p in plays)
        print(f"{path}: ok ({len(plays)} play(s), {steps} step(s))")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from .. import api, diagnose
    from ..engine.host import RunOptions
    from ..inputs.inventory import load_inventory
    from ..core.errors import Location

    from pathlib import Path

    from ..core.audit import AuditLog, sha256_file

    inv = load_inventory(api.inventory_path(args.env, args.inventory))
    hosts = inv.select(args.limit or "all", "--limit", Location(inv.path))
    options = RunOptions()
    redactor = api.secrets_of(inv, (), options)
    _REDACT.redactor = redactor
    audit = AuditLog.default().start(
        api.new_run_id(), "diagnose", redactor, why={"reason": args.reason, "change_ref": args.change_ref},
        inventory={"path": str(Path(inv.path).resolve()), "sha256": sha256_file(inv.path)},
        hosts=[h.name for h in hosts], playbooks=[],
    )
    results = diagnose.diagnose(inv, hosts, lambda h: api.make_transport(h, options), args.forks, audit)
    code = diagnose.exit_code(results)
    audit.record("run_end", exit_code=code, summary={"hosts": len(results), "problems": sum(bool(r.problems) for r in results),
                                                     "errors": sum(bool(r.error) for r in results)}, interrupted=False)
    text = diagnose.render_json(results) if args.format == "json" else diagnose.render_text(results)
    print(redactor.text(text))
    return code


def _backups(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from .. import api, backups
    from ..core import audit
    from ..core.errors import InputError, Location
    from ..engine.host import RunOptions
    from ..inputs.inventory import load_inventory

    if not args.env and not args.inventory:
        raise InputError(f"backups {args.backups_command}: name an ENV (inventory/ENV.yml) or -i FILE")
    if args.forks < 1:
        raise InputError("--forks must be at least 1")
    inv = load_inventory(api.inventory_path(args.env, args.inventory))
    hosts = inv.select(args.limit or "all", "--limit", Location(inv.path))
    options = RunOptions()
    redactor = api.secrets_of(inv, (), options)
    _REDACT.redactor = redactor
    log = audit.AuditLog.default()
    trail = backups.TrailView.of(audit.read_records(log.path))
    now = time.time()
    connect = lambda h: api.make_transport(h, options)  # noqa: E731
    if args.backups_command == "list":
        outcomes = backups.each_host(hosts, connect, lambda h, t: backups.list_host(h, t, trail, now), args.forks)
        print(redactor.text(backups.to_json(outcomes) if args.format == "json" else backups.render_list(outcomes)))
        return EXIT_FAILED if any(o.error for o in outcomes) else 0
    try:
        older_than = parse_duration(args.older_than)
    except ValueError as exc:
        raise InputError(f"--older-than: {exc}") from None
    verdict = audit.verify(log.path)
    if not verdict.ok and not args.force:
        raise InputError(f"the audit trail {log.path} fails verification ({verdict.problem}); it cannot be trusted "
                         "to tell which backups a rollback needs (--force to prune anyway)")
    run = log.start(
        api.new_run_id(), "prune", redactor, why={"reason": args.reason, "change_ref": args.change_ref},
        inventory={"path": str(Path(inv.path).resolve()), "sha256": audit.sha256_file(inv.path)},
        hosts=[h.name for h in hosts], playbooks=[],
        options={"check": args.check, "force": args.force, "older_than": args.older_than, "limit": args.limit},
    )
    outcomes = backups.each_host(
        hosts, connect,
        lambda h, t: backups.prune_host(h, t, trail, now, older_than, args.force, args.check, run), args.forks)
    code = backups.prune_exit_code(outcomes, args.check)
    run.record("run_end", exit_code=code, interrupted=False, summary={
        "hosts": len(outcomes), "removed": sum(len(o.removed) for o in outcomes),
        "failed": sum(bool(o.error) for o in outcomes)})
    text = backups.to_json(outcomes) if args.format == "json" else backups.render_prune(outcomes, args.check, older_than)
    print(redactor.text(text))
    return code
