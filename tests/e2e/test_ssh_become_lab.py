"""A non-root deploy user fixes the write-up's server through sudo: `docker compose` (diagnose's probes, the
rebuilds, the verifications) and the root-owned file edits all run as root through `become`, over the deploy
user's one SSH connection, against a real lab stack and an sshd of the test's own.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import sshlab
from tests.conftest import LabFactory
from tests.sshlab import run

pytestmark = [pytest.mark.lab, pytest.mark.ssh]

SETTINGS = "backend/edms/settings/base.py"
APPS = "backend/apps/audit/apps.py"


@pytest.fixture
def deploy_host(tmp_path: Path) -> Iterator[tuple[sshlab.Server, sshlab.User, Path, Path]]:
    """(sshd, a deploy user with sudo rights and no docker group, its key, a home for the controller)."""
    base = sshlab.base_dir()
    server = sshlab.start_sshd(base / "sshd", ["127.0.0.66"])
    user = sshlab.add_user(base, sudo="ALL=(ALL:ALL) NOPASSWD: ALL")
    try:
        key = sshlab.keygen(base / "keys" / user.name)
        server.authorize(user.name, key)
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "known_hosts").write_text("\n".join(server.known_hosts_lines()) + "\n")
        yield server, user, key, home
    finally:
        server.stop()
        sshlab.remove_user(user)
        shutil.rmtree(base, ignore_errors=True)


def codes(doc: dict[str, object]) -> set[str]:
    host = doc["hosts"]["lab"]  # type: ignore[index]
    return {p["code"] for p in host["problems"]}  # type: ignore[index]


def test_a_deploy_user_diagnoses_and_fixes_the_lab_through_sudo(
        tmp_path: Path, lab_factory: LabFactory, deploy_host: tuple[sshlab.Server, sshlab.User, Path, Path]) -> None:
    server, user, key, home = deploy_host
    stack = lab_factory("baked")  # the write-up's server: every row enabled, Celery's default sync
    host = {"address": server.address, "port": server.port, "user": user.name, "identity_file": str(key),
            "vars": {"compose_dir": str(stack.dir), "celery_app": stack.facts.celery_app,
                     "backup_dir": str(tmp_path / "backups")}}
    plain = tmp_path / "plain.yml"
    plain.write_text(json.dumps({"hosts": {"lab": host}}))
    sudo = tmp_path / "sudo.yml"
    sudo.write_text(json.dumps({"hosts": {"lab": {**host, "become": True}}}))

    # as itself the deploy user can reach neither the project nor the Docker engine
    denied = run("diagnose", "lab", "-i", str(plain), "--format", "json", home=home)
    assert denied.returncode == 1, denied.stdout + denied.stderr

    broken = run("diagnose", "lab", "-i", str(sudo), "--format", "json", home=home)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert {"beat_scheduler", "beat_scheduler_setting", "unimported_task_module"} <= codes(json.loads(broken.stdout))

    applied = run("apply", "lab", "-i", str(sudo), "--format", "json", home=home, timeout=1200)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    for rel in (SETTINGS, APPS):
        st = (stack.dir / rel).stat()
        assert (st.st_uid, st.st_gid) == (0, 0), f"{rel} changed owner"
    assert "CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler'" in (stack.dir / SETTINGS).read_text()

    clean = run("diagnose", "lab", "-i", str(sudo), "--format", "json", home=home)
    assert clean.returncode == 0, clean.stdout + clean.stderr
