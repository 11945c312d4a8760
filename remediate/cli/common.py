"""What every command shares: the parser (usage errors exit 3), the flag groups, the one function that turns
arguments into RunOptions, durations and times, signal handling, and how an error reaches the terminal."""
from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NoReturn

from ..core.errors import InputError, RemediateError
from ..core.options import BECOME_PASSWORD_ENV, RunOptions, is_user_name
from ..core.redact import NO_SECRETS, Redactor
from ..core.results import ExitCode
from ..engine.control import Interrupt

if TYPE_CHECKING:  # the api is imported when a command runs, not to build the parser
    from ..api import Why
    from ..inputs.load import Loaded

FORMATS = ("text", "json")
# --wait-lock without a value: how long to wait for another run's lock on a host (seconds)
WAIT_LOCK = 300


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is invalid input (exit 3, as the exit-code table says) shown with the usage of
    the (sub)command it is about, and no abbreviations: `--che` is not `--check`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False  # sub-parsers are made with this class, so each of them refuses them too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.INVALID_INPUT), f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            # argparse reports leftovers with the top parser's usage; the subcommand's is the one that helps
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> Parser:
        """The deepest (sub)parser the arguments chose."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                name = getattr(parsed, action.dest or "", None)
                chosen = action.choices.get(name) if isinstance(action.choices, dict) and name else None
                if isinstance(chosen, Parser):
                    return chosen._chosen(parsed)
        return self


class Version(argparse.Action):
    """--version: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show remediate's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from importlib import metadata

        try:
            version = metadata.version("remediate")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        print(f"remediate {version}")
        parser.exit(0)


class CommaList(argparse.Action):
    """A repeatable flag whose values are comma lists (`-t beat,tasks -t other`): every item, stripped, in order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items += [v.strip() for v in str(values).split(",") if v.strip()]
        setattr(namespace, self.dest, items)


# ---- flag groups ----------------------------------------------------------------------------------------------------


def targets(p: argparse.ArgumentParser, env: str = "required") -> None:
    """ENV, -i and --limit: which inventory and which of its hosts."""
    if env == "required":
        env_completed(p.add_argument("env", metavar="ENV", help="environment: inventory/ENV.yml"))
    elif env == "optional":
        env_completed(p.add_argument("env", nargs="?", metavar="ENV", help="environment: inventory/ENV.yml (or -i)"))
    p.add_argument("-i", "--inventory", metavar="FILE", help="inventory file (default inventory/ENV.yml)")
    p.add_argument("-l", "--limit", metavar="PATTERN",
                   help="hosts or groups as Ansible patterns: comma lists, all, !exclude, &intersect, * wildcards, ~regex")


# shell completion (`remediate completion`): an ENV completes to the names of the working directory's inventory/*.yml
ENV_COMPLETION = {"bash": "_remediate_envs", "zsh": "_remediate_envs"}
COMPLETION_PREAMBLE = {
    "bash": """
_remediate_envs() {
  local f names=""
  for f in inventory/*.yml inventory/*.yaml; do [ -e "$f" ] && f=${f##*/} && names="$names ${f%.*}"; done
  compgen -W "$names" -- "$1"
}
""",
    "zsh": """
