"""Where remediate keeps its own state on the controller: audit trail, pending reloads, drift history.

Resolved once, at the entry (the CLI, or a caller of api), and passed down.
"""
from __future__ import annotations

import os
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
    def history(self) -> Path:
        """The drift history database."""
        return self.path / "drift.sqlite3"
