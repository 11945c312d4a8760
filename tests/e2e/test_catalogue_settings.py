"""Catalogue faults migrations (issue 16 #5) and result_backend (#6) end to end on the current set, one lab for
both (each flow leaves it healthy, so the second needs no reset):
- migrations: django_celery_beat migrated back to 0011 (an upgrade without `migrate`), beat dies on start
  (ProgrammingError: column ... does not exist);
- result_backend: CELERY_RESULT_BACKEND = the Redis broker URL while django_celery_results is installed: tasks
  run, TaskResult stays empty."""
from __future__ import annotations

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab


def test_celery_migrations_not_applied(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("migrations", "celery-migrations")
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
