"""Catalogue fault two_beats (issue 16 #7) end to end on a lab instance of the current set."""
from __future__ import annotations

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab


def test_two_beats(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("two-beats", "celery-two-beats")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "two_beats")
    assert finding["message"] == "2 beats run: every periodic task is sent once by each"
    assert any(e.startswith("celery_worker: 1 container(s), command: celery -A edms worker -B") for e in finding["evidence"])
    assert '-    command: ["celery", "-A", "edms", "worker", "-B",' in seen.check
    worker = fault_lab.stack.compose("config", "--format", "json").stdout
    assert '"-B"' not in worker
