"""The catalogue's faults read from the state query and beat's log (celery/state_faults.py), pure: the time zone
misreading, rows beat never loaded, migrations not applied, the result backend; and diagnose's findings for them.
The values are the lab's, as measured on both version sets (README "The catalogue")."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from remediate.celery import state_faults as sf
from remediate.celery.schedules import parse_tasks
from remediate.diagnose import judge
from remediate.facts.celery import CeleryFacts, parse_state

NOW = "2026-12-01T12:02:23+00:00"
SHANGHAI = {"TIME_ZONE": "Asia/Shanghai", "USE_TZ": False, "DJANGO_CELERY_BEAT_TZ_AWARE": True, "CELERY_TIMEZONE": "UTC",
            "CELERY_BEAT_SCHEDULER": "django_celery_beat.schedulers:DatabaseScheduler", "CELERY_RESULT_BACKEND": "django-db"}
APP = {"timezone": "UTC", "enable_utc": True, "result_backend": "django-db",
       "beat_scheduler": "django_celery_beat.schedulers:DatabaseScheduler"}


def row(name: str = "lab-heartbeat", cron: str = "* * * * *", tz: str = "UTC", enabled: bool = True,
        **extra: object) -> dict[str, object]:
    minute, hour, dom, month, dow = cron.split()
    return {"name": name, "task": "apps.scheduler.tasks.perform_system_health_check", "enabled": enabled,
            "one_off": False, "total_run_count": 3, "interval": None, "last_run_at": None,
            "crontab": {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": month,
                        "day_of_week": dow, "timezone": tz}, **extra}


# Under USE_TZ = False Django hands back 20:02 (Shanghai) for a run at 12:02 UTC; celery reads it as 20:02 UTC.
MISREAD = row(last_run_at="2026-12-01T12:02:00.076380+00:00", last_run_at_beat="2026-12-01T20:02:00.076380+00:00",
              last_run_at_naive="2026-12-01T20:02:00.076380")


def state(settings: dict[str, object] = SHANGHAI, rows: list[dict[str, object]] | None = None,
          **extra: object) -> dict[str, object]:
    return {"now": NOW, "settings": settings, "app": APP, "periodic_tasks": [MISREAD] if rows is None else rows,
            "installed": {"django_celery_beat": True, "django_celery_results": True},
            "task_results": {"available": True, "count": 3}, "migrations": {"unapplied": {}}, **extra}


def facts(doc: dict[str, object], **parts: object) -> CeleryFacts:
    return CeleryFacts(state=parse_state(doc), **parts)  # type: ignore[arg-type]


def codes(f: CeleryFacts) -> set[str]:
    return {x.code for x in judge(f)[0]} & {"timezone", "unseen_change", "migrations", "result_backend"}


# --- time zone -----------------------------------------------------------------------------------------------

def test_timezone_misread_names_the_values_and_the_rows_beat_reads_in_the_future() -> None:
    seen = sf.timezone_evidence(SHANGHAI, APP, [MISREAD], datetime.fromisoformat(NOW))
    assert seen is not None and "naive Asia/Shanghai" in seen.message
    assert "USE_TZ = False" in seen.evidence[0] and "DJANGO_CELERY_BEAT_TZ_AWARE = True" in seen.evidence[0]
    assert "beat reads its last run as 2026-12-01 20:02:00Z, 8.0 h ahead of now (it ran at 2026-12-01 12:02:00Z)" in seen.evidence[1]
    assert codes(facts(state())) == {"timezone"}


@pytest.mark.parametrize("settings", [
    {**SHANGHAI, "USE_TZ": True},                          # aware datetimes: Django hands back the instant
    {**SHANGHAI, "DJANGO_CELERY_BEAT_TZ_AWARE": False},    # the fix: beat saves naive UTC readings
    {**SHANGHAI, "TIME_ZONE": "UTC"},                      # naive UTC readings are what celery assumes
])
def test_no_timezone_fault_without_the_misreading_and_without_rows_in_the_future(settings: dict[str, object]) -> None:
    ok = row(last_run_at="2026-12-01T12:02:00+00:00", last_run_at_beat="2026-12-01T12:02:00+00:00")
    assert sf.timezone_evidence(settings, APP, [ok], datetime.fromisoformat(NOW)) is None
    assert sf.timezone_misread(state(settings, [ok])) is False


def test_a_last_run_in_the_future_is_a_timezone_fault_whatever_the_settings() -> None:
    settings = {**SHANGHAI, "USE_TZ": True}
    seen = sf.timezone_evidence(settings, APP, [MISREAD], datetime.fromisoformat(NOW))
    assert seen is not None and "lie in the future" in seen.message


def test_the_rewrite_is_the_naive_utc_reading_of_the_instant_the_row_ran() -> None:
    assert sf.timezone_rewrites(state()) == [{
        "name": "lab-heartbeat", "beat_reads": "2026-12-01 20:02:00Z", "ran": "2026-12-01 12:02:00Z",
        "last_run_at": "2026-12-01T12:02:00.076380", "explained": True}]
    # once rewritten (beat reads 12:02 UTC), nothing is left: the fix is idempotent
    fixed = row(last_run_at="2026-12-01T12:02:00+00:00", last_run_at_beat="2026-12-01T12:02:00.076380+00:00",
                last_run_at_naive="2026-12-01T12:02:00.076380")
    assert sf.timezone_rewrites(state({**SHANGHAI, "DJANGO_CELERY_BEAT_TZ_AWARE": False}, [fixed])) == []


def test_a_last_run_the_time_zone_does_not_explain_is_left_to_a_person() -> None:
    far = row(last_run_at_beat="2026-12-03T20:02:00+00:00", last_run_at_naive="2026-12-03T20:02:00")
    assert sf.timezone_rewrites(state(rows=[far])) == []
    assert [r["name"] for r in sf.timezone_unexplained(state(rows=[far]))] == ["lab-heartbeat"]


def test_crontab_rows_in_another_zone_than_celerys_are_named_for_the_refusal() -> None:
    tokyo = row("tokyo-report", "0 9 * * *", tz="Asia/Tokyo")
    assert sf.crontab_zones_differ(state(rows=[MISREAD, tokyo])) == [
        {"name": "tokyo-report", "timezone": "Asia/Tokyo", "app_timezone": "UTC"}]
    assert sf.crontab_zones_differ(state(rows=[{**tokyo, "enabled": False}])) == []


# --- schedule changes beat never sees --------------------------------------------------------------------------

LOG = """\
2026-12-01T11:47:59.100000000Z [2026-12-01 11:47:59,100: INFO/MainProcess] beat: Starting...
2026-12-01T11:54:00.012345678Z [2026-12-01 11:54:00,012: INFO/MainProcess] Scheduler: Sending due task lab-heartbeat (lab.heartbeat)
2026-12-01T11:54:31.900000000Z [2026-12-01 11:54:31,900: INFO/MainProcess] DatabaseScheduler: Schedule changed.
2026-12-01T12:00:00.020000000Z [2026-12-01 12:00:00,020: INFO/MainProcess] Scheduler: Sending due task check-workflow-timeouts (x)
"""


def test_beats_log_events() -> None:
    events = sf.parse_beat_events(LOG)
    assert events.started == datetime(2026, 12, 1, 11, 47, 59, 100000, tzinfo=timezone.utc)
    assert events.loaded() == datetime(2026, 12, 1, 11, 54, 31, 900000, tzinfo=timezone.utc)
    assert events.last_sent("lab-heartbeat") == datetime(2026, 12, 1, 11, 54, 0, 12345, tzinfo=timezone.utc)


def test_an_enabled_row_due_since_beats_last_load_and_not_sent_is_unseen() -> None:
    tasks = parse_tasks([row(), row("check-workflow-timeouts", "0 0,4,8,12,16,20 * * *")])
    now = datetime(2026, 12, 1, 12, 1, 30, tzinfo=timezone.utc)
    unseen = sf.unseen_rows(tasks, sf.parse_beat_events(LOG), now, None,
                            last_update=datetime(2026, 12, 1, 11, 54, 31, 804883, tzinfo=timezone.utc))
    assert [(u.task.name, u.due.isoformat()) for u in unseen] == [("lab-heartbeat", "2026-12-01T12:01:00+00:00")]
    # beat was told after its load (a bump it has not acted on yet): not this fault
    told = datetime(2026, 12, 1, 12, 1, 0, tzinfo=timezone.utc)
    assert sf.unseen_rows(tasks, sf.parse_beat_events(LOG), now, None, last_update=told) == ()
    # a row beat's own scheduler drops (the probe's verdict) is the beat_row finding's, not this one
    assert sf.unseen_rows(tasks, sf.parse_beat_events(LOG), now, None, schedulable=frozenset()) == ()
    # sent after the load: seen
    sent = LOG + "2026-12-01T11:55:00.0Z x Scheduler: Sending due task lab-heartbeat (lab.heartbeat)\n"
    assert sf.unseen_rows(tasks, sf.parse_beat_events(sent), now, None) == ()


def test_diagnose_names_unseen_change_only_when_beat_runs_the_database_scheduler() -> None:
    doc = state(dict(SHANGHAI, TIME_ZONE="UTC", USE_TZ=True), [row()], now="2026-12-01T12:01:30+00:00",
                periodic_tasks_last_update="2026-12-01T11:54:31.804883+00:00")
    banner = "django_celery_beat.schedulers.DatabaseScheduler"
    assert codes(facts(doc, beat_events=sf.parse_beat_events(LOG), banner=banner)) == {"unseen_change"}
    assert codes(facts(doc, beat_events=sf.parse_beat_events(LOG), banner="celery.beat.PersistentScheduler")) == set()


# --- migrations and the result backend --------------------------------------------------------------------------

def test_celery_apps_migrations_not_applied() -> None:
    doc = state(dict(SHANGHAI, TIME_ZONE="UTC"), [], migrations={"unapplied": {
        "django_celery_beat": ["0012_periodictask_expire_seconds", "0013_auto_20200609_0727"], "myapp": ["0002_x"]}})
    seen = sf.migrations_evidence(doc["migrations"], "beat exited, exit code 1",  # type: ignore[arg-type]
                                  "beat raised exception <class 'ProgrammingError'>: column x does not exist")
    assert seen is not None and "django_celery_beat" in seen.message and "myapp" not in seen.message
    assert seen.evidence == ("django_celery_beat: 2 not applied (0012_periodictask_expire_seconds, 0013_auto_20200609_0727)",
                             "beat exited, exit code 1",
                             "beat raised exception <class 'ProgrammingError'>: column x does not exist")
    assert codes(facts(doc)) == {"migrations"}
    assert sf.migrations_evidence({"unapplied": {"myapp": ["0002_x"]}}) is None


# celery 5.7.0's beat on a database never migrated for either app (lab/break migrations): its exception line, then the
# traceback a fragment per line; 40 lines later only the fragment naming the relation is left in the tail
NEVER_LOG = ("[2026-12-01 15:04:07,012: INFO/MainProcess] beat: Starting...\n"
             "[2026-12-01 15:04:07,019: CRITICAL/MainProcess] beat raised exception <class 'django.db.utils.ProgrammingError'>: "
             "ProgrammingError('relation \"django_celery_beat_crontabschedule\" does not exist\\nLINE 1: ...')\n"
             "[2026-12-01 15:04:07,045: WARNING/MainProcess] ProgrammingError\n"
             "[2026-12-01 15:04:07,045: WARNING/MainProcess] relation \"django_celery_beat_crontabschedule\" does not exist\n"
             "LINE 1: ...django_celery_beat_crontabschedule\".\"minute\" FROM \"django_ce...")
NEVER = {"django_celery_beat": ["0001_initial", "0002_auto_20161118_0346"],
         "django_celery_results": ["0001_initial", "0002_add_task_name_args_kwargs"]}
RESULTS_GONE = 'ProgrammingError: relation "django_celery_results_taskresult" does not exist'


@pytest.mark.parametrize("log, quoted", [
    (NEVER_LOG, "beat raised exception"),  # beat's own exception line first
    ("\n".join(NEVER_LOG.splitlines()[3:]), 'WARNING/MainProcess] relation "django_celery_beat_crontabschedule" does not exist'),
])
def test_a_database_never_migrated_names_the_missing_relation(log: str, quoted: str) -> None:
    seen = sf.migrations_evidence({"unapplied": NEVER}, "beat exited, exit code 1", log, RESULTS_GONE)
    assert seen is not None
    assert seen.message == ("migrations of django_celery_beat, django_celery_results are not applied: beat dies on start "
                            '(relation "django_celery_beat_crontabschedule" does not exist)')
    assert seen.evidence[:3] == ("django_celery_beat: 2 not applied (0001_initial, 0002_auto_20161118_0346)",
                                 "django_celery_results: 2 not applied (0001_initial, 0002_add_task_name_args_kwargs)",
                                 "beat exited, exit code 1")
    assert quoted in seen.evidence[3] and "does not exist" in seen.evidence[3]
    assert seen.evidence[4] == f"TaskResult: {RESULTS_GONE}"
    # beat running (no beat_state): its log is not the reason; a results error that is not a missing table is not quoted
    running = sf.migrations_evidence({"unapplied": NEVER}, "", "", "OperationalError: connection refused")
    assert running is not None and running.message.endswith("their tables lack what the installed package expects")
    assert len(running.evidence) == 2


def test_never_migrated_is_the_one_catalogue_fault_the_missing_rows_show() -> None:
    # the tables are gone: no PeriodicTask rows, no TaskResult; nothing else of the catalogue is judged from that
    doc = state(dict(SHANGHAI, TIME_ZONE="UTC", USE_TZ=True), [], migrations={"unapplied": NEVER},
                task_results={"available": False, "error": RESULTS_GONE},
                periodic_tasks_error='ProgrammingError: relation "django_celery_beat_periodictask" does not exist')
    assert codes(facts(doc, beat_log=NEVER_LOG)) == {"migrations"}


def test_beat_in_a_restart_loop_on_the_missing_tables_is_named() -> None:
    # restart: unless-stopped: docker restarts beat after each death; it reads "running" between attempts
    from remediate.facts.containers import Container

    started = datetime(2026, 12, 1, 15, 16, tzinfo=timezone.utc)
    beat = Container("id-b", "lab-celery_beat-1", "celery_beat", "restarting", True, None, started, "sha256:img", 1, 6)
    doc = state(dict(SHANGHAI, TIME_ZONE="UTC", USE_TZ=True), [], migrations={"unapplied": NEVER})
    finding = next(x for x in judge(facts(doc, beat_log=NEVER_LOG, services={"celery_beat": (beat,)}))[0]
                   if x.code == "migrations")
    assert "lab-celery_beat-1: restarting, 6 restart(s)" in finding.evidence
    assert finding.message.endswith('beat dies on start (relation "django_celery_beat_crontabschedule" does not exist)')


@pytest.mark.parametrize("backend, where", [
    ("redis://127.0.0.1:18702/0", "redis, not the database"),
    ("db+postgresql://edms:********@127.0.0.1/edms", "celery_taskmeta"),
])
def test_results_stored_elsewhere_while_django_celery_results_is_installed(backend: str, where: str) -> None:
    doc = state(dict(SHANGHAI, TIME_ZONE="UTC", CELERY_RESULT_BACKEND=backend), [],
                app={**APP, "result_backend": backend})
    seen = sf.result_backend_evidence(doc["settings"], doc["app"], doc["installed"], doc["task_results"])  # type: ignore[arg-type]
    assert seen is not None and where in seen.message and f"app.conf.result_backend = {backend!r}" in seen.evidence
    assert codes(facts(doc)) == {"result_backend"}
    # without django_celery_results, a Redis backend is a choice, not this fault
    assert sf.result_backend_evidence(doc["settings"], doc["app"], {"django_celery_results": False}, None) is None  # type: ignore[arg-type]