_remediate_envs() {
  local -a envs
  envs=(inventory/*.yml(N:t:r) inventory/*.yaml(N:t:r))
  _describe 'environment' envs
}
""",
}


def env_completed(action: argparse.Action) -> None:
    """Mark an ENV argument for completion from inventory/*.yml."""
    action.complete = ENV_COMPLETION  # type: ignore[attr-defined]  # read by shtab


def playbooks(p: argparse.ArgumentParser) -> None:
    """-p: the playbooks to run."""
    p.add_argument("-p", "--playbook", action="append", default=[], metavar="PLAYBOOK", help="default playbooks/site.yml")


def output(p: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    """--format."""
    p.add_argument("--format", choices=formats, default="text")


def mode(p: argparse.ArgumentParser, check: str = "plan and show; change nothing (exit 2 if changes are pending)",
         diff: str = "show unified diffs of file changes") -> None:
    """-C/--check and -D/--diff."""
    p.add_argument("-C", "--check", action="store_true", help=check)
    p.add_argument("-D", "--diff", action="store_true", help=diff)


def selection(p: argparse.ArgumentParser) -> None:
    """-t/--tags, --skip-tags (comma lists; an unknown tag is invalid input) and --start-at-task."""
    p.add_argument("-t", "--tags", action=CommaList, default=[], metavar="TAGS",
                   help="run only steps with these tags (comma-separated; always/never/all/tagged/untagged as in Ansible)")
    p.add_argument("--skip-tags", action=CommaList, default=[], metavar="TAGS", help="skip steps with these tags")
    p.add_argument("--start-at-task", metavar="NAME", help="start at the first step of that name (or fnmatch pattern)")


def listing(p: argparse.ArgumentParser, tasks: bool = True) -> None:
    """--list-hosts (and --list-tasks): show what a run would touch, contact nothing."""
    p.add_argument("--list-hosts", action="store_true", help="list the hosts each play would run on; contact none")
    if tasks:
        p.add_argument("--list-tasks", action="store_true", help="list the steps that would run; contact no host")


def verbosity(p: argparse.ArgumentParser) -> None:
    """-v, -vv, -vvv."""
    p.add_argument("-v", "--verbose", action="count", default=0, dest="verbosity",
                   help="-v: step durations and argv; -vv: command stdout and stderr; -vvv: transport detail")


def connection(p: argparse.ArgumentParser) -> None:
    """-f/--forks, --connect-timeout, --command-timeout and --accept-new-host-keys: how hosts are reached."""
    p.add_argument("-f", "--forks", type=int, default=RunOptions.forks, metavar="N", help=f"hosts in parallel (default {RunOptions.forks})")
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
    p.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                   help="variables that override all others: KEY=VALUE pairs, @FILE (YAML or JSON), or inline JSON")


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
        start_at_task=given.get("start_at_task"),
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
    from ..api import Why

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


def extra_vars(values: list[str]) -> dict[str, object]:
    """-e values, as ansible-playbook reads them: `@FILE` (YAML or JSON), inline JSON or YAML starting with `{` or
    `[`, else `KEY=VALUE` pairs separated by spaces (shell-quoted; values typed as YAML scalars: 10 -> int). Later
    ones win, variable by variable."""
    out: dict[str, object] = {}
    for value in values:
        out.update(_extra(value))
    return out


def _extra(value: str) -> dict[str, object]:
    import shlex

    from ..inputs.yamlio import load_file, load_text

    if value.startswith("@"):
        from pathlib import Path

        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise InputError(f"-e {value}: {path}: cannot read: No such file" if not path.exists()
                             else f"-e {value}: {path} is not a file")
        return _var_mapping(load_file(path), f"-e {value}")
    if value[:1] in ("{", "["):
        try:
            return _var_mapping(load_text(value, "-e"), f"-e {value}")
        except InputError as exc:
            raise InputError(f"-e {value!r}: {exc}") from None
    if value[:1] in ("/", "."):
        raise InputError(f"-e {value}: a file of variables is given as @FILE (prepend the file name with '@')")
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"-e {value!r}: {exc}") from None
    out: dict[str, object] = {}
    for pair in words:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"-e expects KEY=VALUE with an identifier KEY, @FILE or JSON, not {pair!r}")
        out[key] = _scalar(text)
    return out


def _var_mapping(data: object, what: str) -> dict[str, object]:
    if not isinstance(data, dict):
        raise InputError(f"{what}: expected a mapping of variables, not {type(data).__name__}")
    for name in data:
        if not str(name).isidentifier():
            raise InputError(f"{what}: variable name {name!r} is not an identifier")
    return dict(data)


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


# ---- --list-hosts / --list-tasks --------------------------------------------------------------------------------------


def listing_text(loaded: Loaded, options: RunOptions, hosts: bool, tasks: bool) -> str:
    """What a run would touch, as ansible-playbook lists it: per play its pattern and hosts, and/or its steps with
    their tags (those --tags/--skip-tags/--start-at-task select). Nothing is contacted, nothing audited."""
    from ..inputs import patterns

    selected = {h.name for h in loaded.hosts}
    if not loaded.plays:  # diagnose, backups: hosts only
        names = [h.name for h in loaded.hosts]
        return "\n".join([f"  hosts ({len(names)}):", *(f"    {n}" for n in names)])
    lines: list[str] = []
    shown_path = ""
    for number, play in enumerate(loaded.plays, 1):
        if play.path != shown_path:
            lines += [*([""] if lines else []), f"playbook: {play.path}"]
            shown_path = play.path
        on = [h.name for h in loaded.inventory.select(play.hosts, f"play {play.name!r}: hosts", play.where)
              if h.name in selected]
        lines += ["", f"  play #{number} ({play.hosts}): {play.name}\tTAGS: [{','.join(play.tags)}]"]
        if hosts:
            lines += [f"    pattern: {play.hosts}", f"    hosts ({len(on)}):", *(f"      {n}" for n in on)]
        if tasks:
            lines.append("    tasks:")
            for step in play.steps:
                if patterns.tag_selected((*step.tags, *play.tags), options.tags, options.skip_tags):
                    tags = ",".join(dict.fromkeys((*play.tags, *step.tags)))
                    lines.append(f"      {step.name}\tTAGS: [{tags}]")
    return "\n".join(lines)
