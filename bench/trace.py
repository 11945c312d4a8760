"""remediate's CLI with its transport commands, connections, audit appends and owed-reload writes timed.

    bench/.venv/bin/python bench/trace.py apply ... (the arguments of `remediate`)

At exit it prints to stderr, per kind of call: how many, their median and longest time, and the total.
Used by bench/profile.py; not part of remediate.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

T0 = time.perf_counter()
from remediate.cli import main  # noqa: E402
from remediate.core import audit  # noqa: E402
from remediate.engine import pending  # noqa: E402
from remediate.transport import ssh  # noqa: E402

IMPORTED = time.perf_counter() - T0
CALLS: list[tuple[str, float]] = []
_lock = threading.Lock()


def wrap(cls: Any, name: str, label: Callable[[tuple[Any, ...]], str]) -> None:
    orig = getattr(cls, name, None)
    if orig is None:  # an older tree (bench/run profile of a base commit)
        return

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return orig(self, *args, **kwargs)
        finally:
            with _lock:
                CALLS.append((label(args), time.perf_counter() - began))

    setattr(cls, name, timed)


def command_label(args: tuple[Any, ...]) -> str:
    argv = [str(a) for a in args[0]]
    if argv[:2] == ["sh", "-c"]:  # a script: its first line names it
        return "run sh -c " + argv[2].strip().splitlines()[0][:48]
    return "run " + " ".join(a for a in argv if not a.startswith("/"))[:60]


wrap(ssh.SSHTransport, "connect", lambda a: "connect (TCP, SSH handshake, auth, shell started)")
wrap(ssh.SSHTransport, "_run", lambda a: command_label(a[1:]))  # every identity's commands (AsUser too)
wrap(ssh.SSHTransport, "keep", lambda a: "run lock taken in the host's shell (keep)")
wrap(ssh.SSHTransport, "let_go", lambda a: "run lock let go (let_go)")
wrap(pending.PendingStore, "_save", lambda a: "owed-reload record write (fsync)")
wrap(audit.AuditLog, "append", lambda a: f"audit append: {a[0].get('event')}")


def summary() -> None:
    by: dict[str, list[float]] = collections.defaultdict(list)
    for what, took in CALLS:
        by[what].append(took)
    print(f"imports before main: {IMPORTED * 1000:.0f} ms", file=sys.stderr)
    for what, times in sorted(by.items(), key=lambda kv: -sum(kv[1])):
        times.sort()
        print(f"{len(times):5d} x {what:62} median {times[len(times) // 2] * 1000:7.1f} ms  "
              f"max {times[-1] * 1000:7.1f} ms  total {sum(times):6.2f} s", file=sys.stderr)


if __name__ == "__main__":
    sys.argv = ["remediate", *sys.argv[1:]]
    try:
        code = main()
    finally:
        summary()
    sys.exit(code)
