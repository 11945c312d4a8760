"""Periodic EDMS tasks (found by autodiscover_tasks(): this module is named tasks.py)."""
import logging

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)


def _ran(name):
    logger.info("%s ran", name)
    return {"task": name, "at": timezone.now().isoformat()}


@shared_task
def perform_system_health_check():
    """Check that the database answers."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return _ran("perform_system_health_check")


@shared_task
def process_document_effective_dates():
    """Make documents effective on their effective date."""
    return _ran("process_document_effective_dates")


@shared_task
def process_document_obsoletion_dates():
    """Obsolete documents past their obsoletion date."""
    return _ran("process_document_obsoletion_dates")


@shared_task
def check_workflow_timeouts():
    """Escalate workflows past their deadline."""
    return _ran("check_workflow_timeouts")


@shared_task
def process_periodic_reviews():
    """Open the periodic reviews that are due."""
    return _ran("process_periodic_reviews")


@shared_task
def send_daily_health_report():
    """Mail the daily health report."""
    return _ran("send_daily_health_report")


@shared_task
def cleanup_celery_results():
    """Delete old task results."""
    return _ran("cleanup_celery_results")


@shared_task
def send_test_email_to_self():
    """Manual only: scheduled on 31 February, so beat never sends it."""
    return _ran("send_test_email_to_self")
