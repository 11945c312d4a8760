"""The seed flow on the lab's second layout (cookiecutter: compose.yaml, DJANGO_SETTINGS_MODULE from an env_file,
config.settings.production star-importing base, celery -A config.celery_app), on both version sets, with the
write-up's table verbatim and Celery's default sync: diagnose (both faults) -> apply --check --diff (diffs
against the module beat loads, nothing touched) -> apply (verified by rows) -> apply again (no change) ->
diagnose (clean) -> lab/reset (the layout exactly as created).

A file of its own so that a parallel worker runs it beside test_lab.py (each flow waits out beat's sync).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LabFactory, Sshd, remediate
from tests.e2e.test_lab import HEARTBEAT, INTEGRITY_TASKS, SCHEDULER, WRITE_UP_TABLE, periodic_tasks
from tests.lab import VERSION_SETS, LabStack, Versions, reset

pytestmark = pytest.mark.lab


def _containers(stack: LabStack) -> dict[str, tuple[str, str]]:
    """service -> (container id, image id) of the stack's Django services."""
    out = {}
    for service in ("backend", "celery_worker", "celery_beat"):
        cid = stack.compose("ps", "-q", service).stdout.strip()
        image = subprocess.run(["docker", "inspect", "-f", "{{.Image}}", cid], capture_output=True, text=True,
                               check=True).stdout.strip()
        out[service] = (cid, image)
    return out


def _problem_codes(diagnosis: dict[str, Any]) -> set[str]:
    return {p["code"] for p in diagnosis["hosts"]["lab"]["problems"]}


@pytest.mark.parametrize("versions", VERSION_SETS)
def test_seed_flow_on_the_cookiecutter_layout(tmp_path: Path, sshd: Sshd, lab_factory: LabFactory,
                                              versions: Versions) -> None:
    # the write-up's server as it is: every row enabled, Celery's default beat sync
    stack = lab_factory("baked", layout="cookiecutter", versions=versions)
    inventory = str(stack.inventory(tmp_path / "inv.yml", sshd))
    production, base = "backend/config/settings/production.py", "backend/config/settings/base.py"
    apps = "backend/apps/audit/apps.py"
    tree = {p.relative_to(stack.dir): p.read_bytes() for p in stack.dir.rglob("*") if p.is_file()}

    broken = remediate("diagnose", "lab", "-i", inventory, "--format", "json")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert {"beat_scheduler", "beat_scheduler_setting", "unimported_task_module"} <= _problem_codes(json.loads(broken.stdout))
    text = remediate("diagnose", "lab", "-i", inventory).stdout
    assert "CELERY_BEAT_SCHEDULER is None in config.settings.production (/app/config/settings/production.py" in text, text
    assert "apps.audit.integrity_tasks" in text

    before = _containers(stack)
    check = remediate("apply", "lab", "-i", inventory, "--check", "--diff")
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"--- lab:{stack.dir / production}" in check.stdout, check.stdout
    assert f"+CELERY_BEAT_SCHEDULER = '{SCHEDULER}'" in check.stdout
    assert f"--- lab:{stack.dir / base}" not in check.stdout, "the fix goes where beat loads it, not to base.py"
    assert f"--- lab:{stack.dir / apps}" in check.stdout and "+        import apps.audit.integrity_tasks" in check.stdout
    assert re.search(r"celery_worker, celery_beat: rebuild via backend \([^)]*backend/config/settings/production\.py[^)]* "
                     r"in build context \./backend", check.stdout), check.stdout
    now = {p.relative_to(stack.dir): p.read_bytes() for p in stack.dir.rglob("*") if p.is_file()}
    assert now == tree and _containers(stack) == before, "check mode touched the stack"

    applied = remediate("apply", "lab", "-i", inventory, "--format", "json", timeout=1200)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    steps = {s["name"]: s for s in json.loads(applied.stdout)["hosts"]["lab"]["steps"]}
    ran = steps["periodic tasks show runs after beat started"]
    assert ran["status"] == "ok" and "lab-heartbeat" in ran["message"], ran
    assert INTEGRITY_TASKS <= stack.registered_tasks()
    assert f"CELERY_BEAT_SCHEDULER = '{SCHEDULER}'" in stack.exec("celery_beat", "cat", "/app/config/settings/production.py").stdout
    assert (stack.dir / base).read_bytes() == tree[Path(base)]
    after = _containers(stack)
    assert after["celery_beat"][1] != before["celery_beat"][1], "beat runs a rebuilt image"

    fixed = {p.relative_to(stack.dir): p.read_bytes() for p in stack.dir.rglob("*") if p.is_file()}
    again = remediate("apply", "lab", "-i", inventory, "--format", "json", timeout=1200)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["summary"]["changed"] == 0, again.stdout
    assert {p.relative_to(stack.dir): p.read_bytes() for p in stack.dir.rglob("*") if p.is_file()} == fixed
    assert _containers(stack) == after, "a second apply recreated a container"

    clean = remediate("diagnose", "lab", "-i", inventory, "--format", "json")
    assert clean.returncode == 0, clean.stdout

    # lab/reset puts this layout back exactly as it was created
    reset(stack)
    assert {p.relative_to(stack.dir): p.read_bytes() for p in stack.dir.rglob("*") if p.is_file()} == tree
    rows = periodic_tasks(stack)
    assert {name: row[2] for name, row in rows.items()} == WRITE_UP_TABLE | HEARTBEAT
    assert ". scheduler -> celery.beat.PersistentScheduler" in stack.logs("celery_beat")
