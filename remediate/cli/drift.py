"""`remediate drift`: check (and --fix), record, notify and print; `drift history`; `--every` in the foreground;
`--install`/`--uninstall` a scheduled job."""
from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from .. import api
from ..core import report
from ..core.errors import InputError
from ..core.options import RunOptions
from ..core.results import ExitCode
from ..core.state import StateDir
from ..drift import history, junit, notify, schedule
from ..drift import text as drift_text
from ..engine.control import Interrupt
from ..inputs import resources
from ..inputs.load import Loaded, inventory_path
from . import common


def add(sub: Any) -> None:
    """The drift parser."""
    drift = sub.add_parser(
        "drift", help="check for drift: playbooks in check mode plus Celery health; history, schedules, --fix",
        description="`remediate drift ENV` checks; `remediate drift history ENV` lists recorded runs. "
                    "Exit 0 clean, 2 drift, 1 error (unreachable host, failed probe), 3 invalid input.",
    )
    drift.add_argument("env", metavar="ENV", help="environment (inventory/ENV.yml), or `history` followed by ENV")
    drift.add_argument("history_env", nargs="?", metavar="ENV", help=argparse.SUPPRESS)
    common.targets(drift, env="none")
    common.playbooks(drift)
    common.output(drift, ("text", "json", "junit"))
    drift.add_argument("--fix", action="store_true", help="apply the playbooks to drifted hosts, then check again")
    drift.add_argument("--no-health", action="store_true", help="only the playbooks' check mode (hosts without Celery)")
    drift.add_argument("--notify", metavar="URL", help="POST a JSON summary when drift appears or clears")
    drift.add_argument("--every", metavar="DURATION", help="run in the foreground every DURATION (e.g. 30m) until stopped")
    drift.add_argument("--install", choices=("cron", "systemd"), help="install a scheduled job (needs --schedule)")
    drift.add_argument("--uninstall", choices=("cron", "systemd"), help="remove the job --install wrote")
    drift.add_argument("--schedule", metavar="CRON", help='5-field cron schedule, e.g. "*/30 * * * *"')
    drift.add_argument("--root", default="/", metavar="DIR", help="install under DIR instead of / (default /)")
    drift.add_argument("--last", type=int, default=20, metavar="N", help="history: the newest N runs (default 20)")
    drift.add_argument("--since", metavar="WHEN", help="history: runs started since WHEN (2026-11-24, 2026-11-24T22:00Z, "
                                                       "or an age: 90m, 24h, 7d)")
    common.variables(drift)
    common.verification(drift, "--fix: bound on verification waits")
    common.connection(drift)
    common.exclusive(drift)
    drift.set_defaults(handle=drift_command)


def drift_command(args: argparse.Namespace, state: StateDir) -> ExitCode:
    """Dispatch check, history, install; errors other than invalid input are exit 1."""
    if args.env == "history":
        return _history(args, state)
    if args.history_env:
        raise InputError(f"unexpected argument {args.history_env!r} (did you mean `remediate drift history "
                         f"{args.history_env}`?)")
    if args.since:
        raise InputError("--since goes with `remediate drift history ENV` (or `remediate report`)")
    if args.install or args.uninstall:
        return _install(args, state)
    if args.schedule:
        raise InputError("--schedule goes with --install")
    options = common.run_options(args)
    url = notify.check_url(args.notify) if args.notify else None
    # invalid inventory or playbooks are exit 3 before any host is contacted, also for --every
    loaded = _load(args, options)
    if not args.every:
        # SIGINT/SIGTERM during --fix stop the apply cleanly (exit 130), as they do for `apply`
        with common.masked(loaded.redactor), common.interruptible() as interrupt:
            return _once(args, loaded, options, state, url, interrupt)
    interval = common.duration(args.every, "--every")
    if interval <= 0:
        raise InputError("--every must be a positive duration")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log(f"{signal.Signals(signum).name}: stopping after the current run")
        stop.set()

    first = [loaded]

    def run_once() -> int:
        # each run loads its inputs once: the first the ones just validated, later ones as they are then
        inputs = first.pop() if first else _load(args, options)
        return int(_once(args, inputs, options, state, url))

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        _log(f"drift {args.env} every {args.every}; stop with SIGTERM or Ctrl-C")
        return ExitCode(schedule.run_every(interval, run_once, stop, _log))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _load(args: argparse.Namespace, options: RunOptions) -> Loaded:
    return api.load(args.env, tuple(args.playbook), options, args.inventory)


