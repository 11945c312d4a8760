"""What a `celery` command line runs, pure: its subcommand, its options (`-Q a,b`, `--pidfile=x`, `-B`), as
celery's own click parser reads them (a short option's value may be glued: `-Qa,b`)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# options of `celery worker` / `celery beat` / the global ones that take a value (the others are flags)
VALUED = frozenset({
    "-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir",
    "-l", "--loglevel", "-f", "--logfile", "--pidfile", "-Q", "--queues", "-X", "--exclude-queues", "-c",
    "--concurrency", "-P", "--pool", "-n", "--hostname", "-s", "--schedule", "-S", "--scheduler",
    "--max-interval", "--uid", "--gid", "--umask", "--executable", "-I", "--include", "--autoscale",
    "--max-tasks-per-child", "--max-memory-per-child", "--prefetch-multiplier", "-O", "--statedb",
    "--time-limit", "--soft-time-limit", "--heartbeat-interval",
})
FLAGS = frozenset({"-B", "--beat", "--detach", "-D", "--quiet", "-q", "-C", "--no-color", "--without-gossip", "--without-mingle",
                   "--without-heartbeat", "-E", "--task-events", "--purge", "--discard"})
SUBCOMMANDS = ("worker", "beat", "multi", "flower", "events", "inspect", "control", "shell", "call")


@dataclass(frozen=True)
class Option:
    """One option as written: where it starts in argv, how many tokens it spans, its value."""

    name: str
    value: str | None
    index: int
    span: int


@dataclass(frozen=True)
class CeleryCommand:
    """A command line read as celery would: `celery ... SUBCOMMAND ...` (None when it is not celery's)."""

    argv: tuple[str, ...]
    subcommand: str
    options: tuple[Option, ...]

    def get(self, *names: str) -> Option | None:
        """The last occurrence of one of these option names (click: the last one wins)."""
        found = [o for o in self.options if o.name in names]
        return found[-1] if found else None

    @property
    def runs_beat(self) -> bool:
        """`celery beat`, or `celery worker -B` (an embedded beat)."""
        return self.subcommand == "beat" or (self.subcommand == "worker" and self.get("-B", "--beat") is not None)

    def queues(self, default: str) -> tuple[str, ...] | None:
        """The queues a `celery worker` consumes: -Q's list, else the default queue (None: not a worker)."""
        if self.subcommand != "worker":
            return None
        option = self.get("-Q", "--queues")
        if option is None or not option.value:
            return (default,)
        return tuple(q.strip() for q in option.value.split(",") if q.strip())


def parse(argv: Sequence[str]) -> CeleryCommand | None:
    """A command line as celery reads it; None when it does not run celery (a shell wrapper is not read)."""
    args = tuple(argv)
    start = next((i for i, a in enumerate(args) if a == "celery" or a.endswith("/celery")), None)
    if start is None and len(args) >= 3 and args[1] == "-m" and args[2] == "celery":
        start = 2
    if start is None:
        return None
    subcommand = ""
    options: list[Option] = []
    i = start + 1
    while i < len(args):
        token = args[i]
        if token.startswith("--") and "=" in token:
            name, _, value = token.partition("=")
            options.append(Option(name, value, i, 1))
        elif token in FLAGS:
            options.append(Option(token, None, i, 1))
        elif token in VALUED:
            following = args[i + 1] if i + 1 < len(args) else None
            options.append(Option(token, following, i, 2 if following is not None else 1))
            i += 1
        elif token.startswith("-") and not token.startswith("--") and len(token) > 2 and token[:2] in VALUED:
            options.append(Option(token[:2], token[2:], i, 1))  # -Qa,b
        elif token.startswith("-"):
            options.append(Option(token, None, i, 1))
        elif not subcommand and token in SUBCOMMANDS:
            subcommand = token
        i += 1
    return CeleryCommand(args, subcommand, tuple(options))


def without(argv: Sequence[str], *names: str) -> tuple[str, ...]:
    """argv with every occurrence of these options removed (with their values)."""
    command = parse(argv)
    if command is None:
        return tuple(argv)
    drop = {i for o in command.options if o.name in names for i in range(o.index, o.index + o.span)}
    return tuple(a for i, a in enumerate(argv) if i not in drop)


def with_option(argv: Sequence[str], name: str, value: str, after: str | None = None) -> tuple[str, ...]:
    """argv with option `name` set to `value`: in place where it is written (as written: `-Q x`, `-Qx`,
    `--queues=x`), else added after the subcommand (or the token `after`)."""
    command = parse(argv)
    args = list(argv)
    if command is None:
        raise ValueError(f"not a celery command: {' '.join(argv)}")
    aliases = {"-Q": ("-Q", "--queues"), "--queues": ("-Q", "--queues")}.get(name, (name,))
    found = command.get(*aliases)
    if found is not None:
        token = args[found.index]
        if found.span == 2:
            args[found.index + 1] = value
        elif token.startswith("--"):
            args[found.index] = f"{found.name}={value}"
        else:
            args[found.index] = f"{found.name}{value}"
        return tuple(args)
    anchor = after or command.subcommand
    at = next((i for i, a in enumerate(args) if a == anchor), len(args) - 1)
    return tuple(args[: at + 1] + [name, value] + args[at + 1:])
