"""The `drift` and `report` subcommands: argv -> DriftOptions -> drift/history/notify/schedule -> output -> exit code.

Kept apart from cli.py so the main parser only gains two lines; heavy imports stay lazy.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

COMMANDS = ("drift", "report")


def add_parsers(sub: Any) -> None:
    """Add `drift` and `report` to the main parser's subcommands."""
    drift = sub.add_parser(
        "drift", help="check for drift: playbooks in check mode plus Celery health; history, schedules, --fix",
        description="`remediate drift ENV` checks; `remediate drift history ENV` lists recorded runs. "
                    "Exit 0 clean, 2 drift, 1 error (unreachable host, failed probe), 3 invalid input.",
    )
    drift.add_argument("env", metavar="ENV", help="environment (inventory/ENV.yml), or `history` followed by ENV")
    drift.add_argument("history_env", nargs="?", metavar="ENV", help=argparse.SUPPRESS)
    drift.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default inventory/ENV.yml)")
    drift.add_argument("-p", "--playbook", action="append", default=[], metavar="PLAYBOOK", help="default playbooks/site.yml")
    drift.add_argument("--limit", metavar="HOSTS", help="hosts or groups, comma-separated")
    drift.add_argument("--format", choices=("text", "json", "junit"), default="text")
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
    drift.add_argument("-e", "--extra-vars", action="append", default=[], metavar="KEY=VALUE")
    drift.add_argument("--forks", type=int, default=10, metavar="N")
    drift.add_argument("--verify-timeout", default="15m", metavar="DURATION", help="--fix: bound on verification waits")
    drift.add_argument("--accept-new-host-keys", action="store_true")
    drift.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")

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


def main(args: argparse.Namespace) -> int:
    """Dispatch `drift` / `report`; errors other than invalid input are exit 1."""
    from ..core.errors import InputError, RemediateError

    try:
        if args.command == "report":
            return _report(args)
        if args.env == "history":
            return _history(args)
        if args.history_env:
            raise InputError(f"unexpected argument {args.history_env!r} (did you mean `remediate drift history "
                             f"{args.history_env}`?)")
        if args.since:
            raise InputError("--since goes with `remediate drift history ENV` (or `remediate report`)")
        if args.install or args.uninstall:
            return _install(args)
        return _drift(args)
    except InputError:
        raise
    except RemediateError as exc:
        print(f"remediate: error: {exc}", file=sys.stderr)
        return 1


def _options(args: argparse.Namespace) -> Any:
    from . import _extra_vars, parse_duration
    from ..drift.model import DriftOptions
    from ..core.errors import InputError

    if args.forks < 1:
        raise InputError("--forks must be at least 1")
    try:
        verify_timeout = parse_duration(args.verify_timeout)
    except ValueError as exc:
        raise InputError(f"--verify-timeout: {exc}") from None
    return DriftOptions(
        env=args.env, playbooks=tuple(args.playbook), inventory=args.inventory, limit=args.limit,
        health=not args.no_health, forks=args.forks, connect_timeout=args.connect_timeout,
        verify_timeout=verify_timeout, accept_new_host_keys=args.accept_new_host_keys,
        extra_vars=_extra_vars(args.extra_vars),
    )


