"""Catalogue fault result_backend (issue 16 #6) end to end on the current set: CELERY_RESULT_BACKEND = the Redis
broker URL while django_celery_results is installed: tasks run, TaskResult stays empty."""
from __future__ import annotations

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab


def test_results_stored_outside_django_celery_results(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("result-backend", "celery-result-backend")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "result_backend")
    assert any(e.startswith("app.conf.result_backend = 'redis://127.0.0.1:") for e in finding["evidence"]), finding
    assert "django_celery_results is in INSTALLED_APPS" in finding["evidence"]
    assert "-CELERY_RESULT_BACKEND = CELERY_BROKER_URL" in seen.check
    assert "+CELERY_RESULT_BACKEND = 'django-db'" in seen.check
    proof = next(s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_tasks_run")
    assert proof["status"] == "ok" and "results since" in proof["message"], proof
