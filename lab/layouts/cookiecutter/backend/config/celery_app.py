"""The Celery app of the EDMS backend (`celery -A config.celery_app`)."""
import os

from celery import Celery
from celery.schedules import crontab

# set the default Django settings module for the 'celery' program.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("edms")

# Using a string here means the worker doesn't have to serialize the configuration object to child
# processes. namespace='CELERY' means all celery-related configuration keys should have a `CELERY_` prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")

# Load task modules from all registered Django app configs.
app.autodiscover_tasks()

# The schedule in code. The same tasks also live in the database (PeriodicTask rows, seed_lab), which
# DatabaseScheduler reads: the "dual configuration" the first write-up found.
app.conf.beat_schedule = {
    "process-document-effective-dates": {
        "task": "apps.scheduler.tasks.process_document_effective_dates",
        "schedule": crontab(minute=0),
    },
    "process-document-obsoletion-dates": {
        "task": "apps.scheduler.tasks.process_document_obsoletion_dates",
        "schedule": crontab(minute=15),
    },
    "perform-system-health-check": {
        "task": "apps.scheduler.tasks.perform_system_health_check",
        "schedule": crontab(minute="*/30"),
    },
    "run-daily-integrity-check": {
        "task": "apps.audit.integrity_tasks.run_daily_integrity_check",
        "schedule": crontab(minute=0, hour=2),
    },
    "verify-audit-trail-checksums": {
        "task": "apps.audit.integrity_tasks.verify_audit_trail_checksums",
        "schedule": crontab(minute=0, hour=1, day_of_week=0),
    },
}