def _drift(args: argparse.Namespace) -> int:
    from .. import api
    from ..drift import schedule
    from . import parse_duration
    from ..core.errors import InputError
    from ..engine.host import RunOptions
    from ..drift.notify import check_url

    if args.schedule:
        raise InputError("--schedule goes with --install")
    opts = _options(args)
    url = check_url(args.notify) if args.notify else None
    # invalid inventory or playbooks are exit 3 before any host is contacted, also for --every
    api.load(opts.env, opts.playbooks, RunOptions(check=True, limit=opts.limit), opts.inventory)
    if not args.every:
        from . import _interruptible

        # SIGINT/SIGTERM during --fix stop the apply cleanly (exit 130), as they do for `apply`
        with _interruptible() as interrupt:
            return _once(opts, args, url, interrupt)
    try:
        interval = parse_duration(args.every)
    except ValueError as exc:
        raise InputError(f"--every: {exc}") from None
    if interval <= 0:
        raise InputError("--every must be a positive duration")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log(f"{signal.Signals(signum).name}: stopping after the current run")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        _log(f"drift {opts.env} every {args.every}; stop with SIGTERM or Ctrl-C")
        return schedule.run_every(interval, lambda: _once(opts, args, url), stop, _log)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _log(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _once(opts: Any, args: argparse.Namespace, url: str | None, interrupt: Any = None) -> int:
    """One drift run: check, optionally fix and check again, record, notify, print."""
    from ..drift import model as drift, history, junit
    from ..core import report

    before = drift.check(opts)
    events = None
    if args.fix and args.format == "text":
        from .. import api
        from ..engine.host import RunOptions

        redactor = api.load(opts.env, opts.playbooks, RunOptions(check=True, limit=opts.limit), opts.inventory).redactor
        events = report.TextEvents(sys.stdout, diff=True, redactor=redactor)
    outcome = drift.fix(opts, before, events, interrupt=interrupt) if args.fix else drift.FixOutcome(before, None, None)
    history.record(before)
    if outcome.after is not None:
        history.record(outcome.after)
    final = outcome.after or before
    note = _notify(url, final) if url else ""
    if args.format == "json":
        print(drift.render_json(outcome, note), flush=True)
    elif args.format == "junit":
        print(junit.render(final), flush=True)
    else:
        print(drift.render_text(outcome, note), flush=True)
    return outcome.exit_code()


def _notify(url: str, report: Any) -> str:
    """Post when drift appeared or cleared since the last successful announcement; say what happened."""
    from ..drift import history, notify

    previous = history.announced(report.env, url)
    change = notify.transition(previous, report)
    if change is None:
        return ""
    error = notify.post(url, notify.payload(report, change))
    if error:
        print(f"remediate: warning: notification not sent: {error}", file=sys.stderr)
        return f"not sent: {error}"
    history.set_announced(report.env, url, change.current)
    what = "drift appeared" if change.appeared else "drift cleared"
    return f"sent to {url} ({what})"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """--since: an ISO date or time (UTC unless it says otherwise) or an age before now (90m, 24h, 7d, 2w)."""
    from ..core.errors import InputError

    now = now or datetime.now(timezone.utc)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    value = text.strip()
    try:
        if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
            return now - timedelta(seconds=float(value[:-1]) * units[value[-1]])
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since: expected a date or time (2026-11-24, 2026-11-24T22:00Z) or an age (90m, 24h, "
                         f"7d), got {text!r}") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def _window(args: argparse.Namespace) -> tuple[datetime | None, str]:
    """The --last/--since window, and how the report says it."""
    from ..core.errors import InputError

    if args.last < 1:
        raise InputError("--last must be at least 1")
    since = parse_since(args.since) if args.since else None
    said = f"the newest {args.last} at most"
    if since is not None:
        said += f", started since {since.astimezone(timezone.utc):%Y-%m-%d %H:%M:%SZ}"
    return since, said


def _history(args: argparse.Namespace) -> int:
    from ..drift import history
    from ..core.errors import InputError

    if not args.history_env:
        raise InputError("usage: remediate drift history ENV")
    if args.format == "junit":
        raise InputError("history supports --format text or json")
    since, _ = _window(args)
    stored = history.runs(args.history_env, args.last, since=since)
    print(history.render_json(stored) if args.format == "json" else history.render_text(stored, args.history_env))
    return 0


def _install(args: argparse.Namespace) -> int:
    import getpass
    import os

    from .. import api
    from ..inputs import resources
    from ..drift import schedule
    from ..core.errors import InputError
    from ..core.state import state_dir

    if args.install and args.uninstall:
        raise InputError("--install and --uninstall exclude each other")
    if args.every:
        raise InputError("--every runs in the foreground; it does not go with --install/--uninstall")
    root = Path(args.root)
    if args.uninstall:
        for change in schedule.uninstall(schedule.Kind(args.uninstall), args.env, root):
            print(f"{change.action:9} {change.path}")
        return 0
    if not args.schedule:
        raise InputError("--install needs --schedule, e.g. --schedule '*/30 * * * *'")
    cron = schedule.parse_schedule(args.schedule)
    inventory = api.inventory_path(args.env, args.inventory).resolve()
    argv = [sys.executable, "-m", "remediate", "drift", args.env, "-i", str(inventory)]
    for name in args.playbook:
        argv += ["-p", str(resources.find("playbooks", name).resolve())]
    if args.notify:
        from ..drift.notify import check_url

        argv += ["--notify", check_url(args.notify)]
    for flag, value in (("--limit", args.limit), ("--format", args.format if args.format != "text" else None)):
        if value:
            argv += [flag, value]
    argv += [flag for flag, on in (("--fix", args.fix), ("--no-health", args.no_health)) if on]
    job = schedule.Job(args.env, cron, tuple(argv), os.getcwd(), str(state_dir().resolve()), getpass.getuser())
    kind = schedule.Kind(args.install)
    for change in schedule.install(kind, job, root):
        print(f"{change.action:9} {change.path}")
    if kind == schedule.Kind.SYSTEMD:
        print(f"enable it with: systemctl daemon-reload && systemctl enable --now {job.name}.timer")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..drift import history, html as htmlreport

    since, said = _window(args)
    sets = history.check_sets(args.env, since=since)
    selection: tuple[str, ...] = ()
    if args.playbook or args.no_health:
        chosen = _check_set(args.playbook, not args.no_health)
        selection = (*(f"-p {p}" for p in args.playbook), *(("--no-health",) if args.no_health else ()))
    else:
        chosen = sets[0].check_set if sets else None
    stored = history.runs(args.env, args.last, since=since, check_set=chosen) if chosen else ()
    target = Path(args.html)
    page = htmlreport.render(args.env, stored, others=sets, window=said, selection=selection)
    # the page replaces the old one whole or not at all (a browser or a web server may be reading it)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    what = f", {chosen.label()}" if chosen else ""
    print(f"wrote {target} ({len(stored)} run(s) of {args.env}{what})")
    return 0


def _check_set(playbooks: list[str], health: bool) -> Any:
    """The check set `remediate drift -p ... [--no-health]` records: the playbook checks its files yield."""
    from ..inputs import resources
    from ..drift.model import PLAYBOOK_PREFIX, playbook_check_name
    from ..drift.history import CheckSet
    from ..inputs.playbook import load_playbook

    paths = [resources.find("playbooks", p) for p in (playbooks or ["site"])]
    names = {playbook_check_name(s.where.path) for path in paths for play in load_playbook(path) for s in play.steps}
    return CheckSet(tuple(sorted(n[len(PLAYBOOK_PREFIX):] for n in names)), health)
