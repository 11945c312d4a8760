"""One run per host at a time: a lock on the controller (STATE_DIR/locks, against other runs sharing the state
directory) and one on the host itself (in its backup root, against other controllers), both held from before
the host's first step to after its last record, both naming their holder to the run that waits or refuses.

The controller's lock is a flock(2) on STATE_DIR/locks/HOST.lock: the kernel releases it when its holder dies,
and the holder's description left in the file then tells that a run was killed (a stale lock, taken over, saying
so). The host's lock is a flock(1) on ROOT/.locks/run.HOST@ADDRESS (ROOT: the
default backup root of the user the host's commands run as) taken in the host's own shell, the one that runs the
run's commands, and held by that shell's descriptor 6 (no command inherits it): the run's end lets it go, and so
does a controller that dies (its connection goes, the shell reads the end of its input and exits once the
command it runs, if any, has ended), so a killed controller never leaves the host locked past its last command. A `connection: local` host takes only the
controller's lock: the controller is the host.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..facts.files import ROOT_SCRIPT
from ..transport.base import Keeps

# how often a run waiting for a lock (--wait-lock) tries again, in seconds
POLL = 0.2
MARK = "REMEDIATE-LOCK"
# how long a host's lock held for a controller process of this machine that is gone is waited for (its holder
# script ends when its stdin closes, which the controller's death does; over SSH that takes a round trip)
GONE_GRACE = 10.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: the run, its command, user, controller host, process and start time."""

    run_id: str
    command: str
    user: str
    controller: str
    pid: int
    since: str

    @classmethod
    def me(cls, run_id: str, command: str) -> Holder:
        """This process, for the run it does."""
        return cls(run_id, command, getpass.getuser(), socket.gethostname(), os.getpid(),
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """A holder written by `dumps`; None for anything else (empty: being written, or released)."""
        try:
            doc = json.loads(text)
            return cls(str(doc["run_id"]), str(doc["command"]), str(doc["user"]), str(doc["controller"]),
                       int(doc["pid"]), str(doc["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    def gone(self) -> bool:
        """Whether this holder is a process of this machine that no longer exists."""
        if self.controller != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def dumps(self) -> str:
        """One line of JSON."""
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        """As the refusal names it."""
        return (f"run {self.run_id} ({self.command} by {self.user} on {self.controller}, pid {self.pid}, "
                f"since {self.since})")


class Locked(Exception):
    """Another run holds the host: the message names it (and how long this one waited)."""


def refusal(host: str, holder: Holder | None, where: str, waited: float) -> str:
    """The message of a run that did not get the host."""
    who = holder.describe() if holder else "another run (which did not say who it is)"
    wait = f"; waited {waited:g} s" if waited else ""
    return f"{host}: locked by {who}{where}{wait}; not run (--wait-lock[=SECONDS] waits for it)"


def stale_notice(holder: Holder, where: str) -> str:
    """What a run says when it takes over the lock of a run that was killed."""
    return (f"took over a stale lock of run {holder.run_id}{where} ({holder.command} by {holder.user}, pid "
            f"{holder.pid} on {holder.controller} is gone without releasing it: killed or lost)")


class ControllerLock:
    """STATE_DIR/locks/HOST.lock: held (flock) for one host's whole run; the file is never removed (an unlink
    races a waiter's flock), its content is the holder's description, emptied on release."""

    def __init__(self, directory: Path, host: str) -> None:
        self.path = directory / (quote(host, safe="") + ".lock")
        self.host = host
        self._fd: int | None = None

    def acquire(self, me: Holder, wait: float, waiting: Callable[[str], None],
                sleep: Callable[[float], None] = time.sleep) -> str:
        """Take the lock, waiting up to `wait` seconds (telling `waiting` once); Locked naming the holder when
        it stays held. Returns the notice of a stale lock taken over ("" when there was none)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        began = time.monotonic()
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self._holder(fd, sleep)
                    waited = time.monotonic() - began
                    if waited >= wait:
                        raise Locked(refusal(self.host, holder, "", round(waited) if wait else 0)) from None
                    if not told:
                        waiting(f"waiting for the lock held by {holder.describe() if holder else 'another run'} "
                                f"(up to {wait:g} s)")
                        told = True
                    sleep(POLL)
        except BaseException:
            os.close(fd)
            raise
        old = Holder.parse(_read(fd))
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.dumps().encode() + b"\n", 0)
        self._fd = fd
        return stale_notice(old, "") if old else ""

    def _holder(self, fd: int, sleep: Callable[[float], None]) -> Holder | None:
        # the holder writes its description right after taking the lock: an empty file is one being written
        for _ in range(25):
            holder = Holder.parse(_read(fd))
            if holder is not None:
                return holder
            sleep(0.02)
        return None

    def release(self) -> None:
        """Empty the description, then let go (a holder that dies before this leaves it: a stale lock)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)


def _read(fd: int) -> str:
    return os.pread(fd, 65536, 0).decode("utf-8", "replace").strip()


# The body of a shell function run in the host's own shell (transport `keep`), so descriptor 6, the lock, is
# held by that shell for as long as it lives: no channel or login of its own. Args: a backup_dir ("": the
# user's default root), the lock's name, the holder's description. Prints MARK lines: STALE (a holder that
# was killed), then LOCKED (returns 0), or HELD with the holder (returns 75). It never exits: it runs in the
# shell that runs every later command. Its files are created with umask 077 (in a subshell); flock is its
# only process besides that subshell.
_TAKE = ROOT_SCRIPT + r"""
command -v flock >/dev/null 2>&1 || {
  echo "remediate: flock (util-linux) is not installed on the host; it is needed for the run lock" >&2; return 69; }
remediate_l=$(resolve_root "$1" && umask 077 && { [ -d "$root/.locks" ] || mkdir -p -- "$root/.locks"; } &&
  l=$root/.locks/run.$2 && : >> "$l" && : >> "$l.holder" && printf '%s' "$l") || return 73
command exec 6>>"$remediate_l" || return 73
remediate_o=
IFS= read -r remediate_o < "$remediate_l.holder" || :
if ! flock -n 6; then printf '%s HELD %s\n' "MARK" "$remediate_o"; exec 6>&-; return 75; fi
if [ -n "$remediate_o" ]; then printf '%s STALE %s\n' "MARK" "$remediate_o"; fi
printf '%s\n' "$3" > "$remediate_l.holder" || { exec 6>&-; return 73; }
trap '[ ! -e "$remediate_l.holder" ] || : > "$remediate_l.holder"' EXIT
trap 'exit 129' HUP
trap 'exit 143' TERM
trap 'exit 141' PIPE
printf '%s LOCKED\n' "MARK"
""".replace('"MARK"', MARK)

# keep's undoing: the holder emptied (a released lock is not stale), then the lock let go
_LET_GO = r"""
: > "$remediate_l.holder"
trap - EXIT
exec 6>&-
"""


class HostSideLock:
    """The lock on the host itself, held by the host's shell (transport `keep`) until `release`. It lives in the
    default backup root of the user the host's commands run as (/var/lib/remediate/backups for root, else
    ~/.local/state/remediate/backups), not in a configured backup_dir: every controller reaching the host as
    that user meets there, whatever its inventory says, and the user can always create it."""

    def __init__(self, transport: Any, host: str, address: str) -> None:
        self.transport = transport
        self.host = host
        self.name = quote(f"{host}@{address}", safe="@")
        self._kept = False

    def acquire(self, me: Holder, wait: float, waiting: Callable[[str], None],
                sleep: Callable[[float], None] = time.sleep) -> str:
        """Like ControllerLock.acquire, on the host; "" without a notice, and nothing at all when the transport
        cannot keep a descriptor in the host's shell (then only the controller's lock serialises runs)."""
        if not isinstance(self.transport, Keeps):
            return ""
        began = time.monotonic()
        told = False
        where = ", on the host"
        while True:
            result = self.transport.keep(_TAKE, ["", self.name, me.dumps()])
            marks = [line.split(" ", 2)[1:] for line in result.out.splitlines() if line.startswith(MARK + " ")]
            if result.ok and any(m[0] == "LOCKED" for m in marks):
                self._kept = True
                stale = next((Holder.parse(m[1]) for m in marks if m[0] == "STALE" and len(m) > 1), None)
                return stale_notice(stale, where) if stale else ""
            info = next((m[1] for m in marks if m[0] == "HELD" and len(m) > 1), None)
            if result.rc != 75 or not any(m[0] == "HELD" for m in marks):
                raise Locked(f"{self.host}: cannot take the run lock on the host: "
                             + (result.err.strip() or f"the lock script ended with exit {result.rc} without a word"))
            holder = Holder.parse(info or "")
            waited = time.monotonic() - began
            if holder is not None and holder.gone() and waited < GONE_GRACE:
                # its controller (this machine) died a moment ago: its shell on the host is ending with it
                sleep(POLL)
                continue
            if waited >= wait:
                raise Locked(refusal(self.host, holder, where, round(waited) if wait else 0))
            if not told:
                waiting(f"waiting for the lock held by {holder.describe() if holder else 'another run'}{where} "
                        f"(up to {wait:g} s)")
                told = True
            sleep(max(POLL, 0.5))

    def release(self) -> None:
        """Empty the holder file and let the lock go, in the host's shell (closing the connection does it too)."""
        kept, self._kept = self._kept, False
        if kept and isinstance(self.transport, Keeps):
            self.transport.let_go(_LET_GO)
