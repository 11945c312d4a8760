"""`remediate backups list|prune`: the backups runs keep on each host, and their retention."""
from __future__ import annotations

import argparse
from typing import Any

from .. import api
from ..core.errors import InputError
from ..core.results import ExitCode
from ..core.state import StateDir
from . import common


def add(sub: Any) -> None:
    """The backups parser and its actions."""
    bk = sub.add_parser("backups", help="list or prune the backups runs keep on each host (BACKUP_DIR/RUN_ID/...)")
    bk_sub = bk.add_subparsers(dest="backups_command", metavar="ACTION", parser_class=common.Parser)
    bk_sub.required = True
    bk_list = bk_sub.add_parser("list", help="per host: run directories with dates, sizes and files, and which a rollback needs")
    bk_prune = bk_sub.add_parser("prune", help="remove backups older than --older-than that no rollback needs (audited)")
    for p in (bk_list, bk_prune):
        common.targets(p, env="optional")
        common.output(p)
        common.connection(p)
    bk_prune.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h")
    bk_prune.add_argument("--force", action="store_true",
                          help="also remove backups a rollback still needs, or use a trail that fails verification")
    bk_prune.add_argument("--check", action="store_true", help="show what would be removed; remove nothing (exit 2)")
    common.exclusive(bk_prune)
    common.why(bk_prune)
    bk.set_defaults(handle=backups_command)


def backups_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """list: what each host keeps and why; prune: remove what no rollback needs (--check: say what would go)."""
    if not args.env and not args.inventory:
        raise InputError(f"backups {args.backups_command}: name an ENV (inventory/ENV.yml) or -i FILE")
    options = common.run_options(args)
    loaded = api.load_hosts(args.env, options, args.inventory)
    with common.masked(loaded.redactor):
        if args.backups_command == "list":
            report = api.backups_list(loaded, options, state)
        else:
            older_than = common.duration(args.older_than, "--older-than")
            report = api.backups_prune(loaded, options, state, older_than, args.force, common.why_of(args),
                                       args.older_than)
    print(loaded.redactor.text(report.render(args.format)))
    return report.exit_code()
