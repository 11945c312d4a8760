"""The shipped Celery playbooks and `remediate diagnose` against a real broken lab stack, over a real sshd.

One stack walks the user's path: diagnose (both faults) -> apply --check --diff (diffs and the planned
rebuild, nothing touched) -> apply (fixed, and verified by rows that show new runs) -> diagnose (clean) ->
apply again (nothing changes). A second stack proves verification is honest when it cannot succeed.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from tests.conftest import LabFactory, Sshd, remediate
from tests.lab import LabStack

pytestmark = pytest.mark.lab

SETTINGS = "backend/edms/settings/base.py"
APPS = "backend/apps/audit/apps.py"
SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
INTEGRITY = ("apps.audit.integrity_tasks.run_daily_integrity_check",
             "apps.audit.integrity_tasks.verify_audit_trail_checksums")


def containers(stack: LabStack) -> dict[str, tuple[str, str]]:
    """service -> (StartedAt, image id) of its container."""
    out = {}
    for service in ("backend", "celery_worker", "celery_beat"):
        cid = stack.compose("ps", "-q", service).stdout.strip()
        doc = json.loads(__import__("subprocess").run(["docker", "inspect", cid], capture_output=True, text=True,
                                                      check=True).stdout)[0]
        out[service] = (doc["State"]["StartedAt"], doc["Image"])
    return out


def sources(stack: LabStack) -> dict[str, bytes]:
    return {rel: (stack.dir / rel).read_bytes() for rel in (SETTINGS, APPS)}


def project_tree(stack: LabStack) -> dict[str, str]:
    """Every file of the compose project, build contexts included: relative path -> sha256."""
    return {str(p.relative_to(stack.dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in stack.dir.rglob("*") if p.is_file()}


def codes(diagnosis: dict[str, object]) -> set[str]:
    host = diagnosis["hosts"]["lab"]  # type: ignore[index]
    return {p["code"] for p in host["problems"]}  # type: ignore[index]


def periodic_rows(stack: LabStack) -> dict[str, tuple[str | None, int]]:
    script = ("import json\nfrom django_celery_beat.models import PeriodicTask as P\n"
              "print(json.dumps({t.name: [t.last_run_at and t.last_run_at.isoformat(), t.total_run_count]"
              " for t in P.objects.all()}))\n")
    result = stack.compose("exec", "-T", "backend", "python", "manage.py", "shell", "-c", script)
    assert result.returncode == 0, result.stderr
    return {k: (v[0], v[1]) for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def test_diagnose_check_apply_diagnose_apply_again(tmp_path: Path, sshd: Sshd, lab_factory: LabFactory) -> None:
    stack = lab_factory("baked")
    inventory = str(stack.inventory(tmp_path / "inv.yml", sshd))

    broken = remediate("diagnose", "lab", "-i", inventory, "--format", "json")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    found = codes(json.loads(broken.stdout))
    assert {"beat_scheduler", "beat_scheduler_setting", "unimported_task_module"} <= found, found
    text = remediate("diagnose", "lab", "-i", inventory)
    assert "celery.beat.PersistentScheduler" in text.stdout and "apps.audit.integrity_tasks" in text.stdout
    # a stack started seconds ago has tasks whose last due time predates beat: "pending", not yet "never_run"
    assert re.search(r"task 'lab-heartbeat' \[(pending|never_run)\] .* last run never, runs 0", text.stdout), text.stdout

    before_files, before_containers, before_tree = sources(stack), containers(stack), project_tree(stack)
    check = remediate("apply", "lab", "-i", inventory, "--check", "--diff")
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"--- lab:{stack.dir / SETTINGS}" in check.stdout
    assert f"+CELERY_BEAT_SCHEDULER = '{SCHEDULER}'" in check.stdout
    assert "+        import apps.audit.integrity_tasks" in check.stdout
    assert re.search(r"celery_beat: rebuild via backend \(backend/edms/settings/base\.py is in build context "
                     r"\./backend, not mounted", check.stdout), check.stdout
    assert sources(stack) == before_files and containers(stack) == before_containers, "check mode touched the stack"

    applied = remediate("apply", "lab", "-i", inventory, "--format", "json", timeout=1200)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    steps = {s["name"]: s for s in json.loads(applied.stdout)["hosts"]["lab"]["steps"]}
    ran = steps["periodic tasks show runs after beat started"]
    assert ran["status"] == "ok" and "ran after celery_beat started" in ran["message"], ran
    assert "lab-heartbeat" in ran["message"]
    assert set(INTEGRITY) <= stack.registered_tasks()
    heartbeat_last, heartbeat_runs = periodic_rows(stack)["lab-heartbeat"]
    assert heartbeat_last is not None and heartbeat_runs > 0
    beat_file = stack.exec("celery_beat", "cat", "/app/edms/settings/base.py").stdout
    assert f"CELERY_BEAT_SCHEDULER = '{SCHEDULER}'" in beat_file, "the recreated beat container runs the new file"
    after = containers(stack)
    assert after["celery_beat"][1] != before_containers["celery_beat"][1], "beat runs a rebuilt image"
    tree = project_tree(stack)
    assert sorted(tree) == sorted(before_tree), "apply added (or removed) a file in the project: a backup or temp file?"
    assert {rel for rel in tree if tree[rel] != before_tree[rel]} == {SETTINGS, APPS}
    in_image = stack.exec("celery_beat", "find", "/app", "-name", "*remediate*")
    assert in_image.returncode == 0 and in_image.stdout.strip() == "", "the rebuilt image carries a backup"

    clean = remediate("diagnose", "lab", "-i", inventory, "--format", "json")
    assert clean.returncode == 0, clean.stdout
    assert codes(json.loads(clean.stdout)) == set()

    fixed_files = sources(stack)
    again = remediate("apply", "lab", "-i", inventory, "--format", "json", timeout=1200)
    assert again.returncode == 0, again.stdout + again.stderr
    doc = json.loads(again.stdout)
    assert doc["summary"]["changed"] == 0 and doc["hosts"]["lab"]["status"] == "ok", doc["hosts"]["lab"]
    assert sources(stack) == fixed_files and containers(stack) == after, "a second apply changed something"

    # the trail is intact, and rolling the fixing run back restores the exact files and reloads what it reloaded
    assert remediate("audit", "verify").returncode == 0
    run_id = json.loads(applied.stdout)["run_id"]
    rolled = remediate("rollback", run_id, "--no-verify", timeout=1200)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert sources(stack) == before_files, "rollback did not restore the original files byte for byte"
    assert project_tree(stack) == before_tree, "after the rollback the project is exactly as it was"
    reloaded = containers(stack)
    assert reloaded["celery_beat"][0] > after["celery_beat"][0] and reloaded["celery_worker"][0] > after["celery_worker"][0]
    assert "CELERY_BEAT_SCHEDULER" not in stack.exec("celery_beat", "cat", "/app/edms/settings/base.py").stdout
    assert remediate("audit", "verify").returncode == 0


def test_verification_is_pending_or_fails_honestly(tmp_path: Path, sshd: Sshd, lab_factory: LabFactory) -> None:
    stack = lab_factory("baked")
    inventory = str(stack.inventory(tmp_path / "inv.yml", sshd))
    feb31 = "from django_celery_beat.models import PeriodicTask as P; P.objects.filter(name='Send Test Email')"
    assert stack.exec("backend", "python", "manage.py", "shell", "-c", feb31 + ".update(enabled=True)").returncode == 0
    refused = remediate("apply", "lab", "-i", inventory, "-p", "celery-beat-database-scheduler")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "can never fire: Send Test Email" in refused.stdout and "DatabaseScheduler crashes" in refused.stdout
    assert "CELERY_BEAT_SCHEDULER" not in (stack.dir / SETTINGS).read_text(), "the fix went ahead anyway"
    assert stack.exec("backend", "python", "manage.py", "shell", "-c", feb31 + ".update(enabled=False)").returncode == 0

    assert stack.compose("stop", "celery_worker").returncode == 0  # nothing will execute what beat sends

    pending = remediate("apply", "lab", "-i", inventory, "-p", "celery-beat-database-scheduler",
                        "--verify-timeout", "1s", timeout=1200)
    assert pending.returncode == 4, pending.stdout + pending.stderr
    assert "PENDING: lab-heartbeat first due" in pending.stdout and "can be confirmed after" in pending.stdout
    assert "pending" in pending.stdout.split("RECAP")[1]

    failed = remediate("apply", "lab", "-i", inventory, "-p", "celery-beat-database-scheduler",
                       "-e", "verify_grace=15", timeout=1200)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "did not show a run by the deadline" in failed.stdout
    assert "last seen: lab-heartbeat: last_run_at" in failed.stdout and "results since restart 0" in failed.stdout
