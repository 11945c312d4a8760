"""Drift's pure parts: the judgement, its exit codes, documents, JUnit, notifications' transitions, history."""
from __future__ import annotations

import json
from typing import Any
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from remediate import celery as cel
from remediate import api, drift
from remediate.core.options import RunOptions
from remediate.core.state import StateDir
from remediate.drift import history, notify
from remediate.diagnose import FAULTS, Finding, HostDiagnosis, Severity
from remediate.core.results import ExitCode as DriftExit, Mode
from remediate.drift import Check, CheckStatus
from remediate.core.errors import Location
from remediate.core.results import HostResult, RunReport, Status, StepResult

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
SITE = "/x/playbooks/celery-beat-database-scheduler.yml"
TASKS = "/x/playbooks/celery-register-task-modules.yml"
NAMES = (drift.playbook_check_name(SITE), drift.playbook_check_name(TASKS))


def step(status: Status, path: str = SITE, name: str = "s", diff: str = "", message: str = "") -> StepResult:
    return StepResult(name, "python_assignment", status, Location(path, 3), diff, ("would write f",), message)


def run(*hosts: HostResult) -> RunReport:
    return RunReport("r1", Mode.CHECK, hosts)


def healthy(host: str, *findings: Finding, error: str = "", tasks: tuple[cel.TaskHealth, ...] = ()) -> HostDiagnosis:
    return HostDiagnosis(host, findings, error=error, tasks=tasks)


def assess(check_run: RunReport | None, *diagnoses: HostDiagnosis, hosts: tuple[str, ...] = ("web-1",)) -> drift.DriftReport:
    return drift.assess("lab", "r1", T0, hosts, NAMES, check_run, diagnoses)


def test_clean_when_nothing_would_change_and_health_has_no_problems() -> None:
    report = assess(run(HostResult("web-1", Status.OK, (step(Status.OK), step(Status.OK, TASKS)))), healthy("web-1"))
    assert report.exit_code() == DriftExit.CLEAN
    assert report.check_names() == (*NAMES, "containers", "beat_scheduler", "tasks_registered", "tasks_ran",
                                    *(fault.id for fault in FAULTS))
    assert all(c.status == CheckStatus.OK for c in report.checks)


def test_a_step_that_would_change_is_drift_of_its_playbook_with_the_diff() -> None:
    report = assess(run(HostResult("web-1", Status.WOULD_CHANGE, (
        step(Status.WOULD_CHANGE, diff="--- a\n+++ b\n+X = 1\n", name="setting"), step(Status.OK, TASKS),
    ))))
    assert report.exit_code() == DriftExit.DRIFT
    (drifted,) = report.drifted()
    assert drifted.key == "web-1/playbook:celery-beat-database-scheduler"
    assert drifted.details == (f"setting [{SITE}:3]: would write f",) and "+X = 1" in drifted.diff
    assert report.drifted_hosts() == ("web-1",)


@pytest.mark.parametrize("host, expected", [
    (HostResult("web-1", Status.UNREACHABLE, (), "connection refused"), "unreachable: connection refused"),
    (HostResult("web-1", Status.FAILED, (step(Status.FAILED, message="boom", name="probe"),), "probe: boom"),
     f"probe [{SITE}:3]: boom"),
])
def test_unreachable_or_failed_hosts_are_errors_exit_1(host: HostResult, expected: str) -> None:
    report = assess(run(host), healthy("web-1", Finding(Severity.PROBLEM, "never_run", "x")))
    assert report.exit_code() == DriftExit.ERROR
    assert report.checks[0].status == CheckStatus.ERROR and report.checks[0].details == (expected,)


def test_health_problems_drift_and_warnings_do_not_change_the_exit_code() -> None:
    warn_only = assess(None, healthy("web-1", Finding(Severity.WARNING, "never_fires", "Send Test Email: 31 February"),
                                     Finding(Severity.WARNING, "dual_configuration", "both")))
    assert warn_only.exit_code() == DriftExit.CLEAN
    assert warn_only.warnings() == (("web-1/beat_scheduler", "dual_configuration: both"),
                                    ("web-1/tasks_ran", "never_fires: Send Test Email: 31 February"))

    both = assess(None, healthy(
        "web-1",
        Finding(Severity.PROBLEM, "beat_scheduler", "celery_beat runs celery.beat.PersistentScheduler"),
        Finding(Severity.PROBLEM, "unregistered_tasks", "apps.audit.integrity_tasks.verify_chain"),
        Finding(Severity.PROBLEM, "never_run", "PeriodicTask 'Verify chain': never run; was due 2026-11-25 11:00:00Z"),
        Finding(Severity.PROBLEM, "something_new", "a code diagnose learned later"),
    ))
    assert both.exit_code() == DriftExit.DRIFT
    assert [c.name for c in both.drifted()] == ["beat_scheduler", "tasks_registered", "tasks_ran", drift.OTHER_HEALTH]


