"""`remediate drift` against the Docker lab: the broken stack drifts on both seed faults; --fix ends clean."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediate.diagnose import FAULTS
from tests import lab
from tests.conftest import Sshd, remediate, running_lab
from tests.e2e.test_drift_report import dom, screenshot

pytestmark = [pytest.mark.lab, pytest.mark.ssh]

PLAYBOOK_CHECKS = ("lab/playbook:celery-beat-database-scheduler", "lab/playbook:celery-register-task-modules")
# beat has to have run longer than a task's window (sync lag 3 min + grace 1 min after its due time) before
# a task it never ran counts as never-run rather than pending; the shared stack may have just started
NEVER_RUN_WAIT = 8 * 60
# the checks drift runs on the lab: the seeds' six (their two playbooks and four health checks), and per catalogue
# fault its playbook (site.yml imports each) and its health check
CHECKS = 6 + 2 * len(FAULTS)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabStack]:
    """One fresh broken stack for this module's tests (startup is the expensive part): the drift test reads it
    broken, the next one fixes it. Named variants: 31 February disabled, fast sync."""
    yield from running_lab(tmp_path_factory, "drift-lab", fast_sync=True, feb31="disabled")


def drift_json(inventory: Path, env: dict[str, str], *extra: str) -> tuple[int, dict[str, Any], str]:
    out = remediate("drift", "lab", "-i", str(inventory), "--format", "json", *extra, env=env, timeout=1800)
    try:
        return out.returncode, json.loads(out.stdout), out.stderr
    except json.JSONDecodeError:
        raise AssertionError(f"exit {out.returncode}, not JSON:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}") from None


def test_drift_on_the_broken_lab_names_both_faults_and_the_never_run_tasks(
    tmp_path: Path, sshd: Sshd, fresh: lab.LabStack
) -> None:
    # `fresh` before the next test fixes it: the fix's check refuses while the 31-February row is enabled
    inventory = fresh.inventory(tmp_path / "lab.yml", sshd)
    env = {"REMEDIATE_STATE_DIR": str(tmp_path / "state")}
    deadline = time.monotonic() + NEVER_RUN_WAIT
    while True:  # a bounded poll: until beat has run long enough for the every-minute task to be never-run
        code, doc, err = drift_json(inventory, env)
        heartbeat = next((t for t in doc["tasks"] if t["name"] == "lab-heartbeat"), None)
        if heartbeat is None or heartbeat["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(20)
    assert code == 2, err
    drifted = set(doc["drifted"])
    assert set(PLAYBOOK_CHECKS) <= drifted
    assert {"lab/beat_scheduler", "lab/tasks_registered", "lab/tasks_ran"} <= drifted, drifted
    checks = {c["check"]: c for c in doc["checks"]}
    assert any("PersistentScheduler" in d for d in checks["beat_scheduler"]["details"])
    assert any("apps.audit.integrity_tasks" in d for d in checks["tasks_registered"]["details"])
    scheduler_diff = checks["playbook:celery-beat-database-scheduler"]["diff"]
    assert "+CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in scheduler_diff
    assert "import apps.audit.integrity_tasks" in checks["playbook:celery-register-task-modules"]["diff"]
    never_run = {t["name"]: t for t in doc["tasks"] if t["status"] == "never_run"}
    assert "lab-heartbeat" in never_run and never_run["lab-heartbeat"]["last_due"], doc["tasks"]
    assert all(t["last_due"] for t in never_run.values())
    assert any("never_run: PeriodicTask 'lab-heartbeat': never run; was due" in d for d in checks["tasks_ran"]["details"])

    text = remediate("drift", "lab", "-i", str(inventory), env=env, timeout=1800)
    assert text.returncode == 2
    assert "DRIFT   beat_scheduler" in text.stdout and "DRIFT   tasks_registered" in text.stdout
    assert "task 'lab-heartbeat' (apps.scheduler.tasks.perform_system_health_check): never-run, due " in text.stdout
    junit = remediate("drift", "lab", "-i", str(inventory), "--format", "junit", env=env, timeout=1800)
    (tmp_path / "drift.xml").write_text(junit.stdout)
    from junitparser import JUnitXml

    from tests.unit.test_junit import validate

    validate(junit.stdout)  # the Jenkins xunit plugin's junit-10.xsd

    xml = JUnitXml.fromfile(str(tmp_path / "drift.xml"))
    assert xml.tests == CHECKS and xml.failures >= 5 and xml.errors == 0


def test_fix_repairs_the_broken_lab_and_the_next_drift_is_clean(
    tmp_path: Path, sshd: Sshd, fresh: lab.LabStack, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = fresh.inventory(tmp_path / "lab.yml", sshd)
    env = {"REMEDIATE_STATE_DIR": str(tmp_path / "state")}
    code, doc, err = drift_json(inventory, env, "--fix")
    assert code == 0, json.dumps(doc, indent=1)[-4000:] + err
    assert set(PLAYBOOK_CHECKS) <= set(doc["before"]["drifted"])
    assert {"lab/beat_scheduler", "lab/tasks_registered"} <= set(doc["before"]["drifted"])
    assert doc["fix"]["hosts"]["lab"]["status"] == "changed" and doc["fix"]["exit_code"] == 0
    assert doc["after"]["exit_code"] == 0 and doc["after"]["drifted"] == []
    assert "DatabaseScheduler" in fresh.logs("celery_beat")

    code, doc, err = drift_json(inventory, env)
    assert code == 0 and doc["drifted"] == [], json.dumps(doc, indent=1)[-4000:] + err
    # the seed's manual-only task (31 February) is a warning, and the exit code stays 0
    warnings = [w for c in doc["checks"] for w in c["warnings"]]
    assert any("never_fires: PeriodicTask 'Send Test Email'" in w for w in warnings), warnings

    history = remediate("drift", "history", "lab", env=env)
    verdicts = [line.split()[4] for line in history.stdout.splitlines()]
    assert verdicts == ["drift", "clean", "clean"], history.stdout

    # the report of these three real runs: the fleet matrix, the trend chart, the per-host detail
    page = tmp_path / "report.html"
    assert remediate("report", "lab", "--html", str(page), env=env).returncode == 0
    root, lines, loads = dom(tmp_path, page)
    assert loads == []
    (row,) = root.by_id("fleet").all("tbody")[0].all("tr")
    assert [td.text() for td in row.all("td", "cell")] == ["✓"] * CHECKS and row.all("td", "state")[0].text() == "clean"
    assert [a.text() for a in row.all("a", "s")] == ["✗", "✓", "✓"]  # drift, then clean after --fix, clean again
    assert root.by_id("count-clean").text().startswith("1 clean")
    assert len(root.by_id("panel-drift").all("rect")) == 3
    assert "tasks_ran: ok on 1 host(s)" in root.by_id("checked").text()
    assert "never_fires: PeriodicTask 'Send Test Email'" in root.by_id("host-lab").text()  # a warning, not drift
    verdicts = [r.all("td")[3].text() for r in root.by_id("runs").all("tbody")[0].all("tr")]
    assert verdicts == ["clean", "clean", "drift"]
    durations = [r.all("td")[2].text() for r in root.by_id("runs").all("tbody")[0].all("tr")]
    assert all(re.fullmatch(r"\d+\.\d s|\d+ min \d\d s", d) for d in durations), durations
    screenshot(tmp_path, page, "lab-report.png", "1100,1500", capsys)
