"""History's check sets and schema migration, check durations, and the HTML report's pure parts."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from remediate import drift
from remediate.drift import history, html as htmlreport
from remediate.diagnose import Finding, HostDiagnosis, Severity
from remediate.drift import Check, CheckStatus, DriftReport
from remediate.cli.common import parse_since
from remediate.core.errors import InputError, Location
from remediate.drift.history import CheckSet
from remediate.core.results import HostResult, Mode, RunReport, Status, StepResult

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
OK, DRIFT, ERROR = CheckStatus.OK, CheckStatus.DRIFT, CheckStatus.ERROR
HEALTH = ("containers", "beat_scheduler", "tasks_registered", "tasks_ran")

# drift.sqlite3 as remediate 0.1 created it (before check sets, playbook files and durations were kept)
SCHEMA_0 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, run_id TEXT NOT NULL, phase TEXT NOT NULL,
    started_at TEXT NOT NULL, recorded_at TEXT NOT NULL, exit_code INTEGER NOT NULL, hosts INTEGER NOT NULL,
    drifted TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX runs_env ON runs (env, id);
CREATE TABLE checks (run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, host TEXT NOT NULL,
    name TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE announced (env TEXT NOT NULL, url TEXT NOT NULL, drifted TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (env, url));
"""


def report(run_id: str, at: datetime, playbooks: tuple[str, ...] = ("a",), health: bool = True,
           status: CheckStatus = OK, hosts: tuple[str, ...] = ("h",)) -> DriftReport:
    checks = [Check(h, f"playbook:{p}", status) for h in hosts for p in playbooks]
    checks += [Check(h, name, OK) for h in hosts for name in (HEALTH if health else ())]
    return DriftReport("lab", run_id, at, hosts, tuple(checks), duration=3.5, playbooks=tuple(f"{p}.yml" for p in playbooks))