def test_a_probe_that_failed_makes_every_health_check_an_error() -> None:
    report = assess(None, healthy("web-1", error="state query in backend failed (exit 1)"))
    assert report.exit_code() == DriftExit.ERROR
    assert {c.status for c in report.checks} == {CheckStatus.ERROR}


def _row(name: str, cron: str, last_run: datetime | None) -> dict[str, object]:
    minute, hour, dom, month, dow = cron.split()
    return {"name": name, "task": f"apps.t.{name}", "enabled": True, "last_run_at": last_run.isoformat() if last_run else None,
            "total_run_count": 1 if last_run else 0,
            "crontab": {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": month,
                        "day_of_week": dow, "timezone": "UTC"}}


def test_task_windows_from_assess_never_run_overdue_pending_and_never_fires() -> None:
    now = T0
    beat_started = now - timedelta(minutes=30)
    tasks = cel.parse_tasks([
        _row("hourly", "0 * * * *", None),                            # due 12:00 - lag - grace -> 11:00: never run
        _row("daily", "0 6 * * *", now - timedelta(days=2)),          # due 06:00 today, ran two days ago: overdue
        _row("recent", "50 11 * * *", None),                          # due 11:50, after beat started? no: 11:30 start
        _row("manual", "0 0 31 2 *", None),                           # never fires: a warning only
        _row("fine", "0 6 * * *", now - timedelta(hours=5, minutes=59)),
    ])
    health = cel.assess(tasks, now, beat_started, timedelta(seconds=185))
    status = {h.task.name: h.status for h in health}
    assert status == {"hourly": "pending", "daily": "pending", "recent": "never_run", "manual": "never_fires", "fine": "ok"}
    early = cel.assess(tasks, now, now - timedelta(days=3), timedelta(seconds=185))
    assert {h.task.name: h.status for h in early}["hourly"] == "never_run"
    assert {h.task.name: h.status for h in early}["daily"] == "overdue"


def test_task_states_name_due_times() -> None:
    verify_chain = cel.Task("Verify chain", "apps.audit.integrity_tasks.verify_chain", True, "0 * * * *", "UTC", None,
                            None, 0)
    diag = healthy("web-1", Finding(Severity.PROBLEM, "never_run", "x"), tasks=(
        cel.TaskHealth(verify_chain, "never_run", datetime(2026, 11, 25, 11, tzinfo=timezone.utc),
                       datetime(2026, 11, 25, 13, tzinfo=timezone.utc), "never run; was due 2026-11-25 11:00:00Z"),
        cel.TaskHealth(cel.Task("ok", "t", True, None, "UTC", 60.0, T0, 1), "ok", None, T0, ""),
    ))
    report = assess(None, diag)
    (task,) = report.tasks
    assert (task.name, task.status, task.last_due, task.last_run_at) == ("Verify chain", "never_run", "2026-11-25 11:00:00Z", None)
    assert "task 'Verify chain' (apps.audit.integrity_tasks.verify_chain): never-run, due 2026-11-25 11:00:00Z" \
        in drift.render_text(drift.FixOutcome(report, None, None))


def test_documents_round_trip() -> None:
    report = assess(run(HostResult("web-1", Status.WOULD_CHANGE, (step(Status.WOULD_CHANGE, diff="d\n"),))),
                    healthy("web-1", Finding(Severity.WARNING, "never_fires", "w")))
    again = drift.from_doc(json.loads(json.dumps(drift.to_doc(report))))
    assert again == report


def _report(*checks: Check) -> drift.DriftReport:
    return drift.DriftReport("lab", "r", T0, tuple(dict.fromkeys(c.host for c in checks)), checks)


OK = CheckStatus.OK
DRIFT = CheckStatus.DRIFT
ERROR = CheckStatus.ERROR


@pytest.mark.parametrize("previous, checks, expected", [
    (set(), [Check("a", "c", OK)], None),                                   # clean stays clean: no post
    (set(), [Check("a", "c", DRIFT)], ({"a/c"}, set())),                    # drift appears
    ({"a/c"}, [Check("a", "c", DRIFT)], None),                              # same drift: no post
    ({"a/c"}, [Check("a", "c", OK)], (set(), {"a/c"})),                     # drift clears
    ({"a/c"}, [Check("a", "c", DRIFT), Check("a", "d", DRIFT)], ({"a/d"}, set())),   # more drift
    ({"a/c"}, [Check("a", "c", ERROR)], None),                              # unknown: keeps what was announced
    (set(), [Check("a", "c", ERROR)], None),                                # an error is not drift
])
def test_notification_transitions(previous: set[str], checks: list[Check], expected: tuple[set[str], set[str]] | None) -> None:
    change = notify.transition(frozenset(previous), _report(*checks))
    if expected is None:
        assert change is None
    else:
        assert change is not None and (set(change.appeared), set(change.cleared)) == expected


