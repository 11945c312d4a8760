"""What every command shares: the parser (usage errors exit 3), the flag groups, the one function that turns
arguments into RunOptions, durations and times, signal handling, and how an error reaches the terminal."""
from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from ..api import Why
from ..core.errors import InputError, RemediateError
from ..core.options import BECOME_PASSWORD_ENV, RunOptions, is_user_name
from ..core.redact import NO_SECRETS, Redactor
from ..core.results import ExitCode
from ..engine.control import Interrupt

FORMATS = ("text", "json")
# --wait-lock without a value: how long to wait for another run's lock on a host (seconds)
WAIT_LOCK = 300


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is invalid input: exit 3, as the exit-code table says."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.INVALID_INPUT), f"{self.prog}: error: {message}\n")


# ---- flag groups ----------------------------------------------------------------------------------------------------


def targets(p: argparse.ArgumentParser, env: str = "required") -> None:
    """ENV, -i and --limit: which inventory and which of its hosts."""
    if env == "required":
        p.add_argument("env", metavar="ENV", help="environment: inventory/ENV.yml")
    elif env == "optional":
        p.add_argument("env", nargs="?", metavar="ENV", help="environment: inventory/ENV.yml (or -i)")
    p.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default inventory/ENV.yml)")
    p.add_argument("--limit", metavar="HOSTS", help="hosts or groups, comma-separated")


def playbooks(p: argparse.ArgumentParser) -> None:
    """-p: the playbooks to run."""
    p.add_argument("-p", "--playbook", action="append", default=[], metavar="PLAYBOOK", help="default playbooks/site.yml")


