"""`remediate apply` and `remediate rollback`: runs that change hosts (or, with --check, show what they would)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import api
from ..core import report
from ..core.results import ExitCode, RunReport
from ..core.state import StateDir, sweep_temp_files
from . import common


def add(sub: Any) -> None:
    """The apply and rollback parsers."""
    apply = sub.add_parser("apply", help="run playbooks against an environment's hosts")
    common.targets(apply)
    common.playbooks(apply)
    common.output(apply)
    apply.add_argument("--check", action="store_true", help="plan and show; change nothing (exit 2 if changes are pending)")
    apply.add_argument("--diff", action="store_true", help="show unified diffs of file changes")
    common.variables(apply)
    apply.add_argument("--tags", action="append", default=[], help="run only steps with these tags")
    apply.add_argument("--skip-tags", action="append", default=[], help="skip steps with these tags")
    common.verification(apply)
    common.connection(apply)
    common.exclusive(apply)
    common.why(apply)
    apply.set_defaults(handle=apply_command)

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
    common.output(rb)
    common.verification(rb)
    common.connection(rb)
    common.exclusive(rb)
    common.why(rb)
    rb.set_defaults(handle=rollback_command)


def apply_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """apply [--check]: load, run with live output, print the recap or the JSON document."""
    options = common.run_options(args)
    _sweep(state)
    loaded = api.load(args.env, tuple(args.playbook), options, args.inventory)
    with common.masked(loaded.redactor), common.interruptible() as interrupt:
        result = api.apply(loaded, options, state, _events(args, loaded), interrupt, common.why_of(args))
    return _print(result, args.format)


def rollback_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """rollback RUN_ID: the plays restoring what that run changed, run like apply."""
    options = common.run_options(args)
    _sweep(state)
    loaded = api.load_rollback(args.run_id, options, state, args.force, args.inventory, not args.no_verify)
    with common.masked(loaded.redactor), common.interruptible() as interrupt:
        result = api.rollback(loaded, options, state, args.run_id, args.force, _events(args, loaded), interrupt,
                              common.why_of(args))
    return _print(result, args.format)


def _sweep(state: StateDir) -> None:
    for what in sweep_temp_files(state):
        print(f"remediate: removed what a killed run left in the state directory: {what}", file=sys.stderr)


def _events(args: argparse.Namespace, loaded: api.Loaded) -> report.TextEvents | None:
    return report.TextEvents(sys.stdout, diff=args.diff, redactor=loaded.redactor) if args.format == "text" else None


def _print(result: RunReport, fmt: str) -> ExitCode:
    print(report.to_json(result) if fmt == "json" else report.recap(result))
    if result.interrupted:
        print("remediate: interrupted", file=sys.stderr)
    return result.exit_code()
