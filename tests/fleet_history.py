"""A generated drift history of a fleet: 50 hosts, 48 half-hourly runs, worded as `remediate drift` words them.

What happens in it (run numbers from 0): 12 hosts start with beat on the wrong scheduler, 4 with task modules
nobody imports; a `--fix` at run 20 repairs most of them (a before and an after-fix run); web-17 is unreachable
in runs 30-33, web-42 in the last three; web-08's hourly task runs late every fifth run; web-23's worker is
down from run 46 on. A separate `--no-health` check set (3 runs) is recorded too, which the report keeps apart.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from remediate.drift import history
from remediate.drift import Check, CheckStatus, DriftReport, TaskState

T0 = datetime(2026, 11, 24, 22, 0, tzinfo=timezone.utc)
HOSTS = tuple(f"web-{i:02d}" for i in range(1, 51))
SCHEDULER = "celery-beat-database-scheduler"
MODULES = "celery-register-task-modules"
PLAYBOOKS = ("playbooks/site.yml",)
FILES = {SCHEDULER: f"playbooks/{SCHEDULER}.yml", MODULES: f"playbooks/{MODULES}.yml"}
WRONG_SCHEDULER = frozenset(HOSTS[i] for i in (1, 4, 6, 10, 13, 19, 24, 27, 31, 35, 38, 44))
UNIMPORTED = frozenset(HOSTS[i] for i in (2, 13, 29, 47))
STILL_WRONG = frozenset({"web-14", "web-36"})  # the fix at run 20 did not reach them
SETTINGS = "/srv/edms/backend/edms/settings/base.py"
DIFF = (f"--- {{host}}:{SETTINGS}\n+++ {{host}}:{SETTINGS}\n@@ -41,3 +41,4 @@\n"
        " CELERY_BROKER_URL = env('CELERY_BROKER_URL')\n CELERY_RESULT_BACKEND = 'django-db'\n"
        " CELERY_BEAT_SCHEDULE_FILENAME = '/tmp/celerybeat-schedule'\n"
        "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'\n")
APPS = "/srv/edms/backend/apps/audit/apps.py"
APPS_DIFF = (f"--- {{host}}:{APPS}\n+++ {{host}}:{APPS}\n@@ -7,2 +7,3 @@\n     def ready(self):\n"
             "         import apps.audit.signals  # noqa: F401\n+        import apps.audit.integrity_tasks  # noqa: F401\n")


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def host_checks(host: str, n: int, fixed: bool, at: datetime, rng: random.Random) -> tuple[list[Check], list[TaskState]]:
    """One host's checks in run n (`fixed`: after the fix of run 20)."""
    unreachable = (host == "web-17" and 30 <= n <= 33) or (host == "web-42" and n >= 45)
    if unreachable:
        why = "unreachable: [Errno 111] Connection refused (10.0.3.42:22)"
        return [Check(host, f"playbook:{p}", CheckStatus.ERROR, (why,), file=FILES[p]) for p in (MODULES, SCHEDULER)] + [
            Check(host, name, CheckStatus.ERROR, ("ssh: connection refused",))
            for name in ("containers", "beat_scheduler", "tasks_registered", "tasks_ran")
        ], []
    wrong = host in WRONG_SCHEDULER and (not fixed or host in STILL_WRONG)
    unimported = host in UNIMPORTED and not fixed
    secs = lambda: round(rng.uniform(0.6, 3.2), 2)  # noqa: E731
    diagnosis = round(rng.uniform(1.5, 6.0), 2)
    checks = [
        Check(host, f"playbook:{MODULES}",
              CheckStatus.DRIFT if unimported else CheckStatus.OK,
              (f"AppConfig.ready() imports every task module [playbooks/{MODULES}.yml:22]: would write {APPS}",)
              if unimported else (), (), APPS_DIFF.format(host=host) if unimported else "", secs(), FILES[MODULES]),
        Check(host, f"playbook:{SCHEDULER}",
              CheckStatus.DRIFT if wrong else CheckStatus.OK,
              (f"beat's settings module sets the database scheduler [playbooks/{SCHEDULER}.yml:30]: would write "
               f"{SETTINGS}",) if wrong else (), (), DIFF.format(host=host) if wrong else "", secs(), FILES[SCHEDULER]),
    ]
    worker_down = host == "web-23" and n >= 46
    checks.append(Check(host, "containers", CheckStatus.DRIFT if worker_down else CheckStatus.OK,
                        ("container_down: celery_worker: not running (exited (1) 4 minutes ago)",) if worker_down else (),
                        duration=diagnosis))
    checks.append(Check(host, "beat_scheduler", CheckStatus.DRIFT if wrong else CheckStatus.OK,
                        ("beat_scheduler: celery_beat runs celery.beat.PersistentScheduler, not django_celery_beat's "
                         "DatabaseScheduler: PeriodicTask rows never get last_run_at",) if wrong else (),
                        duration=diagnosis))
    checks.append(Check(host, "tasks_registered", CheckStatus.DRIFT if unimported else CheckStatus.OK,
                        ("unimported_task_module: apps/audit/integrity_tasks.py defines tasks but nothing imports it: "
                         "apps.audit.integrity_tasks.verify_chain is not registered",) if unimported else (),
                        duration=diagnosis))
    tasks: list[TaskState] = []
    details: list[str] = []
    if wrong or worker_down:
        for name, task in (("Verify chain", "apps.audit.integrity_tasks.verify_chain"),
                           ("Cleanup sessions", "apps.core.tasks.cleanup_sessions")):
            due = at.replace(minute=0, second=0) - timedelta(hours=1)
            tasks.append(TaskState(host, name, task, "never_run", "cron '0 * * * *' (UTC)", due.isoformat(), None,
                                   (due + timedelta(hours=2)).isoformat(), f"never run; was due {stamp(due)}"))
            details.append(f"never_run: PeriodicTask {name!r}: never run; was due {stamp(due)}")
    late = host == "web-08" and n % 5 == 4
    if late:
        due = at - timedelta(minutes=25)
        tasks.append(TaskState(host, "Index documents", "apps.search.tasks.reindex", "overdue", "every 15 minutes",
                               due.isoformat(), (due - timedelta(minutes=15)).isoformat(),
                               (due + timedelta(minutes=15)).isoformat(), f"overdue: was due {stamp(due)}"))
        details.append(f"overdue: PeriodicTask 'Index documents': last ran {stamp(due - timedelta(minutes=15))}, "
                       f"was due {stamp(due)}")
    warnings = ("never_fires: PeriodicTask 'Send Test Email': cron '0 0 31 2 *' (UTC) can never fire",) \
        if host in ("web-03", "web-31") else ()
    checks.append(Check(host, "tasks_ran", CheckStatus.DRIFT if details else CheckStatus.OK, tuple(details), warnings,
                        duration=diagnosis))
    return checks, tasks


