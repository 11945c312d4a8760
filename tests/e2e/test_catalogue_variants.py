"""Catalogue faults beat_pidfile (issue 16 #1) and migrations (#5) on the current set (celery 5.7.0 /
django-celery-beat 2.9.0), one lab for the four tests, in this order (each leaves the next a state it can break):
- beat-pidfile: the old set's restart loop does not happen here: celery 5.7.0 removes a pidfile holding its own
  pid (beat is PID 1), so beat runs on and sends; diagnose names the persisted pidfile as a warning only, and
  site.yml's check shows the one thing it would change: --pidfile out of beat's command (README "The catalogue");
- beat-pidfile-init: the 5.7.0 state that still loops: beat (PID 1, its pidfile holds 1) killed uncleanly, then run
  under `init: true` (docker's init is PID 1, beat its child): pid 1 is alive, so beat exits 73 at every start;
- migrations: the issue's own form, a database never migrated for django_celery_beat and django_celery_results
  (both at zero: the tables gone, seed_lab's rows with them): beat dies on start (relation ... does not exist);
  here beat keeps the pidfile tests' `restart: unless-stopped`, so it dies in docker's restart loop (exit 1)
  rather than staying exited as on the plain lab (test_catalogue_settings.py's migrations-upgrade).
  After `migrate` beat recreates only the rows of app.conf.beat_schedule and its own celery.backend_cleanup
  (crontabs at :00, :15, */30 and daily): the proof waits for the soonest of those, or is honestly PENDING (exit 4)
  when it is due beyond --verify-timeout; nothing reseeds them but lab/reset, which the test runs last;
- unseen-change: a row enabled by QuerySet.update(), inside the 300 s before 2.9.0 reloads by itself.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests import lab
from tests.catalogue import CATALOGUE_IDS, FaultLab, project_digest

pytestmark = pytest.mark.lab
CATALOGUE_VERSIONS = "current"

PIDFILE = "/var/lib/celery/celerybeat.pid"
CODE_ROWS = {"process-document-effective-dates", "process-document-obsoletion-dates", "perform-system-health-check",
             "run-daily-integrity-check", "verify-audit-trail-checksums"}  # lab/stack/backend/edms/celery.py
VERIFY_TIMEOUT = 150


def beat_container(fault_lab: FaultLab) -> dict[str, object]:
    cid = fault_lab.stack.compose("ps", "-a", "-q", "celery_beat").stdout.split()[0]
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True).stdout
    doc: dict[str, object] = json.loads(out)[0]
    return doc


def rows(fault_lab: FaultLab) -> set[str]:
    result = fault_lab.stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c",
                                     "from django_celery_beat.models import PeriodicTask as P\n"
                                     "print('ROWS=' + ','.join(P.objects.values_list('name', flat=True)))")
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("ROWS="))
    return set(filter(None, line[5:].split(",")))


def test_a_pidfile_holding_beats_own_pid_is_removed_on_the_current_set(fault_lab: FaultLab) -> None:
    said = fault_lab.break_("beat-pidfile")
    assert "removed the stale pidfile (it held its own pid) and runs on" in said, said
    # beat keeps running after docker's restart, and sends
    beat = beat_container(fault_lab)
    state = beat["State"]
    assert isinstance(state, dict) and state["Status"] == "running" and int(str(beat["RestartCount"])) >= 1, state
    log = ""
    for _ in range(40):  # lab-heartbeat is due every minute
        log = fault_lab.stack.compose("logs", "--no-log-prefix", "--since", str(state["StartedAt"]), "celery_beat").stdout
        if "Sending due task" in log:
            break
        time.sleep(3)
    assert "Sending due task" in log and "already exists" not in log, log[-2000:]

    # diagnose: a warning naming the persisted pidfile and this beat's celery, no catalogue problem
    rc, doc = fault_lab.diagnose()
    host = doc["hosts"]["lab"]
    assert not [f for f in host["problems"] if f["code"] in CATALOGUE_IDS], host["problems"]
    warning = next(f for f in host["warnings"] if f["code"] == "beat_pidfile")
    assert "this beat runs celery 5.7.0" in warning["message"], warning
    assert f"{PIDFILE} is on the volume" in " ".join(warning["evidence"]), warning
    assert rc == (2 if host["problems"] else 0), host["problems"]

    # site.yml on this host: the declared state (no pidfile a restart keeps) is its one change, previewed
    before = project_digest(fault_lab.stack)
    check = fault_lab.cli("apply", "lab", "--check", "--diff")
    assert check.returncode == 2, check.stdout[-3000:] + check.stderr[-2000:]
    would = [line for line in check.stdout.splitlines() if "| would_change |" in line]
    assert len(would) == 2 and "beat's command names no --pidfile a restart keeps" in would[0] \
        and "handler: recreate beat" in would[1], would
    assert f'-    command: ["celery", "-A", "edms", "beat", "-l", "info", "--pidfile", "{PIDFILE}"]' in check.stdout
    assert project_digest(fault_lab.stack) == before
    fault_lab.dirty = False  # beat runs: the next test's lab/break builds on this state


def test_beat_under_init_refuses_a_pidfile_holding_pid_1_on_the_current_set(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("beat-pidfile-init", "celery-beat-pidfile", finding="beat_pidfile")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "beat_pidfile")
    # docker shows the container restarting (exit code 73) or running for a moment between attempts
    assert any("exit code 73" in e or "between restart attempts" in e for e in finding["evidence"]), finding
    assert f"Pidfile ({PIDFILE}) already exists" in finding["evidence"], finding
    assert f'-    command: ["celery", "-A", "edms", "beat", "-l", "info", "--pidfile", "{PIDFILE}"]' in seen.check
    # beat runs without a pidfile, under init as the user set it
    beat = beat_container(fault_lab)
    assert PIDFILE not in json.dumps(beat["Args"]) and beat["HostConfig"]["Init"] is True, beat["Args"]  # type: ignore[index]


def test_a_database_never_migrated_for_celerys_apps(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("migrations", "celery-migrations", apply_args=("--verify-timeout", str(VERIFY_TIMEOUT)),
                          applied_rc=(0, 4))
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "migrations")
    assert 'beat dies on start (relation "django_celery_beat_' in finding["message"], finding
    evidence = "\n".join(finding["evidence"])
    assert "django_celery_beat: " in evidence and " not applied (0001_initial," in evidence, evidence
    assert "django_celery_results: " in evidence, evidence
    assert re.search(r"celery_beat-1(: (restarting|running), \d+ restart\(s\)| exited, exit code 1)", evidence), evidence
    assert 'TaskResult: ProgrammingError: relation "django_celery_results_taskresult" does not exist' in evidence
    assert "Create model PeriodicTask" in seen.check and "Create model TaskResult" in seen.check
    assert "migrate django_celery_beat --noinput" in seen.check and "migrate django_celery_results --noinput" in seen.check

    # beat recreated the rows of its code schedule (and its cleanup), no seed_lab row: the proof waits for those
    assert rows(fault_lab) == CODE_ROWS | {"celery.backend_cleanup"}
    steps = seen.applied["hosts"]["lab"]["steps"]
    assert any(s["kind"] == "compose_logs" and s["status"] == "ok" for s in steps), steps
    proof = next(s for s in steps if s["kind"] == "celery_tasks_run")
    data = proof["data"]
    assert set(data["tasks"]) <= CODE_ROWS, data
    due = datetime.fromisoformat(data["due"])
    assert due.minute in (0, 15, 30) and due.second == 0, data  # the soonest of the code schedule's crontabs
    if seen.applied["exit_code"] == 4:
        # honest: due beyond --verify-timeout, not passed; it says when it can be confirmed
        assert proof["status"] == "pending" and proof["message"].startswith("PENDING: "), proof
        assert datetime.fromisoformat(data["confirm_after"]) > datetime.now(timezone.utc) + timedelta(seconds=VERIFY_TIMEOUT) - timedelta(seconds=120)
    else:
        assert proof["status"] == "ok" and "results since" in proof["message"], proof
    print(f"migrations proof: exit {seen.applied['exit_code']}: {proof['message']}")

    # lab/reset brings the instance back: seed_lab's rows included
    start = time.monotonic()
    lab.reset(fault_lab.stack)
    names = rows(fault_lab)
    assert {"lab-heartbeat", "Send Test Email", "check-workflow-timeouts"} <= names, names
    print(f"lab/reset: {time.monotonic() - start:.0f} s")


def test_a_row_enabled_by_update_on_the_current_set(fault_lab: FaultLab) -> None:
    """unseen_change on django-celery-beat 2.9.0: its DatabaseScheduler reloads the whole schedule 300 s after its
    last load (`SCHEDULE_SYNC_MAX_INTERVAL`, schedulers.py; logged only at DEBUG), and the last load is the
    "Schedule changed" lab/break's save() causes: for those 300 s the fault is there as on 2.7.0, and the flow
    (about 2 min from that load) finds and fixes it inside them; beat's INFO line after the bump is the bump's."""
    seen = fault_lab.flow("unseen-change", "celery-unseen-change")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "unseen_change")
    assert "'lab-heartbeat'" in finding["message"], finding
    steps = seen.applied["hosts"]["lab"]["steps"]
    assert any(s["kind"] == "compose_logs" and s["status"] == "ok" and "Schedule changed" in s["message"] for s in steps)
    proof = next(s for s in steps if s["kind"] == "celery_tasks_run")
    assert proof["status"] == "ok" and "lab-heartbeat" in proof["message"], proof
    assert not any(s["kind"].startswith("compose_re") for s in steps)  # no restart
