"""Never-firing schedules and beat's own verdicts (pure): Celery's crontab semantics, and what the host's beat says."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from remediate import celery as cel
from remediate.inputs import templating
from remediate.core.errors import Location

NOW = datetime(2026, 11, 25, 10, 0, 30, tzinfo=timezone.utc)
FEB31 = ("0", "0", "31", "2", "*")


def row(name: str, cron: tuple[str, str, str, str, str], enabled: bool = True) -> dict[str, object]:
    minute, hour, dom, moy, dow = cron
    return {"name": name, "task": f"apps.t.{name}", "enabled": enabled, "last_run_at": None, "total_run_count": 0,
            "crontab": {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": moy,
                        "day_of_week": dow, "timezone": "UTC"}, "interval": None}


def probe_doc(celery: str, dcb: str, *verdicts: tuple[str, str, str], effective: str = "celery.beat:PersistentScheduler",
              sync_every_tasks: int | None = None) -> dict[str, Any]:
    """What templates/celery_beat_probe.py.j2 prints, for rows (name, outcome, error) on 31 February."""
    crontab = dict(zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), FEB31), timezone="UTC")
    return {
        "versions": {"celery": celery, "django_celery_beat": dcb, "django": "5.2", "python": "3.11.2"},
        "scheduler": cel.DATABASE_SCHEDULER, "effective_scheduler": effective, "reads_rows": True,
        "sync_every": 180, "sync_every_tasks": sync_every_tasks, "max_interval": 5,
        "builtin_tasks": ["celery.backend_cleanup", "celery.chord_unlock"],
        "rows": [{"name": n, "outcome": o, "error": e, "log": [], "crontab": crontab} for n, o, e in verdicts],
    }


ROLLOVER = "RuntimeError: unable to rollover, time specification is probably invalid"
INVALID = "ValueError: Invalid crontab: day_of_month '31' never occurs in month_of_year '2'."
OLD = probe_doc("5.4.0", "2.7.0", ("Send Test Email", "dies", ROLLOVER), ("lab-heartbeat", "ok", ""))
CURRENT = probe_doc("5.7.0", "2.9.0", ("Send Test Email", "skips", INVALID), ("lab-heartbeat", "ok", ""))


@pytest.mark.parametrize(("cron", "never"), [
    (FEB31, True), (("0", "0", "30", "2", "*"), True), (("0", "0", "31", "4,6", "*"), True),
    (("0", "0", "30-31", "2", "*"), True),
    (("0", "0", "29", "2", "*"), False),            # leap years exist
    (("0", "0", "31", "2", "1"), True),             # Celery ANDs the day of week with the day of month
    (("0", "0", "L", "2", "*"), False),             # the last day always exists
    (("0", "0", "31", "*", "*"), False), (("*", "*", "*", "*", "*"), False),
])
def test_never_fires_as_celery_reads_a_crontab(cron: tuple[str, str, str, str, str], never: bool) -> None:
    (task,) = cel.parse_tasks([row("t", cron)])
    assert cel.never_fires(task) is never


def test_system_cron_ors_a_restricted_day_of_week() -> None:
    assert cel.cron_never_fires("0 0 31 2 1", day_or=True) is False
    assert cel.cron_never_fires("0 0 31 2 *", day_or=True) is True


@pytest.mark.parametrize(("cron", "after", "due"), [
    # Celery: day of month AND day of week; cron (croniter's default) would say the next day of 1-7
    ("0 9 1-7 * 1", datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc), datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)),
    ("0 0 13 * 5", datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 13, 0, 0, tzinfo=timezone.utc)),
    ("*/30 * * * *", datetime(2026, 12, 1, 10, 0, 30, tzinfo=timezone.utc), datetime(2026, 12, 1, 10, 30, tzinfo=timezone.utc)),
])
def test_next_due_uses_celerys_and_of_the_day_fields(cron: str, after: datetime, due: datetime) -> None:
    (task,) = cel.parse_tasks([row("t", tuple(cron.split()))])  # type: ignore[arg-type]
    assert cel.next_due(task, after) == due
    assert cel.last_due(task, due + timedelta(seconds=1)) == due


def test_a_disabled_never_firing_row_is_a_manual_only_task_and_an_enabled_one_says_what_this_beat_does() -> None:
    rows = [row("Send Test Email", FEB31, enabled=False), row("broken", FEB31), row("every minute", ("*",) * 5)]
    tasks = cel.parse_tasks(rows)
    old = cel.parse_beat_probe(probe_doc("5.4.0", "2.7.0", ("broken", "dies", ROLLOVER)))
    current = cel.parse_beat_probe(probe_doc("5.7.0", "2.9.0", ("broken", "skips", INVALID)))
    lag = timedelta(seconds=10)
    health = {h.task.name: h for h in cel.assess(tasks, NOW, None, lag, old)}
    assert health["Send Test Email"].status == "never_fires" and "manual-only" in health["Send Test Email"].detail
    assert health["broken"].detail == (f"cron '0 0 31 2 *' (UTC) can never fire (enabled: celery 5.4.0's beat dies on "
                                       f"it once it runs the DatabaseScheduler: {ROLLOVER})")
    skipped = {h.task.name: h for h in cel.assess(tasks, NOW, None, lag, current)}["broken"]
    assert skipped.detail == f"cron '0 0 31 2 *' (UTC) can never fire (enabled: celery 5.7.0 / django-celery-beat 2.9.0 skip it ({INVALID}))"
    unknown = {h.task.name: h for h in cel.assess(tasks, NOW, None, lag)}["broken"]
    assert "unknown" in unknown.detail and "crash" not in unknown.detail and "dies" not in unknown.detail


def test_words_say_whether_beat_already_runs_the_probed_scheduler() -> None:
    running = cel.parse_beat_probe(probe_doc("5.4.0", "2.7.0", ("x", "dies", ROLLOVER),
                                             effective="django_celery_beat.schedulers.DatabaseScheduler"))
    assert running.runs_probed and running.words(running.rows[0]) == f"celery 5.4.0's beat dies on it: {ROLLOVER}"
    retries = cel.parse_beat_probe(probe_doc("5.7.0", "2.9.0", ("x", "retries", "RuntimeError: boom")))
    assert retries.words(retries.rows[0], "'x'") == ("celery 5.7.0's beat cannot compute the next run of 'x' once it "
                                                     "runs the DatabaseScheduler: RuntimeError: boom; it logs an error "
                                                     "every 5 s and never sends it")


@pytest.mark.parametrize(("tasks", "lag"), [(None, 185), (3, 185), (1, 10)])
def test_the_sync_lag_comes_from_beats_own_scheduler(tasks: int | None, lag: float) -> None:
    probe = cel.parse_beat_probe(probe_doc("5.7.0", "2.9.0", sync_every_tasks=tasks))
    assert probe.lag() == timedelta(seconds=lag)
    assert probe.lag_words().endswith(f"sync lag {lag:g} s") and "DatabaseScheduler saves runs every 180 s" in probe.lag_words()


def test_the_playbook_filter_gives_each_verdict_with_its_sentence() -> None:
    at = Location("p.yml", 3)
    dies = templating.evaluate("probe | celery_beat_verdicts('dies') | list", {"probe": OLD}, at, "t")
    assert [(v["name"], v["never_fires"]) for v in dies] == [("Send Test Email", True)]
    assert dies[0]["why"] == f"celery 5.4.0's beat dies on it once it runs the DatabaseScheduler: {ROLLOVER}"
    others = templating.evaluate("probe | celery_beat_verdicts | list", {"probe": CURRENT}, at, "t")
    assert [v["sentence"] for v in others] == [f"celery 5.7.0 / django-celery-beat 2.9.0 skip 'Send Test Email' ({INVALID})"]
    assert templating.evaluate("probe | celery_beat_verdicts('dies') | list", {"probe": CURRENT}, at, "t") == []
    with pytest.raises(templating.TemplateError, match="outcome must be one of"):
        templating.evaluate("probe | celery_beat_verdicts('crashes')", {"probe": OLD}, at, "t")


def test_ansible_regex_tests() -> None:
    at = Location("p.yml", 3)
    scope = {"argv": ["celery", "--scheduler=x", "-S"]}
    assert templating.evaluate("argv | select('match', '--scheduler=') | list", scope, at, "t") == ["--scheduler=x"]
    assert templating.evaluate("argv | select('search', 'sched') | list", scope, at, "t") == ["--scheduler=x"]
    with pytest.raises(templating.TemplateError, match=r"p\.yml:3: t: .*invalid regular expression"):
        templating.evaluate("argv | select('match', '(') | list", scope, at, "t")


def test_celery_builtins_are_checked_against_what_beats_app_registers() -> None:
    expected = ["apps.a.t", "celery.backend_cleanup", "apps.a.t", "apps.b.u", "celery.no_such_builtin"]
    assert cel.unregistered(expected, {"apps.a.t"}) == ["apps.b.u"]
    builtins = cel.parse_beat_probe(OLD).builtin_tasks
    assert cel.unregistered(expected, {"apps.a.t"}, builtins) == ["apps.b.u", "celery.no_such_builtin"]


def test_a_never_run_row_due_before_beat_loaded_its_schedule_is_pending_where_beat_counts_from_its_load() -> None:
    """django-celery-beat 2.7.0 counts a never-run row from the moment it builds its entry (a due time between the
    container's start and beat's load is never sent); 2.9.0 from the row's date_changed (sent late, at the load):
    the probe says which this host's beat does, and only the first is pending."""
    (quarter,) = cel.parse_tasks([row("process-document-obsoletion-dates", ("15", "*", "*", "*", "*"))])
    now = datetime(2026, 12, 1, 19, 21, 0, tzinfo=timezone.utc)
    started = datetime(2026, 12, 1, 19, 14, 50, tzinfo=timezone.utc)  # beat's container
    loaded = datetime(2026, 12, 1, 19, 15, 3, tzinfo=timezone.utc)  # its log: "beat: Starting..."
    lag = timedelta(seconds=185)

    def probe(dcb: str, never_run_from: str, effective: str = "django_celery_beat.schedulers.DatabaseScheduler") -> cel.BeatProbe:
        doc = probe_doc("5.4.0", dcb, ("process-document-obsoletion-dates", "ok", ""), effective=effective)
        doc["rows"][0].update(crontab={"minute": "15", "hour": "*", "day_of_month": "*", "month_of_year": "*",
                                       "day_of_week": "*", "timezone": "UTC"}, never_run_from=never_run_from)
        return cel.parse_beat_probe(doc)

    (h,) = cel.assess([quarter], now, started, lag, probe("2.7.0", "load"), loaded)
    assert h.status == "pending", h
    assert h.detail == ("never run; due 2026-12-01 19:15:00Z, before beat had loaded its schedule (2026-12-01 19:15:03Z), "
                        "from which celery 5.4.0 / django-celery-beat 2.7.0 counts a never-run row: first sent "
                        "2026-12-01 20:15:00Z")
    (h,) = cel.assess([quarter], now, started, lag, probe("2.9.0", "date_changed"), loaded)
    assert h.status == "never_run", "2.9.0 sends it at its load: not seen is never run"
    early = datetime(2026, 12, 1, 19, 14, 40, tzinfo=timezone.utc)
    (h,) = cel.assess([quarter], now, early, lag, probe("2.7.0", "load"), early + timedelta(seconds=5))
    assert h.status == "never_run", "loaded before it was due (beyond beat's first tick): it should have been sent"
    (h,) = cel.assess([quarter], now, started, lag, probe("2.7.0", "load", effective="celery.beat:PersistentScheduler"), loaded)
    assert h.status == "never_run", "a beat that does not run the probed scheduler never sends the row at all"
