"""diagnose's judgement, table-driven: what one read-only pass saw (CeleryFacts) -> the findings, no host."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from remediate import celery as cel
from remediate.diagnose import DiagnoseReport, HostDiagnosis, Severity, judge
from remediate.facts.celery import CeleryFacts, CeleryState
from remediate.facts.containers import Container

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
STARTED = NOW - timedelta(hours=2)
DB = "django_celery_beat.schedulers:DatabaseScheduler"
P, W = Severity.PROBLEM, Severity.WARNING


def container(service: str, running: bool = True, health: str | None = None) -> Container:
    return Container(f"id-{service}", f"edms-{service}-1", service, "running" if running else "exited", running,
                     health, STARTED if running else None, "sha256:img", 0 if running else 1, 0)


def task(name: str, cron: str = "0 * * * *", last_run: datetime | None = NOW - timedelta(minutes=30),
         enabled: bool = True) -> cel.Task:
    return cel.Task(name, f"apps.t.{name}", enabled, cron, "UTC", None, last_run, 1 if last_run else 0)


def state(tasks: tuple[cel.Task, ...] = (), setting: str | None = DB, app: dict[str, Any] | None = None) -> CeleryState:
    conf = {"beat_scheduler": DB, **(app or {})}
    return CeleryState({"CELERY_BEAT_SCHEDULER": setting} if setting else {}, "edms.settings", "/app/edms/settings.py",
                       conf, tasks, None, NOW)


def probe(*rows: cel.RowVerdict, effective: str = DB) -> cel.BeatProbe:
    return cel.BeatProbe({"celery": "5.4.0", "django_celery_beat": "2.7.0"}, DB, effective, True, 180.0, None, 5.0,
                         rows, ("celery.backend_cleanup",))


SERVICES = {s: (container(s),) for s in ("backend", "celery_worker", "celery_beat")}
APPS = "from django.apps import AppConfig\n\nclass AuditConfig(AppConfig):\n    name = 'apps.audit'\n"
INTEGRITY = "from celery import shared_task\n\n@shared_task\ndef verify_chain():\n    pass\n"

HEALTHY = CeleryFacts(
    services=SERVICES, beat_command=("celery", "-A", "edms", "beat"), beat_started=STARTED,
    banner="django_celery_beat.schedulers.DatabaseScheduler", asked="celery_beat", state=state((task("hourly"),)),
    probe=probe(), source={}, worker_present=True, registered=frozenset({"apps.t.hourly"}),
)

CASES: dict[str, tuple[CeleryFacts, list[tuple[Severity, str]]]] = {
    "healthy": (HEALTHY, []),
    "the first write-up: beat on the PersistentScheduler, the setting never reached Django": (
        replace(HEALTHY, banner="celery.beat.PersistentScheduler", state=state((task("hourly", last_run=None),), None)),
        [(P, "beat_scheduler"), (P, "beat_scheduler_setting"), (P, "never_run")]),
    "a service without a running container": (
        replace(HEALTHY, services={**SERVICES, "celery_worker": (container("celery_worker", False),)}),
        [(P, "container_down")]),
    "an unhealthy container": (
        replace(HEALTHY, services={**SERVICES, "backend": (container("backend", health="unhealthy"),)}),
        [(P, "container_unhealthy")]),
    "beat's command forces a scheduler": (
        replace(HEALTHY, beat_command=("celery", "-A", "edms", "beat", "-S", "celery.beat:PersistentScheduler")),
        [(P, "beat_scheduler_forced")]),
    "the setting is right but code sets another scheduler": (
        replace(HEALTHY, state=state((task("hourly"),), app={"beat_scheduler": "celery.beat:PersistentScheduler"})),
        [(P, "beat_scheduler_code")]),
    "schedules in code and rows": (
        replace(HEALTHY, state=state((task("hourly"),), app={"beat_schedule": {"x": {"task": "apps.t.hourly"}}})),
        [(W, "dual_configuration")]),
    "overdue, and a row that can never fire": (
        replace(HEALTHY, beat_started=NOW - timedelta(days=3), registered=frozenset({"apps.t.daily", "apps.t.manual"}),
                state=state((task("daily", "0 6 * * *", NOW - timedelta(days=2)), task("manual", "0 0 31 2 *", None)))),
        [(P, "overdue"), (W, "never_fires")]),
    "the second write-up: a task module nobody imports": (
        replace(HEALTHY, source={"apps/audit/apps.py": APPS, "apps/audit/integrity_tasks.py": INTEGRITY}),
        [(P, "unimported_task_module")]),
    "the worker does not answer": (replace(HEALTHY, registered=None), [(P, "worker_silent")]),
    "a scheduled task the worker lacks": (replace(HEALTHY, registered=frozenset()), [(P, "unregistered_tasks")]),
    "celery's built-ins are asked of beat's own app": (
        replace(HEALTHY, registered=frozenset({"apps.t.hourly"}),
                state=state((task("hourly"), replace(task("cleanup"), task="celery.backend_cleanup")))), []),
    "leftovers of the PersistentScheduler": (
        replace(HEALTHY, stale=((int(STARTED.timestamp()) - 600, "/tmp/celerybeat.pid"),
                                (int(STARTED.timestamp()), "celerybeat-schedule"))),
        [(W, "stale_pid_file"), (W, "stale_schedule_file")]),
    "beat's probe gave no answer": (replace(HEALTHY, probe=None, probe_warning="celery_beat: no module named x"),
                                    [(W, "beat_probe")]),
    "a row beat dies on, as it runs now": (
        replace(HEALTHY, probe=probe(cel.RowVerdict("bad", "dies", "ValueError: day"))), [(P, "beat_row")]),
    "a row beat would die on once it runs the probed scheduler": (
        replace(HEALTHY, probe=probe(cel.RowVerdict("bad", "dies", "ValueError"), effective="celery.beat:Persistent")),
        [(W, "beat_row")]),
    "the pass stopped after the containers (the state query failed)": (
        replace(HEALTHY, banner="celery.beat.PersistentScheduler", state=None, source=None, registered=None,
                worker_present=False, error="state query in celery_beat printed no REMEDIATE_JSON: line"),
        [(P, "beat_scheduler")]),
    "unreachable: nothing is judged": (CeleryFacts(error="unreachable: refused", unreachable=True), []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_findings(case: str) -> None:
    facts, expected = CASES[case]
    findings, _ = judge(facts)
    assert [(f.severity, f.code) for f in findings] == expected, [f.message for f in findings]


def test_findings_name_what_they_saw() -> None:
    findings, tasks = judge(CASES["the first write-up: beat on the PersistentScheduler, the setting never reached Django"][0])
    by = {f.code: f.message for f in findings}
    assert by["beat_scheduler"].startswith("celery_beat runs celery.beat.PersistentScheduler")
    assert "CELERY_BEAT_SCHEDULER is None in edms.settings (/app/edms/settings.py in celery_beat)" in by["beat_scheduler_setting"]
    assert [(t.task.name, t.status) for t in tasks] == [("hourly", "never_run")]


def test_exit_codes_come_from_the_one_table() -> None:
    healthy = HostDiagnosis("a")
    sick = HostDiagnosis("b", judge(CASES["a service without a running container"][0])[0])
    assert int(DiagnoseReport((healthy,)).exit_code()) == 0
    assert int(DiagnoseReport((healthy, sick)).exit_code()) == 2
    assert int(DiagnoseReport((sick, HostDiagnosis("c", error="unreachable: x"))).exit_code()) == 1
