"""Catalogue faults beat_pidfile and two_beats (issue 16 #1, #7) end to end on one lab instance of the old set
(celery 5.4.0). The stale pidfile is a restart loop there; on the current set (celery 5.7.0 removes a pidfile
holding its own pid) beat runs on and diagnose only warns, so it is tested where users hit it. Two beats are
the compose model's and behave alike on both sets; they share this instance.

two_beats is proved as a user would count it: the every-minute row's TaskResults per minute, two in one minute
while broken (read straight from the table, by the test), one in each of two minutes after the fix (remediate's
proof, `celery_tasks_run` with `once_per_period: 2`)."""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab
CATALOGUE_VERSIONS = "old"


def test_a_stale_beat_pidfile(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("beat-pidfile", "celery-beat-pidfile")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "beat_pidfile")
    assert "Pidfile (/var/lib/celery/celerybeat.pid) already exists" in finding["evidence"]
    assert any(e.startswith("container ") and e.endswith(" restart(s)") for e in finding["evidence"])
    assert any(e.endswith("at /var/lib/celery, which outlives the container") for e in finding["evidence"])
    assert '"--pidfile", "/var/lib/celery/celerybeat.pid"]' in seen.check
    proof = [s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_queues" and s["status"] == "ok"][-1]
    assert "TaskResult rows apps." in proof["message"], proof


# a full minute after the worker's embedded beat started, both beats have sent the every-minute row at its start
HEARTBEAT_RUNS = """
import json
from django_celery_results.models import TaskResult
runs = TaskResult.objects.filter(periodic_task_name="lab-heartbeat", date_done__gte="{since}").order_by("date_done")
print("RUNS:" + json.dumps([d.isoformat() for d in runs.values_list("date_done", flat=True)]))
"""


def heartbeat_runs(fault_lab: FaultLab, since: datetime) -> list[datetime]:
    """lab-heartbeat's TaskResults done since `since` (date_done, UTC), asked of the backend's Django."""
    out = fault_lab.stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c",
                                  HEARTBEAT_RUNS.format(since=since.isoformat()))
    line = next(x for x in out.stdout.splitlines() if x.startswith("RUNS:"))
    return [datetime.fromisoformat(x).astimezone(timezone.utc) for x in json.loads(line[5:])]


def embedded_beat_started(fault_lab: FaultLab) -> datetime:
    """When the worker's embedded beat last logged `beat: Starting` (docker's UTC timestamp of the line)."""
    logs = fault_lab.stack.compose("logs", "--timestamps", "--no-log-prefix", "celery_worker").stdout
    stamp = [line.split()[0] for line in logs.splitlines() if "beat: Starting" in line][-1]
    return datetime.fromisoformat(stamp[:19]).replace(tzinfo=timezone.utc) + timedelta(seconds=1)


def test_two_beats(fault_lab: FaultLab) -> None:
    twice: list[datetime] = []

    def sent_twice_while_broken() -> None:
        # the first full minute after the worker's embedded beat started: both beats send at its start
        start = embedded_beat_started(fault_lab).replace(second=0, microsecond=0) + timedelta(minutes=1)
        deadline = time.monotonic() + 150
        while True:
            runs = [t for t in heartbeat_runs(fault_lab, start) if t < start + timedelta(minutes=1)]
            if len(runs) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
        twice.extend(runs)
        print(f"while broken, lab-heartbeat in the minute from {start:%H:%M}: " + ", ".join(f"{t:%H:%M:%S.%f}" for t in runs))

    seen = fault_lab.flow("two-beats", "celery-two-beats", while_broken=sent_twice_while_broken)
    assert len(twice) == 2, f"while broken, the every-minute row ran {len(twice)} time(s) in one minute: {twice}"
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "two_beats")
    assert finding["message"] == "2 beats run: every periodic task is sent once by each"
    assert any(e.startswith("celery_worker: 1 container(s), command: celery -A edms worker -B") for e in finding["evidence"])
    assert '-    command: ["celery", "-A", "edms", "worker", "-B",' in seen.check
    model = json.loads(fault_lab.stack.compose("config", "--format", "json").stdout)
    assert "-B" not in model["services"]["celery_worker"]["command"]
    assert "beat" in model["services"]["celery_beat"]["command"]
    # check mode lists the proof as planned, and runs it only on a real fix (the second apply skips it)
    proof_name = "one beat sends each periodic task (exactly one TaskResult per period, over two periods)"
    assert proof_name in seen.check and "verification: not run in check mode" in seen.check
    proof = next(s for s in seen.applied["hosts"]["lab"]["steps"] if s["name"] == proof_name)
    assert proof["status"] == "ok", proof
    assert "lab-heartbeat ran once in each of 2 period(s) from " in proof["message"], proof
    assert next(s for s in seen.again["hosts"]["lab"]["steps"] if s["name"] == proof_name)["status"] == "skipped"
    # and the table agrees: from the proof's first period on, one TaskResult a minute
    first = datetime.fromisoformat(re.search(r"from (\S+ \S+)Z:", proof["message"])[1]).replace(tzinfo=timezone.utc)  # type: ignore[index]
    runs = [t for t in heartbeat_runs(fault_lab, first) if t < first + timedelta(minutes=2)]
    assert [t.replace(second=0, microsecond=0) for t in runs] == [first, first + timedelta(minutes=1)], runs
