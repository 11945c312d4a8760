"""The lab is a faithful target: a fresh stack is the first write-up's server (its PeriodicTask table verbatim,
Celery's default beat sync) with both seed faults, and is reachable through the suite's sshd."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, LabFactory, SharedLabs, Sshd, remediate
from tests.lab import VERSION_SETS, LabStack, Versions, run_script

pytestmark = pytest.mark.lab

SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
SCHEDULER_LINE = "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'"
INTEGRITY_TASKS = {
    "apps.audit.integrity_tasks.run_daily_integrity_check",
    "apps.audit.integrity_tasks.verify_audit_trail_checksums",
}


# The first write-up's "Task Schedule Reference" (schedules as crontabs, UTC), "✅ All tasks enabled", plus
# the lab's one deviation: lab-heartbeat, due every minute.
WRITE_UP_TABLE = {
    "process-document-effective-dates": "0 * * * *",
    "process-document-obsoletion-dates": "15 * * * *",
    "perform-system-health-check": "*/30 * * * *",
    "check-workflow-timeouts": "0 0,4,8,12,16,20 * * *",
    "process-periodic-reviews": "0 9 * * *",
    "send-daily-health-report": "0 7 * * *",
    "cleanup-celery-results": "0 3 * * *",
    "run-daily-integrity-check": "0 2 * * *",
    "verify-audit-trail-checksums": "0 1 * * 0",
    "Send Test Email": "0 0 31 2 *",
}
HEARTBEAT = {"lab-heartbeat": "* * * * *"}
ROWS = ("import json\nfrom django_celery_beat.models import PeriodicTask as P\n"
        "print(json.dumps({t.name: [t.enabled, t.task, ' '.join((t.crontab.minute, t.crontab.hour, "
        "t.crontab.day_of_month, t.crontab.month_of_year, t.crontab.day_of_week)), str(t.crontab.timezone), "
        "t.last_run_at, t.total_run_count] for t in P.objects.all()}, default=str))\n")


def periodic_tasks(stack: LabStack) -> dict[str, list[object]]:
    """name -> [enabled, task, crontab, timezone, last_run_at, total_run_count] as the database holds them."""
    result = stack.exec("backend", "python", "manage.py", "shell", "-c", ROWS)
    assert result.returncode == 0, result.stderr
    rows: dict[str, list[object]] = json.loads(result.stdout.strip().splitlines()[-1])
    return rows


def distribution(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_each_version_set_runs_the_versions_it_pins(shared_labs: SharedLabs, versions: Versions) -> None:
    stack = shared_labs(versions)
    pinned = {distribution(name): version for name, version in stack.pinned().items()}
    assert (stack.dir / "backend" / "requirements.txt").read_text() == (ROOT / "lab" / "versions" / f"{versions}.txt").read_text()
    assert f"LAB_VERSIONS={versions}\n" in (stack.dir / ".env").read_text()

    for service in ("backend", "celery_worker", "celery_beat"):
        listed = stack.exec(service, "pip", "list", "--format", "json", "--disable-pip-version-check")
        assert listed.returncode == 0, listed.stderr
        installed = {distribution(d["name"]): d["version"] for d in json.loads(listed.stdout)}
        assert {name: installed.get(name) for name in pinned} == pinned, service
    celery_version = stack.exec("celery_worker", "celery", "--version").stdout.split()[0]
    assert celery_version == pinned["celery"]
    assert f"celery beat v{pinned['celery']} " in stack.logs("celery_beat")
    assert stack.registered_tasks(), "the worker answers `celery inspect registered`"


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_fresh_stack_seeds_the_write_ups_table_verbatim(shared_labs: SharedLabs, versions: Versions) -> None:
    rows = periodic_tasks(shared_labs(versions))

    assert {name: row[2] for name, row in rows.items()} == WRITE_UP_TABLE | HEARTBEAT
    assert all(row[0] is True for row in rows.values()), "every row is enabled, as in the write-up"
    assert {row[3] for row in rows.values()} == {"UTC"}
    assert rows["Send Test Email"][1] == "apps.scheduler.tasks.send_test_email_to_self"
    assert {(row[4], row[5]) for row in rows.values()} == {(None, 0)}, "every row never run"


def test_fresh_stack_runs_celerys_default_beat_sync(lab_stack: LabStack) -> None:
    in_tree = [p for p in (lab_stack.dir / "backend").rglob("*.py") if "CELERY_BEAT_SYNC_EVERY" in p.read_text()]
    assert in_tree == [], in_tree
    assert beat_sync_every(lab_stack) == "0", "celery's default (django-celery-beat then syncs every 3 minutes)"


def beat_sync_every(stack: LabStack) -> str:
    """app.conf.beat_sync_every as beat's container loads it."""
    effective = stack.exec("celery_beat", "python", "-c",
                           "import django; django.setup(); from celery import current_app; "
                           "print(current_app.conf.beat_sync_every)")
    assert effective.returncode == 0, effective.stderr
    return effective.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_fresh_stack_has_both_seed_faults(shared_labs: SharedLabs, versions: Versions) -> None:
    stack = shared_labs(versions)
    beat_log = stack.logs("celery_beat")
    assert ". scheduler -> celery.beat.PersistentScheduler" in beat_log, beat_log[-2000:]
    assert "CELERY_BEAT_SCHEDULER" not in (stack.dir / "backend" / "edms" / "settings" / "base.py").read_text()

    registered = stack.registered_tasks()
    assert "apps.scheduler.tasks.perform_system_health_check" in registered, registered
    assert not INTEGRITY_TASKS & registered, registered


