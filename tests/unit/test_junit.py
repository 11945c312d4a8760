"""`remediate drift --format junit`: valid against the Jenkins xunit plugin's junit-10.xsd, readable as GitLab reads it."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest

from remediate import drift
from remediate.drift import junit
from remediate.diagnose import FAULTS, Finding, HostDiagnosis, Severity
from remediate.drift import Check, CheckStatus, DriftReport
from remediate.core.errors import Location
from remediate.core.results import HostResult, Mode, RunReport, Status, StepResult

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "junit-10.xsd"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
SCHEDULER = "playbooks/celery-beat-database-scheduler.yml"
MODULES = "playbooks/celery-register-task-modules.yml"
NAMES = (drift.playbook_check_name(SCHEDULER), drift.playbook_check_name(MODULES))


def validate(text: str) -> None:
    """Fails with the schema's own complaint when the document is not valid junit-10."""
    import xmlschema

    xmlschema.XMLSchema(str(SCHEMA)).validate(text)


def gitlab_cases(text: str) -> list[dict[str, str | None]]:
    """The test cases as GitLab's JUnit parser (lib/gitlab/ci/parsers/test/junit.rb) walks them: every testcase of
    every testsuite at any depth under the root, with its suite's name, classname, name, file, time and status."""
    out: list[dict[str, str | None]] = []

    def walk(node: ET.Element) -> None:
        for suite in node.findall("testsuite"):
            for case in suite.findall("testcase"):
                status = next((s for s in ("failure", "error", "skipped") if case.find(s) is not None), "success")
                out.append({"suite": suite.get("name"), "classname": case.get("classname"), "name": case.get("name"),
                            "file": case.get("file"), "time": case.get("time"), "status": status})
            walk(suite)

    walk(ET.fromstring(text))
    return out


def step(path: str, status: Status, seconds: float, diff: str = "") -> StepResult:
    return StepResult("beat's settings module sets the database scheduler", "python_assignment", status,
                      Location(path, 30), diff, ("would write base.py",), duration=seconds)


def fleet() -> DriftReport:
    """web-1 drifts on the scheduler playbook and beat (a warning too); web-2 is unreachable."""
    check_run = RunReport("r1", Mode.CHECK, (
        HostResult("web-1", Status.WOULD_CHANGE, (step(SCHEDULER, Status.WOULD_CHANGE, 1.25, "--- a\n+++ b\n+X = 1\n"),
                                                  step(SCHEDULER, Status.OK, 0.5), step(MODULES, Status.OK, 0.75))),
        HostResult("web-2", Status.UNREACHABLE, (), "[Errno 111] Connection refused"),
    ))
    diagnoses = (
        HostDiagnosis("web-1", (Finding(Severity.PROBLEM, "beat_scheduler", "celery_beat runs PersistentScheduler"),
                                Finding(Severity.WARNING, "never_fires", "manual <only> & fine"))),
        HostDiagnosis("web-2", error="unreachable: [Errno 111] Connection refused"),
    )
    report = drift.assess("lab", "r1", T0, ("web-1", "web-2"), NAMES, check_run, diagnoses,
                          {NAMES[0]: SCHEDULER, NAMES[1]: MODULES}, {"web-1": 4.5})
    return DriftReport(report.env, report.run_id, report.started_at, report.hosts, report.checks, report.tasks,
                       duration=12.0625, playbooks=("playbooks/site.yml",))


def test_valid_against_the_jenkins_xunit_schema() -> None:
    text = junit.render(fleet())
    validate(text)
    root = ET.fromstring(text)
    assert root.tag == "testsuites" and "skipped" not in root.attrib  # junit-10 has no skipped on <testsuites>
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == (str(12 + 2 * len(FAULTS)), "2", str(6 + len(FAULTS)), "12.062")


def test_a_schema_violation_would_be_caught() -> None:
    import xmlschema

    bad = junit.render(fleet()).replace("<testcase ", '<testcase file="x.yml" ', 1)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        validate(bad)


def test_cases_carry_the_check_time_and_suites_the_playbook_file() -> None:
    text = junit.render(fleet())
    cases = {(c["classname"], c["name"]): c for c in gitlab_cases(text)}
    assert len(cases) == 12 + 2 * len(FAULTS)  # a health check per catalogue fault on each host
    scheduler = cases[("lab.web-1", NAMES[0])]
    assert scheduler["status"] == "failure" and scheduler["time"] == "1.750"  # its two steps
    assert scheduler["suite"] == f"web-1: {SCHEDULER}"
    assert cases[("lab.web-1", NAMES[1])]["time"] == "0.750"
    assert cases[("lab.web-1", "beat_scheduler")]["status"] == "failure"
    assert cases[("lab.web-1", "tasks_ran")] == {
        "suite": "web-1: health checks", "classname": "lab.web-1", "name": "tasks_ran", "file": None,
        "time": "4.500", "status": "success"}
    assert {c["status"] for k, c in cases.items() if k[0] == "lab.web-2"} == {"error"}
    assert cases[("lab.web-2", NAMES[0])]["time"] is None  # nothing ran there: no time is claimed
    suites = {s.get("name"): s for s in ET.fromstring(text).iter("testsuite")}
    assert suites[f"web-1: {SCHEDULER}"].get("file") == SCHEDULER
    assert suites[f"web-2: {MODULES}"].get("file") == MODULES and suites[f"web-2: {MODULES}"].get("hostname") == "web-2"
    # the host's health checks (four, and one per catalogue fault) share one 4.5 s diagnosis: their suite counts it once
    assert suites["web-1: health checks"].get("time") == "4.500"
    assert suites["web-1: health checks"].get("tests") == str(4 + len(FAULTS))
    assert suites["web-1: health checks"].get("timestamp") == "2026-11-25T12:00:00"


def test_junitparser_reads_failures_errors_warnings_and_diffs(tmp_path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml

    path = tmp_path / "drift.xml"
    path.write_text(junit.render(fleet()))
    xml = JUnitXml.fromfile(str(path))
    cases = {(c.classname, c.name): c for suite in xml for c in suite}
    assert [type(r) for r in cases[("lab.web-1", NAMES[0])].result] == [Failure]
    assert [type(r) for r in cases[("lab.web-2", "containers")].result] == [Error]
    assert "+X = 1" in (cases[("lab.web-1", NAMES[0])].result[0].text or "")
    assert cases[("lab.web-1", "tasks_ran")].system_out == "warning: never_fires: manual <only> & fine"
    assert cases[("lab.web-1", NAMES[0])].time == 1.75


def test_skipped_checks_and_reports_without_durations_stay_valid() -> None:
    report = DriftReport("lab", "r", T0, ("h",), (Check("h", "playbook:x", CheckStatus.SKIPPED, ("no steps",)),
                                                  Check("h", "containers", CheckStatus.OK)))
    text = junit.render(report)
    validate(text)
    (skipped, ok) = gitlab_cases(text)
    assert skipped["status"] == "skipped" and ok["status"] == "success" and ok["time"] is None
    assert 'skipped="1"' in text and "time=" not in text