def test_notification_payload_is_slack_compatible() -> None:
    report = _report(Check("web-1", "beat_scheduler", DRIFT, ("beat_scheduler: runs PersistentScheduler",)))
    change = notify.transition(frozenset(), report)
    assert change is not None
    body = notify.payload(report, change)
    assert body["text"] == ("remediate drift lab: drift on 1 check(s)\n"
                            "• new: web-1/beat_scheduler (beat_scheduler: runs PersistentScheduler)")
    assert body["status"] == "drift" and body["drifted"] == ["web-1/beat_scheduler"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:80", "http:///path", ""])
def test_notify_url_must_be_http(url: str) -> None:
    from remediate.core.errors import InputError

    with pytest.raises(InputError, match="--notify expects"):
        notify.check_url(url)


def test_history_records_lists_and_remembers_announcements(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    first = _report(Check("a", "c", DRIFT, ("x",)))
    second = drift.DriftReport("lab", "r2", T0 + timedelta(minutes=30), ("a",), (Check("a", "c", OK),), phase="after-fix")
    history.record(first, db)
    history.record(second, db)
    history.record(drift.DriftReport("other", "r3", T0, ("b",), ()), db)
    stored = history.runs("lab", path=db)
    assert [s.report for s in stored] == [first, second]
    assert [s.report.run_id for s in history.runs("lab", last=1, path=db)] == ["r2"]
    text = history.render_text(stored, "lab")
    assert text.splitlines() == [
        "2026-11-25 12:00:00Z  r  hosts=1  drift  a/c",
        "2026-11-25 12:30:00Z  r2  hosts=1  clean (after fix)",
    ]
    assert history.announced("lab", "http://h", db) == frozenset()
    history.set_announced("lab", "http://h", frozenset({"a/c"}), db)
    history.set_announced("lab", "http://h", frozenset({"a/c", "a/d"}), db)
    assert history.announced("lab", "http://h", db) == frozenset({"a/c", "a/d"})


def test_fix_outcome_exit_codes() -> None:
    drifted = _report(Check("a", "c", DRIFT))
    clean = _report(Check("a", "c", OK))
    changed = RunReport("r2", Mode.APPLY, (HostResult("a", Status.CHANGED),))
    failed = RunReport("r2", Mode.APPLY, (HostResult("a", Status.FAILED, (), "boom"),))
    interrupted = RunReport("r2", Mode.APPLY, (HostResult("a", Status.FAILED, (), "interrupted"),), True)
    assert drift.FixOutcome(drifted, None, None).exit_code() == 2
    assert drift.FixOutcome(drifted, changed, clean).exit_code() == 0
    assert drift.FixOutcome(drifted, changed, drifted).exit_code() == 2
    assert drift.FixOutcome(drifted, failed, clean).exit_code() == 1
    assert drift.FixOutcome(drifted, interrupted, None).exit_code() == 130
    assert drift.render_text(drift.FixOutcome(drifted, interrupted, None)).endswith("interrupted; exit 130")


def test_a_drift_check_opens_one_transport_per_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check-mode run and diagnose share each host's one connection, closed once at the end."""
    from remediate.transport.local import LocalTransport

    (tmp_path / "inv.yml").write_text("hosts:\n  a: {connection: local}\n  b: {connection: local}\n")
    (tmp_path / "p.yml").write_text("- hosts: all\n  steps:\n    - name: look\n"
                                    "      command: {argv: ['true'], read_only: true}\n")
    opened: list[str] = []
    closed: list[str] = []

    class Counted(LocalTransport):
        def close(self) -> None:
            closed.append(self.name)

        def __init__(self, name: str, *args: Any) -> None:
            super().__init__(name, *args)
            opened.append(name)

    monkeypatch.setattr("remediate.transport.local.LocalTransport", Counted)
    loaded = api.load("x", (str(tmp_path / "p.yml"),), RunOptions(), str(tmp_path / "inv.yml"))
    api.drift_check(loaded, "x", RunOptions(), StateDir(tmp_path / "state"))
    assert sorted(opened) == ["a", "b"] and sorted(closed) == ["a", "b"]
