"""The lab is a faithful target: a fresh stack has both seed faults, and is reachable through the suite's sshd."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, LabFactory, Sshd, remediate
from tests.lab import LabStack, run_script

pytestmark = pytest.mark.lab

SCHEDULER_LINE = "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'"
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


def test_mounted_variant_takes_a_settings_change_on_restart(lab_factory: LabFactory) -> None:
    stack = lab_factory("mounted")
    settings = stack.dir / "backend" / "edms" / "settings" / "base.py"
    settings.write_text(settings.read_text() + SCHEDULER_LINE + "\n")

    restarted = stack.compose("restart", "celery_beat")

    assert restarted.returncode == 0, restarted.stderr
    # The log keeps the first run's banner too: wait for the restarted process's, the second one.
    banners = stack.wait_for_log("celery_beat", ". scheduler -> ", count=2)
    assert banners[-1].strip() == ". scheduler -> django_celery_beat.schedulers.DatabaseScheduler", banners
    in_container = stack.exec("celery_beat", "grep", "-c", "^CELERY_BEAT_SCHEDULER", "/app/edms/settings/base.py")
    assert in_container.stdout.strip() == "1"


def test_baked_variant_keeps_old_code_on_restart_and_reset_restores_broken(lab_factory: LabFactory) -> None:
    stack = lab_factory("baked")
    settings = stack.dir / "backend" / "edms" / "settings" / "base.py"
    settings.write_text(settings.read_text() + SCHEDULER_LINE + "\n")
    (settings.parent / "base.py.remediate-x.bak").write_text("left behind by a run\n")
    bump = stack.exec("backend", "python", "manage.py", "shell", "-c",
                      "from django_celery_beat.models import PeriodicTask; PeriodicTask.objects.update(total_run_count=7)")
    assert bump.returncode == 0, bump.stderr

    assert stack.compose("restart", "celery_beat").returncode == 0
    banners = stack.wait_for_log("celery_beat", ". scheduler -> ", count=2)
    assert banners[-1].strip() == ". scheduler -> celery.beat.PersistentScheduler", banners

    run_script("reset", "--dir", str(stack.dir))

    assert settings.read_text() == (ROOT / "lab" / "stack" / "backend" / "edms" / "settings" / "base.py").read_text()
    assert not (settings.parent / "base.py.remediate-x.bak").exists()
    assert ". scheduler -> celery.beat.PersistentScheduler" in stack.logs("celery_beat")
    counts = stack.exec("backend", "python", "manage.py", "shell", "-c",
                        "from django_celery_beat.models import PeriodicTask as P; "
                        "print(sorted({(t.total_run_count, t.last_run_at) for t in P.objects.all()}))")
    assert counts.stdout.strip() == "[(0, None)]", counts.stdout + counts.stderr
