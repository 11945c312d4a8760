"""`remediate audit verify|show`: the audit trail, checked or shown."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..core import audit
from ..core.errors import InputError
from ..core.results import ExitCode
from ..core.state import StateDir
from . import common


def add(sub: Any) -> None:
    """The audit parser and its actions."""
    aud = sub.add_parser("audit", help="verify or show the audit trail (STATE_DIR/audit.jsonl)")
    aud_sub = aud.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=common.Parser)
    aud_sub.required = True
    ver = aud_sub.add_parser("verify", help="exit 0 if the trail is intact, 1 naming the first record tampered with")
    ver.add_argument("--file", metavar="PATH", help="a trail other than the state directory's")
    show = aud_sub.add_parser("show", help="list runs, or show one run's records readably")
    show.add_argument("run_id", nargs="?", metavar="RUN_ID")
    show.add_argument("--file", metavar="PATH", help="a trail other than the state directory's")
    common.output(show)
    aud.set_defaults(handle=audit_command)


def audit_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """verify: intact or the first record tampered with; show: the runs, or one run's records."""
    path = Path(args.file) if args.file else state.audit
    if args.audit_command == "verify":
        verdict = audit.verify(path)
        if verdict.ok:
            print(f"{path}: intact, {verdict.records} record(s)")
            return ExitCode.OK
        print(f"{path}: TAMPERED: {verdict.problem}")
        return ExitCode.FAILED
    records = audit.read_records(path)
    if args.run_id:
        records = audit.run_records(records, args.run_id)
        if not records:
            raise InputError(f"no run {args.run_id!r} in the audit trail {path}")
    if args.format == "json":
        print(json.dumps(records, indent=2))
    else:
        print(audit.render_run(records) if args.run_id else audit.render_runs(records))
    return ExitCode.OK
