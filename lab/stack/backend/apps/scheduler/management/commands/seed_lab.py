"""Create the staging PeriodicTask rows when they are missing: the first write-up's table verbatim (ten rows, all
enabled, the same crontabs in UTC, "Send Test Email" on 31 February included) plus the lab's lab-heartbeat.

Idempotent: rows that exist are left alone (their last_run_at and total_run_count survive restarts).
--reset puts every row back to "never run", deletes TaskResults, and restores the seeded schedules.
LAB_FEB31=disabled (lab/up --feb31 disabled, a named variant the write-up lacks) seeds "Send Test Email" disabled.
"""
import os

from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks
from django_celery_results.models import TaskResult

# name, task, (minute, hour, day_of_month, month_of_year, day_of_week): every row enabled, as in the write-up
TASKS = [
    ("process-document-effective-dates", "apps.scheduler.tasks.process_document_effective_dates", ("0", "*", "*", "*", "*")),
    ("process-document-obsoletion-dates", "apps.scheduler.tasks.process_document_obsoletion_dates", ("15", "*", "*", "*", "*")),
    ("perform-system-health-check", "apps.scheduler.tasks.perform_system_health_check", ("*/30", "*", "*", "*", "*")),
    ("check-workflow-timeouts", "apps.scheduler.tasks.check_workflow_timeouts", ("0", "0,4,8,12,16,20", "*", "*", "*")),
    ("process-periodic-reviews", "apps.scheduler.tasks.process_periodic_reviews", ("0", "9", "*", "*", "*")),
    ("send-daily-health-report", "apps.scheduler.tasks.send_daily_health_report", ("0", "7", "*", "*", "*")),
    ("cleanup-celery-results", "apps.scheduler.tasks.cleanup_celery_results", ("0", "3", "*", "*", "*")),
    ("run-daily-integrity-check", "apps.audit.integrity_tasks.run_daily_integrity_check", ("0", "2", "*", "*", "*")),
    ("verify-audit-trail-checksums", "apps.audit.integrity_tasks.verify_audit_trail_checksums", ("0", "1", "*", "*", "0")),
    # Manual only ("Feb 31 (never)" in the write-up's table), and enabled like every row there.
    ("Send Test Email", "apps.scheduler.tasks.send_test_email_to_self", ("0", "0", "31", "2", "*")),
    # The lab's one deviation from the write-up: a row due every minute, so a verification need not wait for
    # the half-hourly health check.
    ("lab-heartbeat", "apps.scheduler.tasks.perform_system_health_check", ("*", "*", "*", "*", "*")),
]


class Command(BaseCommand):
    help = "Create the staging PeriodicTask rows when missing (--reset: back to never run)."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="never-run state, no TaskResults, seeded schedules")

    @transaction.atomic
    def handle(self, *args, reset=False, **options):
        created = 0
        feb31 = os.environ.get("LAB_FEB31", "enabled") != "disabled"
        for name, task, (minute, hour, dom, moy, dow) in TASKS:
            enabled = feb31 or name != "Send Test Email"
            schedule, _ = CrontabSchedule.objects.get_or_create(
                minute=minute, hour=hour, day_of_month=dom, month_of_year=moy, day_of_week=dow, timezone="UTC",
            )
            row = PeriodicTask.objects.filter(name=name).first()
            if row is None:
                PeriodicTask.objects.create(name=name, task=task, crontab=schedule, enabled=enabled)
                created += 1
            elif reset:
                row.task, row.crontab, row.interval, row.enabled = task, schedule, None, enabled
                row.last_run_at, row.total_run_count = None, 0
                row.save()
        if reset:
            names = [entry[0] for entry in TASKS]
            # Rows beat added from app.conf.beat_schedule (DatabaseScheduler syncs them) or for its own cleanup.
            PeriodicTask.objects.exclude(name__in=names).delete()
            PeriodicTask.objects.update(last_run_at=None, total_run_count=0)
            TaskResult.objects.all().delete()
            PeriodicTasks.update_changed()
        self.stdout.write(f"seed_lab: {created} PeriodicTask rows created, {PeriodicTask.objects.count()} in total"
                          + (", reset to never run" if reset else ""))
