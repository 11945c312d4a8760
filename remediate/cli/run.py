"""`remediate apply` and `remediate rollback`: runs that change hosts (or, with --check, show what they would)."""
from __future__ import annotations

import argparse
import sys
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..core import report
from ..core.results import ExitCode, RunReport
from ..core.state import StateDir, sweep_temp_files
from . import common, output

if TYPE_CHECKING:  # the handlers import api when they run: `remediate --help` stays light
    from .. import api


def add(sub: Any) -> None:
    """The apply and rollback parsers."""
    apply = sub.add_parser("apply", help="run playbooks against an environment's hosts")
    common.targets(apply)
    common.playbooks(apply)
    common.output(apply)
    common.mode(apply)
    common.variables(apply)
    common.selection(apply)
    common.listing(apply)
    common.verification(apply)
    common.connection(apply)
    common.verbosity(apply)
    common.exclusive(apply)
    common.why(apply)
    apply.set_defaults(handle=apply_command)

    rb = sub.add_parser("rollback", help="restore the files a run changed, reload, and verify again (audited)")
    rb.add_argument("run_id", metavar="RUN_ID", help="the run to undo (see `remediate audit show`)")
    rb.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default: the one that run used)")
    rb.add_argument("-l", "--limit", metavar="PATTERN", help="only these hosts or groups (Ansible patterns)")
    common.mode(rb, check="show what would be restored; change nothing (exit 2)", diff="show unified diffs of the restores")
    rb.add_argument("--force", action="store_true",
                    help="restore files changed since that run; use a changed playbook or an unverifiable trail")
    rb.add_argument("--no-verify", action="store_true",
                    help="skip the playbook's verifications (they may assert the fix that is being undone)")
    common.output(rb)
    common.verification(rb)
    common.connection(rb)
    common.verbosity(rb)
    common.exclusive(rb)
    common.why(rb)
    rb.set_defaults(handle=rollback_command)


def apply_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """apply [--check]: load, run with live output, print the recap or the JSON document."""
    from .. import api

    options = common.run_options(args)
    _sweep(state)
    loaded = api.load(args.env, tuple(args.playbook), options, args.inventory)
    if args.list_hosts or args.list_tasks:
        print(loaded.redactor.text(common.listing_text(loaded, options, args.list_hosts, args.list_tasks)))
        return ExitCode.OK
    with common.masked(loaded.redactor), common.interruptible() as interrupt:
        with _events(args, loaded) as events:
            result = api.apply(loaded, options, state, events, interrupt, common.why_of(args))
    return _print(result, args)


def rollback_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """rollback RUN_ID: the plays restoring what that run changed, run like apply."""
    from .. import api

    options = common.run_options(args)
    _sweep(state)
    loaded = api.load_rollback(args.run_id, options, state, args.force, args.inventory, not args.no_verify)
    with common.masked(loaded.redactor), common.interruptible() as interrupt:
        with _events(args, loaded) as events:
            result = api.rollback(loaded, options, state, args.run_id, args.force, events, interrupt,
                                  common.why_of(args))
    return _print(result, args)


def _sweep(state: StateDir) -> None:
    for what in sweep_temp_files(state):
        print(f"remediate: removed what a killed run left in the state directory: {what}", file=sys.stderr)


def _events(args: argparse.Namespace, loaded: api.Loaded) -> AbstractContextManager[report.TextEvents | None]:
    return output.live_events(args.format == "text", args.diff, args.verbosity, loaded.redactor)


def _print(result: RunReport, args: argparse.Namespace) -> ExitCode:
    print(report.to_json(result, args.verbosity) if args.format == "json" else report.recap(result))
    if result.interrupted:
        print("remediate: interrupted", file=sys.stderr)
    return result.exit_code()
