"""Catalogue fault beat_pidfile (issue 16 #1) end to end on the old set (celery 5.4.0), where it is a restart
loop; on the current set (celery 5.7.0 removes a pidfile holding its own pid) beat runs on and diagnose only
warns: the fault's behaviour differs between the sets, so the test runs where users hit it."""
from __future__ import annotations

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab
CATALOGUE_VERSIONS = "old"


def test_a_stale_beat_pidfile(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("beat-pidfile", "celery-beat-pidfile")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "beat_pidfile")
    assert "Pidfile (/var/lib/celery/celerybeat.pid) already exists" in finding["evidence"]
    assert any("exit code 73" in e for e in finding["evidence"])
    assert any(e.endswith("at /var/lib/celery, which outlives the container") for e in finding["evidence"])
    assert '"--pidfile", "/var/lib/celery/celerybeat.pid"]' in seen.check
    proof = [s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_queues" and s["status"] == "ok"][-1]
    assert "TaskResult rows apps." in proof["message"], proof
