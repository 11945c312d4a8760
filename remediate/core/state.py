"""Where remediate keeps its own state on the controller: audit trail, drift history, pending reloads."""
from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """REMEDIATE_STATE_DIR, else $XDG_STATE_HOME/remediate, else ~/.local/state/remediate (not created here)."""
    explicit = os.environ.get("REMEDIATE_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "remediate"
