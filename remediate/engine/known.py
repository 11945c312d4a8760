"""What the engine knows of a host during a run: stable facts asked once, and in check mode what the actions
planned so far would leave, so each later step plans on that."""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..actions.base import Action
from ..facts.base import Probe
from ..transport.base import Become, Transport


class HostFacts:
    """Gathers probes over the host's transport, reusing stable answers and check mode's predictions."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        # answers of stable probes (per user asking: root may see what the login user cannot), valid until an
        # action changes something on the host
        self._stable: dict[tuple[str | None, Probe], Any] = {}
        # check mode: what planned actions would leave, by subject (a file's path)
        self._predicted: dict[Hashable, Any] = {}

    def gather(self, probes: tuple[Probe, ...], transport: Transport | None = None,
               become: Become | None = None) -> dict[Probe, Any]:
        """Each probe's answer: predicted, remembered (stable), or asked now (over `transport`: the host's, as
        the step's user)."""
        transport = transport or self._transport
        who = become.user if become else None
        facts: dict[Probe, Any] = {}
        for probe in probes:
            subject = probe.subject()
            if subject is not None and subject in self._predicted:
                facts[probe] = self._predicted[subject]
            elif probe.stable:
                if (who, probe) not in self._stable:
                    self._stable[who, probe] = probe.gather(transport)
                facts[probe] = self._stable[who, probe]
            else:
                facts[probe] = probe.gather(transport)
        return facts

    def predict(self, action: Action) -> None:
        """Check mode: later steps see what this action would leave."""
        self._predicted.update(action.predict())

    def changed(self) -> None:
        """Something on the host changed: stable answers are asked again."""
        self._stable.clear()