def reports() -> list[DriftReport]:
    """The fleet's runs, in the order they happened."""
    rng = random.Random(19)
    out = []
    for n in range(48):
        at = T0 + timedelta(minutes=30 * n)
        for phase, t in [("check", at)] + ([("after-fix", at + timedelta(minutes=1))] if n == 20 else []):
            checks: list[Check] = []
            tasks: list[TaskState] = []
            for host in HOSTS:
                c, k = host_checks(host, n, n > 20 or phase == "after-fix", t, rng)
                checks += c
                tasks += k
            out.append(DriftReport("fleet", f"20261124-{n:02d}{'f' if phase == 'after-fix' else ''}", t, HOSTS,
                                   tuple(checks), tuple(tasks), phase, round(rng.uniform(38, 55), 1), PLAYBOOKS))
    # someone checked the scheduler playbook alone, without health checks, on three hosts: a set of its own
    for i in range(3):
        t = T0 + timedelta(hours=3, minutes=7 + i)
        checks = [Check(h, f"playbook:{SCHEDULER}", CheckStatus.OK, duration=1.1, file=FILES[SCHEDULER])
                  for h in HOSTS[:3]]
        out.append(DriftReport("fleet", f"manual-{i}", t, HOSTS[:3], tuple(checks), (), "check", 4.2,
                               (FILES[SCHEDULER],)))
    return sorted(out, key=lambda r: r.started_at)


def write(db: Path) -> None:
    """Record the fleet's history in `db`."""
    for report in reports():
        history.record(report, db)