def test_inventory_reaches_the_stack_through_sshd(lab_stack: LabStack, sshd: Sshd, tmp_path: Path) -> None:
    inventory = lab_stack.inventory(tmp_path / "lab.yml", sshd)

    shown = remediate("inventory", "lab", "-i", str(inventory))

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert str(lab_stack.dir) in shown.stdout


def test_mounted_variant_takes_a_settings_change_on_restart(lab_factory: LabFactory) -> None:
    # beat is switched to the DatabaseScheduler here: the named variant without the 31-February row, which
    # the old version set's DatabaseScheduler dies on
    stack = lab_factory("mounted", feb31="disabled", fast_sync=True)
    assert [name for name, row in periodic_tasks(stack).items() if not row[0]] == ["Send Test Email"]
    assert beat_sync_every(stack) == "1", "the fast-sync variant's settings say CELERY_BEAT_SYNC_EVERY = 1"
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
    rows = periodic_tasks(stack)
    assert {name: row[2] for name, row in rows.items()} == WRITE_UP_TABLE | HEARTBEAT
    assert {(row[0], row[4], row[5]) for row in rows.values()} == {(True, None, 0)}, rows


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_cookiecutter_layout_has_both_seed_faults_where_such_projects_keep_things(shared_labs: SharedLabs,
                                                                                  versions: Versions) -> None:
    stack = shared_labs(versions, "cookiecutter")
    assert stack.facts.celery_app == "config.celery_app"
    # compose finds compose.yaml itself; DJANGO_SETTINGS_MODULE comes from the env_file, not environment:
    assert (stack.dir / "compose.yaml").is_file() and not (stack.dir / "docker-compose.yml").exists()
    assert "COMPOSE_FILE" not in (stack.dir / ".env").read_text()
    services = yaml.safe_load((stack.dir / "compose.yaml").read_text())["services"]
    for service in ("backend", "celery_worker", "celery_beat"):
        assert "DJANGO_SETTINGS_MODULE" not in services[service]["environment"], service
        assert services[service]["env_file"] == ["./.envs/.production/.django"], service
    assert services["celery_beat"]["command"][:3] == ["celery", "-A", "config.celery_app"]
    assert ("DJANGO_SETTINGS_MODULE=config.settings.production\n"
            in (stack.dir / ".envs" / ".production" / ".django").read_text())
    in_beat = stack.exec("celery_beat", "python", "-c",
                         "import os, sys, django; django.setup(); from django.conf import settings; "
                         "print(os.environ['DJANGO_SETTINGS_MODULE'], sys.modules[settings.SETTINGS_MODULE].__file__)")
    assert in_beat.returncode == 0, in_beat.stderr
    assert in_beat.stdout.split() == ["config.settings.production", "/app/config/settings/production.py"]
    settings = stack.dir / "backend" / "config" / "settings"
    assert "from .base import *" in (settings / "production.py").read_text()
    assert f"celery beat v{stack.pinned()['celery']} " in stack.logs("celery_beat")

    # the same two faults, and the same table
    assert ". scheduler -> celery.beat.PersistentScheduler" in stack.logs("celery_beat")
    assert not [p.name for p in settings.glob("*.py") if "CELERY_BEAT_SCHEDULER" in p.read_text()]
    registered = stack.registered_tasks()
    assert "apps.scheduler.tasks.perform_system_health_check" in registered, registered
    assert not INTEGRITY_TASKS & registered, registered
    rows = periodic_tasks(stack)
    assert {name: row[2] for name, row in rows.items()} == WRITE_UP_TABLE | HEARTBEAT
    assert all(row[0] is True for row in rows.values())
