"""argv -> options -> api -> rendered report -> exit code. Parsing and rendering only; nothing in the package
imports this folder. One module per command (each adds its parser and handles its arguments); what they share
is in common.py."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from ..core.errors import RemediateError
from ..core.results import ExitCode
from ..core.state import StateDir
from . import audit, backups, diagnose, drift, inputs, report, run
from .common import Failed, Parser, report_error

# in the order `remediate --help` lists them
COMMANDS = (run, audit, inputs, diagnose, backups, drift, report)


def parser() -> Parser:
    """The whole command line."""
    top = Parser(
        prog="remediate",
        description="Declarative, previewable remediation of Docker Compose hosts over SSH.",
        epilog="exit codes: 0 ok/in sync, 1 failed/unreachable/audit trail unwritable or tampered, "
        "2 --check found changes, 3 invalid input (usage errors too), 4 verification pending, 130 interrupted",
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.add(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `remediate` console script."""
    args = parser().parse_args(argv)
    try:
        # the state directory is resolved here, once, and handed to each command
        return int(args.handle(args, StateDir.from_env()))
    except Failed as exc:
        return int(report_error(exc.error, exc.redactor))
    except RemediateError as exc:
        return int(report_error(exc))
    except KeyboardInterrupt:
        print("remediate: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
