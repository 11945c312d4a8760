"""Catalogue faults migrations (issue 16 #5), result_backend (#6) and timezone (#3) end to end on the current set,
one lab for the three (each flow leaves it healthy, so the next needs no reset; timezone last, as it leaves the
project on Asia/Shanghai with USE_TZ = False):
- migrations, its named variant migrations-upgrade: django_celery_beat migrated back to 0011 (an upgrade without
  `migrate`), beat dies on start (ProgrammingError: column ... does not exist); the issue's own form (a database
  never migrated) is tests/e2e/test_catalogue_variants.py's;
- result_backend: CELERY_RESULT_BACKEND = the Redis broker URL while django_celery_results is installed: tasks
  run, TaskResult stays empty;
- timezone: TIME_ZONE = "Asia/Shanghai", USE_TZ = False, django-celery-beat's default DJANGO_CELERY_BEAT_TZ_AWARE:
  beat reads every last run it saved 8 hours in the future. The fix (DJANGO_CELERY_BEAT_TZ_AWARE = False, the
  future last runs rewritten as the naive UTC readings of when they ran) works on both lab sets; the naive fixes
  do not (CELERY_TIMEZONE = TIME_ZONE on either, django-celery-beat's README reset on 2.9.0), so the current set
  is the one tested. The fix refuses where its cost applies: a crontab row in another zone than
  app.conf.timezone."""
from __future__ import annotations

import subprocess
import time
from datetime import datetime, timezone

import pytest

from tests.catalogue import FaultLab, project_digest

pytestmark = pytest.mark.lab


def test_celery_migrations_not_applied(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("migrations-upgrade", "celery-migrations", finding="migrations")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "migrations")
    assert any(e.startswith("django_celery_beat: ") and "0012_periodictask_expire_seconds" in e for e in finding["evidence"])
    assert any("exited, exit code 1" in e for e in finding["evidence"]), finding
    assert any("does not exist" in e for e in finding["evidence"]), finding
    # the preview names what migrate will do, and the command it will run
    assert "Add field expire_seconds to periodictask" in seen.check
    assert "migrate django_celery_beat --noinput" in seen.check
    steps = seen.applied["hosts"]["lab"]["steps"]
    proof = next(s for s in steps if s["kind"] == "celery_tasks_run")
    assert proof["status"] == "ok" and "results since" in proof["message"], proof
    assert any(s["kind"] == "compose_restart" and s["status"] == "changed" for s in steps)


def test_results_stored_outside_django_celery_results(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("result-backend", "celery-result-backend")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "result_backend")
    assert any(e.startswith("app.conf.result_backend = 'redis://127.0.0.1:") for e in finding["evidence"]), finding
    assert "django_celery_results is in INSTALLED_APPS" in finding["evidence"]
    assert "-CELERY_RESULT_BACKEND = CELERY_BROKER_URL" in seen.check
    assert "+CELERY_RESULT_BACKEND = 'django-db'" in seen.check
    proof = next(s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_tasks_run")
    assert proof["status"] == "ok" and "results since" in proof["message"], proof


def shell(fault_lab: FaultLab, code: str) -> subprocess.CompletedProcess[str]:
    result = fault_lab.stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def crontab_zone(fault_lab: FaultLab, zone: str) -> None:
    shell(fault_lab, "from django_celery_beat.models import PeriodicTask as P\n"
                     f"c = P.objects.get(name='process-periodic-reviews').crontab; c.timezone = {zone!r}; c.save()")


def test_beat_reads_its_last_runs_in_the_zone_they_were_saved_in(fault_lab: FaultLab) -> None:
    # its cost applies: a crontab row in another zone would fire at other hours: refused, nothing changed
    fault_lab.break_("timezone")
    crontab_zone(fault_lab, "Asia/Tokyo")
    before = project_digest(fault_lab.stack)
    refused = fault_lab.cli("apply", "lab", "-p", "celery-timezone")
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert 'PeriodicTask "process-periodic-reviews" (Asia/Tokyo) would fire at other hours' in refused.stdout
    assert project_digest(fault_lab.stack) == before
    crontab_zone(fault_lab, "UTC")
    fault_lab.dirty = False  # still in the fault: the flow's lab/break leaves it there

    seen = fault_lab.flow("timezone", "celery-timezone")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "timezone")
    assert finding["evidence"][0].startswith("TIME_ZONE = 'Asia/Shanghai', USE_TZ = False, DJANGO_CELERY_BEAT_TZ_AWARE = True")
    assert any(e.startswith("PeriodicTask 'lab-heartbeat': beat reads its last run as ") and "8.0 h ahead of now" in e
               for e in finding["evidence"]), finding
    assert "+DJANGO_CELERY_BEAT_TZ_AWARE = False" in seen.check
    assert "--- lab:django_celery_beat.PeriodicTask 'lab-heartbeat'" in seen.check
    proof = next(s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_tasks_run")
    assert proof["status"] == "ok" and "results since" in proof["message"], proof

    # the fault showed after beat restarts; fixed, a restarted beat sends the every-minute row at its next minute
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert fault_lab.stack.compose("restart", "celery_beat").returncode == 0
    log = ""
    for _ in range(60):  # up to three minutes: the row is due within one
        log = fault_lab.stack.compose("logs", "--since", since, "celery_beat").stdout
        if "Sending due task lab-heartbeat" in log:
            break
        time.sleep(3)
    assert "Sending due task lab-heartbeat" in log, log[-2000:]
