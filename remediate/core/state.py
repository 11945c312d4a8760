"""Where remediate keeps its own state on the controller: audit trail, pending reloads, drift history.

Resolved once, at the entry (the CLI, or a caller of api), and passed down.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StateDir:
    """The state directory and the files in it (none is created here)."""

    path: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StateDir:
        """REMEDIATE_STATE_DIR, else $XDG_STATE_HOME/remediate, else ~/.local/state/remediate."""
        explicit = environ.get("REMEDIATE_STATE_DIR")
        if explicit:
            return cls(Path(explicit).expanduser())
        xdg = environ.get("XDG_STATE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
        return cls(base / "remediate")

    @property
    def audit(self) -> Path:
        """The audit trail, audit.jsonl (audit.head beside it)."""
        return self.path / "audit.jsonl"

    @property
    def pending(self) -> Path:
        """One JSON file per host of the reloads owed there."""
        return self.path / "pending"

    @property
    def locks(self) -> Path:
        """One lock file per host, held by the run that has the host (engine/lock.py)."""
        return self.path / "locks"

    @property
    def history(self) -> Path:
        """The drift history database."""
        return self.path / "drift.sqlite3"


# a state file's temp copy before its rename: .NAME.PID.THREAD (audit.head, a host's pending reloads)
_TEMP = re.compile(r"^\..+\.(\d+)\.(\d+)$")


def sweep_temp_files(state: StateDir) -> list[str]:
    """Remove the temp files of state-directory writers whose process is gone (killed between writing and
    renaming); return what was removed, for the run to say so."""
    removed = []
    for directory in (state.path, state.pending):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            found = _TEMP.match(name)
            if not found or _alive(int(found.group(1))):
                continue
            path = os.path.join(directory, name)
            try:
                os.unlink(path)
            except OSError:
                continue
            removed.append(f"{path} (pid {found.group(1)} is gone)")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
