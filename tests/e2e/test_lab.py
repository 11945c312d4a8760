"""The lab is a faithful target: a fresh stack has both seed faults, and is reachable through the suite's sshd."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Sshd, remediate
from tests.lab import LabStack

pytestmark = pytest.mark.lab

INTEGRITY_TASKS = {
    "apps.audit.integrity_tasks.run_daily_integrity_check",
    "apps.audit.integrity_tasks.verify_audit_trail_checksums",
}


def test_fresh_stack_has_both_seed_faults(lab_stack: LabStack) -> None:
    beat_log = lab_stack.logs("celery_beat")
    assert ". scheduler -> celery.beat.PersistentScheduler" in beat_log, beat_log[-2000:]

    registered = lab_stack.registered_tasks()
    assert "apps.scheduler.tasks.perform_system_health_check" in registered, registered
    assert not INTEGRITY_TASKS & registered, registered


def test_inventory_reaches_the_stack_through_sshd(lab_stack: LabStack, sshd: Sshd, tmp_path: Path) -> None:
    inventory = lab_stack.inventory(tmp_path / "lab.yml", sshd)

    shown = remediate("inventory", "lab", "-i", str(inventory))

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert str(lab_stack.dir) in shown.stdout
