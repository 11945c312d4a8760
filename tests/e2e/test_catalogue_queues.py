"""Catalogue faults unconsumed_queue and worker_not_consuming (issue 16 #2, #8) end to end on one lab
instance of the current set (both sets behave alike), after the healthy lab shows site.yml, which imports
every catalogue playbook, would change nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.catalogue import FaultLab

pytestmark = pytest.mark.lab


def test_on_a_healthy_lab_site_yml_would_change_nothing(fault_lab: FaultLab) -> None:
    check = fault_lab.cli("apply", "lab", "--check", "--diff")
    assert check.returncode == 0 and "| would_change |" not in check.stdout, check.stdout[-3000:]
    for playbook in ("celery-beat-pidfile", "celery-unconsumed-queue", "celery-worker-not-consuming", "celery-two-beats"):
        assert f"playbooks/{playbook}.yml" in check.stdout


RESULTS_WAIT = """\
- name: a task leaves a result
  hosts: all
  steps:
    - name: a task leaves a TaskResult since this step began
      celery_queues: {service: celery_worker, app: edms, results: ["*"], timeout: 150}
      verify: true
"""


def test_a_wait_for_results_that_no_send_can_meet_in_time_is_pending(fault_lab: FaultLab, tmp_path: Path) -> None:
    """A wait for TaskResults alone knows beat's schedule (django-celery-beat's rows): with --verify-timeout 5 s
    the lab's every-minute row is sent too late, so the proof is PENDING naming it, not failed after 150 s."""
    playbook = tmp_path / "results.yml"
    playbook.write_text(RESULTS_WAIT)
    pending = fault_lab.cli("apply", "lab", "-p", str(playbook), "--verify-timeout", "5s", "--format", "json")
    assert pending.returncode == 4, pending.stdout[-3000:] + pending.stderr[-2000:]
    (step,) = json.loads(pending.stdout)["hosts"]["lab"]["steps"]
    assert step["status"] == "pending" and step["message"].startswith("PENDING: no TaskResult since "), step
    assert "lab-heartbeat" in step["data"]["tasks"] and "can be confirmed after" in step["message"], step
    # with the default --verify-timeout the same wait sees the row's next run leave its TaskResult
    ran = fault_lab.cli("apply", "lab", "-p", str(playbook), "--format", "json")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    (step,) = json.loads(ran.stdout)["hosts"]["lab"]["steps"]
    assert step["status"] == "ok" and "TaskResult rows apps.scheduler.tasks." in step["message"], step


def test_a_queue_no_worker_consumes(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("unconsumed-queue", "celery-unconsumed-queue")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "unconsumed_queue")
    assert finding["message"].startswith("tasks are sent to queue 'monitoring', which no worker consumes")
    assert "sent there by: PeriodicTask 'lab-heartbeat'" in finding["evidence"]
    assert '-    command: ["celery", "-A", "edms", "worker", "-Q", "celery",' in seen.check
    assert '+    command: ["celery", "-A", "edms", "worker", "-Q", "celery,monitoring",' in seen.check
    proof = [s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_queues" and s["status"] == "ok"][-1]
    assert "waiting monitoring: 0; TaskResult rows apps.scheduler.tasks." in proof["message"], proof


def test_a_worker_alive_but_not_consuming(fault_lab: FaultLab) -> None:
    seen = fault_lab.flow("worker-not-consuming", "celery-worker-not-consuming")
    finding = next(f for f in seen.broken["hosts"]["lab"]["problems"] if f["code"] == "worker_not_consuming")
    assert any(e.endswith(": nothing") and e.startswith("workers answering (active_queues): ") for e in finding["evidence"])
    assert "would celery_worker: restart" in seen.check
    proof = [s for s in seen.applied["hosts"]["lab"]["steps"] if s["kind"] == "celery_queues" and s["status"] == "ok"][-1]
    assert "TaskResult rows apps." in proof["message"], proof
