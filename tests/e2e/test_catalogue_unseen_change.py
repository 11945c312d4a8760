"""Catalogue fault unseen_change (issue 16 #4) end to end on the old set (django-celery-beat 2.7.0), where beat
never sees a row enabled by QuerySet.update() until PeriodicTasks is bumped; 2.9.0 reloads its whole schedule
every 300 s and so recovers by itself after up to five minutes: the behaviour differs, the test runs where the
fault stays."""
from __future__ import annotations

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab
CATALOGUE_VERSIONS = "old"


def test_a_row_enabled_by_update_is_seen_after_the_bump(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("unseen-change", "celery-unseen-change")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "unseen_change")
    assert "'lab-heartbeat'" in finding["message"]
    assert any(e.startswith("PeriodicTask 'lab-heartbeat' (cron '* * * * *' (UTC)) is enabled, was due ")
               and 'has no "Sending due task lab-heartbeat"' in e for e in finding["evidence"]), finding
    assert "PeriodicTasks '1': last_update" in seen.check and "@@ enabled but never loaded by beat" in seen.check
    steps = seen.applied["hosts"]["lab"]["steps"]
    assert any(s["kind"] == "compose_logs" and s["status"] == "ok" and "Schedule changed" in s["message"] for s in steps)
    proof = next(s for s in steps if s["kind"] == "celery_tasks_run")
    assert proof["status"] == "ok" and "lab-heartbeat" in proof["message"] and "results since" in proof["message"], proof
    # no restart: beat's container is the one it was
    assert not any(s["kind"].startswith("compose_re") for s in steps)
