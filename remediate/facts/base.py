"""What a probe is: a read-only question to a host, asked over the host's one transport."""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from ..transport.base import Transport


class Probe:
    """A read-only question to a host; subclasses are frozen dataclasses, so they can key the facts mapping."""

    # True when the answer holds until something on the host is changed (the compose model): the host's
    # runner then asks once and reuses it, instead of once per step
    stable: ClassVar[bool] = False

    def gather(self, transport: Transport) -> Any:
        """Ask the host."""
        raise NotImplementedError

    def subject(self) -> Hashable | None:
        """What on the host the answer describes, when an action can predict it for check mode (a file's path)."""
        return None


Facts = Mapping[Probe, Any]
