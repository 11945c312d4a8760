"""`remediate diagnose`: the read-only pass per host, shown as text or JSON."""
from __future__ import annotations

import argparse
from typing import Any

from .. import api
from .. import diagnose as dg
from ..core.results import ExitCode
from ..core.state import StateDir
from . import common


def add(sub: Any) -> None:
    """The diagnose parser."""
    diag = sub.add_parser("diagnose", help="read-only diagnosis of Celery beat, tasks and workers on each host")
    common.targets(diag)
    common.output(diag)
    common.connection(diag)
    common.trail(diag)
    common.why(diag)
    diag.set_defaults(handle=diagnose_command)


def diagnose_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """Diagnose the selected hosts (audited); exit 0 healthy, 2 problems, 1 errors."""
    options = common.run_options(args)
    loaded = api.load_hosts(args.env, options, args.inventory)
    with common.masked(loaded.redactor):
        report = api.diagnose(loaded, options, state, common.why_of(args))
    text = dg.render_json(report) if args.format == "json" else dg.render_text(report)
    print(loaded.redactor.text(text))
    return report.exit_code()