def output(p: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    """--format."""
    p.add_argument("--format", choices=formats, default="text")


def connection(p: argparse.ArgumentParser) -> None:
    """--forks, --connect-timeout, --command-timeout and --accept-new-host-keys: how hosts are reached."""
    p.add_argument("--forks", type=int, default=RunOptions.forks, metavar="N", help=f"hosts in parallel (default {RunOptions.forks})")
    p.add_argument("--connect-timeout", default="10", metavar="SECONDS", help="bound on connecting (default 10 s)")
    p.add_argument("--command-timeout", default="900", metavar="SECONDS",
                   help="bound on each command on a host (default 900 s; a step's own timeout wins)")
    p.add_argument("--accept-new-host-keys", action="store_true",
                   help="trust and record unknown host keys (never changed ones)")
    ssh = ssh_flags(p)
    ssh.add_argument("-b", "--become", action="store_true",
                     help="sudo on hosts whose inventory, play and step say nothing of become")
    ssh.add_argument("--become-user", metavar="USER", help="the user to become (default root)")
    ssh.add_argument("-K", "--ask-become-pass", action="store_true",
                     help=f"ask once for sudo's password (or set {BECOME_PASSWORD_ENV})")


def ssh_flags(p: argparse.ArgumentParser) -> Any:
    """-u, --private-key, --ssh-config, --no-ssh-config: where SSH goes, as ssh decides it (the group, for more)."""
    ssh = p.add_argument_group("SSH", "as ssh would connect; the inventory's own values win")
    ssh.add_argument("-u", "--user", metavar="USER", help="SSH user where the inventory names none")
    ssh.add_argument("--private-key", metavar="FILE", help="SSH private key where the inventory names none")
    files = ssh.add_mutually_exclusive_group()
    files.add_argument("--ssh-config", metavar="FILE",
                       help="read only this ssh_config (default ~/.ssh/config, then /etc/ssh/ssh_config)")
    files.add_argument("--no-ssh-config", action="store_true", help="read no ssh_config file")
    return ssh


def exclusive(p: argparse.ArgumentParser) -> None:
    """--wait-lock and --force-audit-continue: one run per host at a time, and a trail that protects itself."""
    p.add_argument("--wait-lock", nargs="?", const=str(WAIT_LOCK), default=None, metavar="SECONDS",
                   help=f"wait for another run's lock on a host (default {WAIT_LOCK} s) instead of refusing it")
    trail(p)


def trail(p: argparse.ArgumentParser) -> None:
    """--force-audit-continue: append to a trail whose tail does not match its head, recording the break."""
    p.add_argument("--force-audit-continue", action="store_true",
                   help="run although the audit trail's end does not match audit.head; the break is recorded")


def variables(p: argparse.ArgumentParser) -> None:
    """-e KEY=VALUE."""
    p.add_argument("-e", "--extra-vars", action="append", default=[], metavar="KEY=VALUE", help="override a variable")


def verification(p: argparse.ArgumentParser, what: str = "bound on verification waits (default 15m)") -> None:
    """--verify-timeout."""
    p.add_argument("--verify-timeout", default="15m", metavar="DURATION", help=what)


def why(p: argparse.ArgumentParser) -> None:
    """--reason and --change-ref, recorded in the audit trail."""
    p.add_argument("--reason", metavar="TEXT", help="why this run happens (recorded in the audit trail)")
    p.add_argument("--change-ref", metavar="REF", help="change request or ticket (recorded in the audit trail)")


# ---- arguments -> values --------------------------------------------------------------------------------------------


def run_options(args: argparse.Namespace) -> RunOptions:
    """The one place arguments become RunOptions; a flag a command does not have keeps RunOptions' default."""
    given: dict[str, Any] = vars(args)
    default = RunOptions()
    forks = given.get("forks", default.forks)
    if forks < 1:
        raise InputError("--forks must be at least 1")
    return RunOptions(
        check=bool(given.get("check", default.check)),
        diff=bool(given.get("diff", default.diff)),
        forks=forks,
        limit=given.get("limit"),
        tags=tuple(given.get("tags") or ()),
        skip_tags=tuple(given.get("skip_tags") or ()),
        extra_vars=extra_vars(given.get("extra_vars") or []),
        verify_timeout=duration(given["verify_timeout"], "--verify-timeout") if "verify_timeout" in given
        else default.verify_timeout,
        connect_timeout=seconds(given["connect_timeout"], "--connect-timeout") if "connect_timeout" in given
        else default.connect_timeout,
        command_timeout=seconds(given["command_timeout"], "--command-timeout") if "command_timeout" in given
        else default.command_timeout,
        accept_new_host_keys=bool(given.get("accept_new_host_keys", default.accept_new_host_keys)),
        wait_lock=seconds(given["wait_lock"], "--wait-lock") if given.get("wait_lock") is not None
        else default.wait_lock,
        force_audit_continue=bool(given.get("force_audit_continue", default.force_audit_continue)),
        user=given.get("user"),
        private_key=given.get("private_key"),
        ssh_config=given.get("ssh_config"),
        use_ssh_config=not given.get("no_ssh_config", False),
        become=bool(given.get("become", False)),
        become_user=_user(given.get("become_user"), "--become-user"),
        become_password=become_password(bool(given.get("ask_become_pass", False))),
    )


def seconds(text: str | float, flag: str) -> float:
    """A bound in seconds (`90`, `90s`, `15m`): finite and positive, else InputError naming the flag."""
    value = duration(str(text), flag)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{flag}: expected a number of seconds above 0, not {text!r}")
    return value


def _user(value: str | None, flag: str) -> str | None:
    if value is not None and not is_user_name(value):
        raise InputError(f"{flag}: {value!r} is not a user name")
    return value


def become_password(ask: bool) -> str | None:
    """sudo's password: asked once on the terminal (--ask-become-pass), else REMEDIATE_BECOME_PASSWORD, else none."""
    import getpass
    import os

    if ask:
        if not sys.stdin.isatty():
            raise InputError(f"--ask-become-pass needs a terminal to ask on; set {BECOME_PASSWORD_ENV} instead")
        try:
            return getpass.getpass("BECOME password: ")
        except (EOFError, KeyboardInterrupt):
            raise InputError("--ask-become-pass: no password given") from None
    return os.environ.get(BECOME_PASSWORD_ENV) or None


def why_of(args: argparse.Namespace) -> Why:
    """--reason and --change-ref as api.Why."""
    return Why(args.reason, args.change_ref)


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


def duration(text: str, flag: str) -> float:
    """A duration flag's value in seconds; InputError naming the flag."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """--since: an ISO date or time (UTC unless it says otherwise) or an age before now (90m, 24h, 7d, 2w)."""
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


def extra_vars(pairs: list[str]) -> dict[str, object]:
    """-e KEY=VALUE pairs: YAML scalars (10 -> int, true -> bool), anything else the string given."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"-e expects KEY=VALUE with an identifier KEY, not {pair!r}")
        out[key] = _scalar(value)
    return out


def _scalar(text: str) -> object:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


# ---- running and failing --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def interruptible() -> Iterator[Interrupt]:
    """SIGINT/SIGTERM stop the run through an Interrupt instead of an exception at a random point."""
    interrupt = Interrupt()
    handler = lambda signum, frame: interrupt.trigger()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupt
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Failed(Exception):
    """An error raised once the run's secrets were known: it carries the redactor its message goes through."""

    def __init__(self, error: RemediateError, redactor: Redactor) -> None:
        super().__init__(str(error))
        self.error = error
        self.redactor = redactor


@contextlib.contextmanager
def masked(redactor: Redactor) -> Iterator[None]:
    """Around what a command does after loading its inputs: an error is shown with the run's secrets masked."""
    try:
        yield
    except RemediateError as exc:
        raise Failed(exc, redactor) from exc


def report_error(exc: RemediateError, redactor: Redactor = NO_SECRETS) -> ExitCode:
    """Print an error the way every command does, and say its exit code."""
    from ..core.audit import AuditError

    text = redactor.text(str(exc))
    if isinstance(exc, InputError):
        print(f"remediate: error: {text}", file=sys.stderr)
        return ExitCode.INVALID_INPUT
    if isinstance(exc, AuditError):
        print(f"remediate: error: {text}; refusing to run: nothing was changed", file=sys.stderr)
        return ExitCode.FAILED
    print(f"remediate: error: {text}", file=sys.stderr)
    return ExitCode.FAILED