def _log(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _once(args: argparse.Namespace, loaded: Loaded, options: RunOptions, state: StateDir, url: str | None,
          interrupt: Interrupt | None = None) -> ExitCode:
    """One drift run: check, optionally fix and check again, record, notify, print."""
    events = report.TextEvents(sys.stdout, diff=True, redactor=loaded.redactor) if args.fix and args.format == "text" else None
    run = api.drift(loaded, args.env, options, state, health=not args.no_health, fix=args.fix, events=events,
                    interrupt=interrupt, notify_url=url)
    if run.notify_error:
        print(f"remediate: warning: notification not sent: {run.notify_error}", file=sys.stderr)
    outcome = run.outcome
    if args.format == "json":
        print(drift_text.render_json(outcome, run.notification), flush=True)
    elif args.format == "junit":
        print(junit.render(outcome.after or outcome.before), flush=True)
    else:
        print(drift_text.render_text(outcome, run.notification), flush=True)
    return outcome.exit_code()


def _history(args: argparse.Namespace, state: StateDir) -> ExitCode:
    if not args.history_env:
        raise InputError("usage: remediate drift history ENV")
    if args.format == "junit":
        raise InputError("history supports --format text or json")
    since, _ = window(args)
    stored = history.runs(args.history_env, args.last, state.history, since=since)
    print(history.render_json(stored) if args.format == "json"
          else history.render_text(stored, args.history_env, state.history))
    return ExitCode.OK


def window(args: argparse.Namespace) -> tuple[datetime | None, str]:
    """The --last/--since window, and how a report says it."""
    if args.last < 1:
        raise InputError("--last must be at least 1")
    since = common.parse_since(args.since) if args.since else None
    said = f"the newest {args.last} at most"
    if since is not None:
        said += f", started since {since.astimezone(timezone.utc):%Y-%m-%d %H:%M:%SZ}"
    return since, said


def _install(args: argparse.Namespace, state: StateDir) -> ExitCode:
    if args.install and args.uninstall:
        raise InputError("--install and --uninstall exclude each other")
    if args.every:
        raise InputError("--every runs in the foreground; it does not go with --install/--uninstall")
    root = Path(args.root)
    if args.uninstall:
        for change in schedule.uninstall(schedule.Kind(args.uninstall), args.env, root):
            print(f"{change.action:9} {change.path}")
        return ExitCode.OK
    if not args.schedule:
        raise InputError("--install needs --schedule, e.g. --schedule '*/30 * * * *'")
    cron = schedule.parse_schedule(args.schedule)
    inventory = inventory_path(args.env, args.inventory).resolve()
    argv = [sys.executable, "-m", "remediate", "drift", args.env, "-i", str(inventory)]
    for name in args.playbook:
        argv += ["-p", str(resources.find("playbooks", name).resolve())]
    if args.notify:
        argv += ["--notify", notify.check_url(args.notify)]
    for flag, value in (("--limit", args.limit), ("--format", args.format if args.format != "text" else None)):
        if value:
            argv += [flag, value]
    argv += [flag for flag, on in (("--fix", args.fix), ("--no-health", args.no_health)) if on]
    job = schedule.Job(args.env, cron, tuple(argv), os.getcwd(), str(state.path.resolve()), getpass.getuser())
    kind = schedule.Kind(args.install)
    for change in schedule.install(kind, job, root):
        print(f"{change.action:9} {change.path}")
    if kind == schedule.Kind.SYSTEMD:
        print(f"enable it with: systemctl daemon-reload && systemctl enable --now {job.name}.timer")
    return ExitCode.OK
