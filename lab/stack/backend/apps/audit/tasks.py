"""Audit tasks (found by autodiscover_tasks(): this module is named tasks.py)."""
from celery import shared_task


@shared_task
def archive_audit_entries():
    """Archive audit trail entries older than the retention period."""
    return {"archived": 0}