def old_database(path: Path, *reports: DriftReport) -> None:
    """Rows as 0.1 wrote them: its document had no durations, files or playbooks."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_0)
    for r in reports:
        doc = drift.to_doc(r)
        for key in ("duration", "playbooks"):
            doc.pop(key)
        for c in doc["checks"]:
            c.pop("duration")
            c.pop("file")
        cur = conn.execute("INSERT INTO runs (env, run_id, phase, started_at, recorded_at, exit_code, hosts, drifted, doc)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (r.env, r.run_id, r.phase, r.started_at.isoformat(),
                                                                  r.started_at.isoformat(), 0, 1, "[]", json.dumps(doc)))
        conn.executemany("INSERT INTO checks VALUES (?, ?, ?, ?)",
                         [(cur.lastrowid, c.host, c.name, c.status.value) for c in r.checks])
    conn.commit()
    conn.close()


def test_an_old_database_is_migrated_and_its_runs_stay_readable_in_their_sets(tmp_path: Path) -> None:
    db = tmp_path / "drift.sqlite3"
    old_database(db, report("old-1", T0), report("old-2", T0 + timedelta(minutes=5), ("b",), health=False))
    history.record(report("new-1", T0 + timedelta(minutes=30)), db)
    stored = history.runs("lab", path=db)
    assert [s.report.run_id for s in stored] == ["old-1", "old-2", "new-1"]
    assert stored[0].report.duration is None and stored[0].report.playbooks == ()  # not kept then: not invented
    assert stored[2].report.duration == 3.5 and stored[2].report.playbooks == ("a.yml",)
    # the old rows' sets come from their checks, so the old run of `a` with health joins the new one
    same = history.runs("lab", path=db, check_set=CheckSet(("a",), True))
    assert [s.report.run_id for s in same] == ["old-1", "new-1"]
    sets = history.check_sets("lab", path=db)
    assert [(s.check_set, s.runs, s.playbooks) for s in sets] == [
        (CheckSet(("a",), True), 2, ("a.yml",)), (CheckSet(("b",), False), 1, ())]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    conn.close()
    history.record(report("new-2", T0 + timedelta(hours=1)), db)  # a second open migrates nothing again
    assert len(history.runs("lab", path=db)) == 4


def test_runs_of_other_check_sets_are_kept_apart_and_the_window_applies(tmp_path: Path) -> None:
    db = tmp_path / "drift.sqlite3"
    for i in range(6):
        history.record(report(f"site-{i}", T0 + timedelta(minutes=30 * i), ("x", "y")), db)
    history.record(report("one", T0 + timedelta(minutes=31), ("x",), health=False), db)
    site = CheckSet(("x", "y"), True)
    assert CheckSet.of(report("r", T0, ("y", "x"))) == site
    assert site.label() == "x + y, with health checks"
    assert [s.report.run_id for s in history.runs("lab", 2, db, check_set=site)] == ["site-4", "site-5"]
    since = T0 + timedelta(hours=1, minutes=30)
    assert [s.report.run_id for s in history.runs("lab", path=db, since=since, check_set=site)] == ["site-3", "site-4", "site-5"]
    # a time in another zone means the same instant
    other_zone = since.astimezone(timezone(timedelta(hours=-5)))
    assert len(history.runs("lab", path=db, since=other_zone, check_set=site)) == 3
    # the set of the run recorded last comes first: `remediate report` shows it unless told otherwise
    assert [s.check_set for s in history.check_sets("lab", db)] == [CheckSet(("x",), False), site]
    assert [s.check_set for s in history.check_sets("lab", db, since=since)] == [site]


def test_check_durations_come_from_the_steps_and_the_host_diagnosis() -> None:
    path = "/x/playbooks/scheduler.yml"
    steps = tuple(StepResult(f"s{i}", "python_assignment", Status.OK, Location(path, i), duration=0.25 * i)
                  for i in (1, 2, 3))
    check_run = RunReport("r", Mode.CHECK, (HostResult("h", Status.OK, steps), HostResult("down", Status.UNREACHABLE)))
    diagnoses = (HostDiagnosis("h", (Finding(Severity.PROBLEM, "never_run", "x"),)), HostDiagnosis("down", error="refused"))
    name = drift.playbook_check_name(path)
    r = drift.assess("lab", "r", T0, ("h", "down"), (name,), check_run, diagnoses, {name: "playbooks/scheduler.yml"},
                     {"h": 2.5})
    by = {c.key: c for c in r.checks}
    assert by[f"h/{name}"].duration == 1.5 and by[f"h/{name}"].file == "playbooks/scheduler.yml"
    assert by[f"down/{name}"].duration is None and by[f"down/{name}"].file == "playbooks/scheduler.yml"
    assert {by[f"h/{n}"].duration for n in HEALTH} == {2.5} and by["down/containers"].duration is None
    assert drift.from_doc(json.loads(json.dumps(drift.to_doc(r)))) == r


@pytest.mark.parametrize("text, expected", [
    ("2026-11-24", datetime(2026, 11, 24, tzinfo=timezone.utc)),
    ("2026-11-24T22:00Z", datetime(2026, 11, 24, 22, tzinfo=timezone.utc)),
    ("2026-11-24 22:00", datetime(2026, 11, 24, 22, tzinfo=timezone.utc)),  # no zone: UTC
    ("2026-11-24T23:00+01:00", datetime(2026, 11, 24, 22, tzinfo=timezone.utc)),
    ("90m", T0 - timedelta(minutes=90)),
    ("24h", T0 - timedelta(hours=24)),
    ("7d", T0 - timedelta(days=7)),
    ("1.5h", T0 - timedelta(minutes=90)),
])
def test_since_takes_times_and_ages(text: str, expected: datetime) -> None:
    assert parse_since(text, T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "7x", "-3d", "2026-13-01"])
def test_since_rejects_anything_else(text: str) -> None:
    with pytest.raises(InputError, match="--since: expected a date or time"):
        parse_since(text, T0)


def test_time_labels_stay_distinct() -> None:
    day = [T0 + timedelta(minutes=30 * i) for i in range(4)]
    assert htmlreport.distinct_labels(day) == ("12:00", "12:30", "13:00", "13:30")
    # a --fix run: the check before and the check after within one minute
    fix = [T0, T0 + timedelta(seconds=20), T0 + timedelta(minutes=30)]
    assert htmlreport.distinct_labels(fix) == ("12:00:00", "12:00:20", "12:30:00")
    days = [T0, T0 + timedelta(days=1)]
    assert htmlreport.distinct_labels(days) == ("11-25 12:00", "11-26 12:00")
    same = [T0, T0]
    assert htmlreport.distinct_labels(same) == ("12:00:00 #1", "12:00:00 #2")
    many = [T0 + timedelta(minutes=7 * i) for i in range(300)]  # 35 hours: dates in the labels
    assert len(set(htmlreport.distinct_labels(many))) == 300


def test_times_are_shown_in_one_utc_format() -> None:
    assert htmlreport.utc_text("was due 2026-11-24T21:00:00+00:00, ran 2026-11-24 20:00:00.123456Z") == \
        "was due 2026-11-24 21:00:00Z, ran 2026-11-24 20:00:00Z"
    assert htmlreport.utc_text("at 2026-11-24T21:00:00+01:00") == "at 2026-11-24T21:00:00+01:00"  # not UTC: left alone
    assert htmlreport.when(datetime(2026, 11, 24, 23, tzinfo=timezone(timedelta(hours=1)))) == "2026-11-24 22:00:00Z"


def test_a_run_without_health_checks_claims_nothing_about_tasks() -> None:
    no_health = report("r", T0, ("a",), health=False, hosts=("h1", "h2"))
    lines = htmlreport._checked(no_health)
    assert lines[0] == "Playbooks in check mode on 2 host(s): a."
    assert "were not checked" in lines[1] and not any("ran within its window" in line for line in lines)
    with_health = report("r", T0, ("a",), hosts=("h1", "h2"))
    assert any("tasks_ran: ok on 2 host(s): there every enabled PeriodicTask" in line
               for line in htmlreport._checked(with_health))


def test_host_state_orders_drift_before_unreachable_before_errors() -> None:
    r = DriftReport("lab", "r", T0, ("d", "u", "e", "c"), (
        Check("d", "playbook:a", DRIFT), Check("d", "containers", ERROR, ("boom",)),
        Check("u", "playbook:a", ERROR, ("unreachable: refused",)), Check("u", "containers", ERROR, ("refused",)),
        Check("e", "playbook:a", OK), Check("e", "containers", ERROR, ("docker: not found",)),
        Check("c", "playbook:a", OK),
    ))
    assert [htmlreport.host_state(r, h).value for h in ("d", "u", "e", "c", "gone")] == \
        ["drift", "unreachable", "error", "clean", "absent"]


def test_a_limited_run_neither_clears_nor_adds_the_drift_of_hosts_it_left_out() -> None:
    def run(i: int, hosts: tuple[str, ...], drifted: set[str], error: set[str] = set()) -> history.StoredRun:
        checks = tuple(Check(h, "playbook:a", DRIFT if h in drifted else ERROR if h in error else OK) for h in hosts)
        return history.StoredRun(i, T0, DriftReport("lab", f"r{i}", T0 + timedelta(minutes=i), hosts, checks))

    runs = [run(1, ("a", "b", "c"), {"a", "b"}), run(2, ("a",), set()), run(3, ("a", "b", "c"), {"b", "c"}, {"a"}),
            run(4, ("a", "b", "c"), set(), {"b"})]
    view = htmlreport.page("lab", runs, T0)
    rows = {r.run_id: r for r in view.runs}
    assert (rows["r2"].appeared, rows["r2"].cleared) == ((), ("a/playbook:a",))  # b was not in r2: not cleared
    assert (rows["r3"].appeared, rows["r3"].cleared) == ((), ())  # c and b: r2 did not check them; a: an error now
    assert (rows["r4"].appeared, rows["r4"].cleared) == ((), ("c/playbook:a",))  # b could not be checked: not cleared
    # the counts compare with the newest earlier run of the same hosts, not with r2 of one host
    assert [(t.word, t.count, t.change) for t in view.tiles] == [
        ("clean", 2, "+2 since the run at 12:03Z"), ("drifted", 0, "-2 since the run at 12:03Z"),
        ("unreachable", 0, "same as the run at 12:03Z"), ("could not check", 1, "same as the run at 12:03Z")]
