"""Catalogue faults beat_pidfile and two_beats (issue 16 #1, #7) end to end on one lab instance of the old set
(celery 5.4.0). The stale pidfile is a restart loop there; on the current set (celery 5.7.0 removes a pidfile
holding its own pid) beat runs on and diagnose only warns, so it is tested where users hit it. Two beats are
the compose model's and behave alike on both sets; they share this instance."""
from __future__ import annotations

import json

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab
CATALOGUE_VERSIONS = "old"


def test_a_stale_beat_pidfile(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("beat-pidfile", "celery-beat-pidfile")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "beat_pidfile")
    assert "Pidfile (/var/lib/celery/celerybeat.pid) already exists" in finding["evidence"]
    assert any(e.startswith("container ") and e.endswith(" restart(s)") for e in finding["evidence"])
    assert any(e.endswith("at /var/lib/celery, which outlives the container") for e in finding["evidence"])
    assert '"--pidfile", "/var/lib/celery/celerybeat.pid"]' in seen.check
    proof = [s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_queues" and s["status"] == "ok"][-1]
    assert "TaskResult rows apps." in proof["message"], proof


def test_two_beats(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("two-beats", "celery-two-beats")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "two_beats")
    assert finding["message"] == "2 beats run: every periodic task is sent once by each"
    assert any(e.startswith("celery_worker: 1 container(s), command: celery -A edms worker -B") for e in finding["evidence"])
    assert '-    command: ["celery", "-A", "edms", "worker", "-B",' in seen.check
    model = json.loads(fault_lab.stack.compose("config", "--format", "json").stdout)
    assert "-B" not in model["services"]["celery_worker"]["command"]
    assert "beat" in model["services"]["celery_beat"]["command"]
