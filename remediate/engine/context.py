"""What every part of one host's run shares, read-only: the host, its one transport, the options, the run."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.audit import RunAudit
from ..core.options import RunOptions
from ..inputs.inventory import Host
from ..inputs.playbook import Play
from ..transport.base import Transport
from .control import Events


@dataclass(frozen=True)
class HostContext:
    """One host's run: who, over what, with which options, reporting where."""

    host: Host
    transport: Transport
    options: RunOptions
    run_id: str
    template_path: tuple[str, ...]
    events: Events
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    audit: RunAudit | None = None

    def record(self, event: str, **fields: Any) -> None:
        """Append a record about this host to the run's audit trail (AuditError when it cannot be written)."""
        if self.audit is not None:
            self.audit.record(event, self.host.name, **fields)

    def progress(self, step: str, message: str) -> None:
        """A long step says what it is waiting for."""
        self.events.progress(self.host.name, step, message)


def playbook_key(play: Play) -> str:
    """A play's playbook as the audit trail and pending reloads name it: an absolute path."""
    return os.path.abspath(play.path)
