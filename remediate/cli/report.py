"""`remediate report ENV --html FILE`: recorded drift history as one self-contained page."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .. import api
from ..core.results import ExitCode
from ..core.state import StateDir
from ..drift import history
from ..drift.model import PLAYBOOK_PREFIX, playbook_check_name
from ..inputs import resources
from .drift import window


def add(sub: Any) -> None:
    """The report parser."""
    report = sub.add_parser(
        "report", help="render recorded drift history as one self-contained HTML page",
        description="The runs of one check set (the playbooks a run checked, with or without health checks): by "
                    "default the set of the newest run; -p/--no-health select another, as `remediate drift` takes them.",
    )
    report.add_argument("env", metavar="ENV")
    report.add_argument("--html", required=True, metavar="FILE", help="where to write the page")
    report.add_argument("--last", type=int, default=50, metavar="N", help="the newest N runs (default 50)")
    report.add_argument("--since", metavar="WHEN", help="runs started since WHEN (2026-11-24, 2026-11-24T22:00Z, "
                                                        "or an age: 90m, 24h, 7d)")
    report.add_argument("-p", "--playbook", action="append", default=[], metavar="PLAYBOOK",
                        help="the runs of these playbooks (as given to drift)")
    report.add_argument("--no-health", action="store_true", help="the runs made with --no-health")
    report.set_defaults(handle=report_command)


def report_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """Write the page of one check set's runs (replaced whole or not at all)."""
    since, said = window(args)
    sets = history.check_sets(args.env, state.history, since=since)
    selection: tuple[str, ...] = ()
    chosen: history.CheckSet | None
    if args.playbook or args.no_health:
        chosen = _check_set(args.playbook, not args.no_health)
        selection = (*(f"-p {p}" for p in args.playbook), *(("--no-health",) if args.no_health else ()))
    else:
        chosen = sets[0].check_set if sets else None
    stored = history.runs(args.env, args.last, state.history, since=since, check_set=chosen) if chosen else ()
    target = Path(args.html)
    from ..drift import html  # here: the page's module (and Jinja2) weighs on every other command's start

    page = html.render(args.env, stored, others=sets, window=said, selection=selection)
    # the page replaces the old one whole or not at all (a browser or a web server may be reading it)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    what = f", {chosen.label()}" if chosen else ""
    print(f"wrote {target} ({len(stored)} run(s) of {args.env}{what})")
    return ExitCode.OK


def _check_set(playbooks: list[str], health: bool) -> history.CheckSet:
    """The check set `remediate drift -p ... [--no-health]` records: the playbook checks its files yield."""
    paths = [resources.find("playbooks", p) for p in (playbooks or ["site"])]
    names = {playbook_check_name(s.where.path) for path in paths for play in api.load_playbook(path) for s in play.steps}
    return history.CheckSet(tuple(sorted(n[len(PLAYBOOK_PREFIX):] for n in names)), health)
