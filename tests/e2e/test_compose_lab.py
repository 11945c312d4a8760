"""Compose steps against real lab stacks through the suite's sshd, driven by the CLI as a user would.

The restart-vs-rebuild decision is planned in check mode with its reason (touching no container), then
applied and proven with `docker inspect` and by reading the changed file inside the new container: the
baked stack (code copied into the image) needs a rebuild, the bind-mounted one a restart. Then exec, logs,
and the errors a user meets: an unknown service, a missing project, a container that dies right after start.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests import lab
from tests.conftest import ROOT, Sshd, remediate, running_lab
from tests.lab import LabStack

pytestmark = pytest.mark.lab

PLAYBOOKS = ROOT / "tests" / "fixtures" / "playbooks"
SETTINGS = "backend/edms/settings/base.py"
SERVICES = ("backend", "celery_beat", "celery_worker", "db", "redis")
DATABASE_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


class Seen(NamedTuple):
    """What `docker inspect` says of a service's container."""

    id: str
    started_at: datetime
    image: str


def started(text: str) -> datetime:
    """Docker's StartedAt (nanoseconds, Z) as an aware datetime."""
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}").replace(tzinfo=timezone.utc)


def containers(stack: LabStack) -> dict[str, Seen]:
    """service -> its container, for every container of the stack's project."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    docs = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)
    out = {}
    for doc in docs:
        service = doc["Config"]["Labels"]["com.docker.compose.service"]
        assert service not in out, f"two containers of {service}"
        out[service] = Seen(doc["Id"], started(doc["State"]["StartedAt"]), doc["Image"])
    assert sorted(out) == list(SERVICES), out
    return out


def image_of_tag(stack: LabStack) -> str:
    """The image id the stack's built tag points at (what backend's `build:` makes)."""
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", f"remediate-lab-{stack.name}:lab"],
                          capture_output=True, text=True, check=True).stdout.strip()


def apply(stack: LabStack, sshd: Sshd, tmp_path: Path, playbook: str, *args: str,
          **host_vars: object) -> subprocess.CompletedProcess[str]:
    """`remediate apply lab -p PLAYBOOK ARGS` with an inventory reaching `stack` and carrying `host_vars`."""
    inventory = stack.inventory(tmp_path / f"inv-{uuid.uuid4().hex[:6]}.yml", sshd, **host_vars)
    return remediate("apply", "lab", "-i", str(inventory), "-p", str(PLAYBOOKS / playbook), *args)


def in_container(stack: LabStack, service: str, path: str) -> str:
    """A file as the service's running container sees it."""
    result = stack.exec(service, "cat", path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fresh_stack(tmp_path_factory: pytest.TempPathFactory, variant: lab.Variant, **options: Any) -> Iterator[LabStack]:
    yield from running_lab(tmp_path_factory, f"compose-{variant}", variant, **options)


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    """A fresh baked stack shared by this module's tests; each leaves beat running when it ends."""
    yield from fresh_stack(tmp_path_factory, "baked")


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    """A fresh bind-mounted stack for this module (its beat is switched to the DatabaseScheduler: the
    31-February row disabled, which beat's DatabaseScheduler dies on with the old version set)."""
    yield from fresh_stack(tmp_path_factory, "mounted", feb31="disabled")


def test_baked_settings_change_is_planned_as_a_rebuild_then_applied(baked: LabStack, sshd: Sshd,
                                                                    tmp_path: Path) -> None:
    mark = f"mark-{uuid.uuid4().hex[:8]}"
    change = {"setting": "REMEDIATE_LAB_MARK", "value": mark}
    before, tag_before = containers(baked), image_of_tag(baked)
    settings_before = (baked.dir / SETTINGS).read_text()

    check = apply(baked, sshd, tmp_path, "compose-settings-reload.yml", "--check", **change)
    every_action = apply(baked, sshd, tmp_path, "compose-actions.yml", "--check")

    assert check.returncode == 2, check.stdout + check.stderr
    compose = f"docker compose --project-directory {baked.dir}"  # v2: what the lab has
    assert (f"would celery_beat: rebuild via backend (backend/edms/settings/base.py is in build context ./backend, "
            f"not mounted; image built by backend): {compose} build backend; "
            f"{compose} up -d --no-deps --force-recreate celery_beat") in check.stdout, check.stdout
    assert every_action.returncode == 2, every_action.stdout + every_action.stderr
    assert f"would backend, celery_worker, celery_beat: rebuild: {compose} build backend" in every_action.stdout
    assert "--dry-run" not in check.stdout + every_action.stdout
    assert containers(baked) == before, "check mode touched a container"
    assert image_of_tag(baked) == tag_before, "check mode built an image"
    assert (baked.dir / SETTINGS).read_text() == settings_before

    applied = apply(baked, sshd, tmp_path, "compose-settings-reload.yml", **change)

    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = containers(baked)
    beat_before, beat = before["celery_beat"], after["celery_beat"]
    assert beat.id != beat_before.id and beat.started_at > beat_before.started_at, (beat_before, beat)
    assert beat.image != beat_before.image and beat.image == image_of_tag(baked), "beat runs the rebuilt image"
    assert f"REMEDIATE_LAB_MARK = '{mark}'" in in_container(baked, "celery_beat", "/app/edms/settings/base.py")
    others = [s for s in SERVICES if s != "celery_beat"]
    assert [after[s] for s in others] == [before[s] for s in others], "only the reloaded service was recreated"
    assert f"celery_beat: {baked.name}-celery_beat-1 running, started" in applied.stdout

    again = apply(baked, sshd, tmp_path, "compose-settings-reload.yml", **change)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "handler: reload beat" not in again.stdout, again.stdout
    assert containers(baked) == after, "the second run touched a container"


def test_mounted_settings_change_is_a_restart(mounted: LabStack, sshd: Sshd, tmp_path: Path) -> None:
    change = {"setting": "CELERY_BEAT_SCHEDULER", "value": DATABASE_SCHEDULER}
    before, tag_before = containers(mounted), image_of_tag(mounted)

    check = apply(mounted, sshd, tmp_path, "compose-settings-reload.yml", "--check", **change)
    every_action = apply(mounted, sshd, tmp_path, "compose-actions.yml", "--check")

    assert check.returncode == 2, check.stdout + check.stderr
    assert (f"would celery_beat: restart (backend/edms/settings/base.py is bind-mounted at /app): "
            f"docker compose --project-directory {mounted.dir} restart celery_beat") in check.stdout, check.stdout
    assert every_action.returncode == 2, every_action.stdout + every_action.stderr
    assert containers(mounted) == before, "check mode touched a container"
    assert image_of_tag(mounted) == tag_before, "check mode built an image"

    applied = apply(mounted, sshd, tmp_path, "compose-settings-reload.yml", **change)

    assert applied.returncode == 0, applied.stdout + applied.stderr
    beat_before, beat = before["celery_beat"], containers(mounted)["celery_beat"]
    assert beat.id == beat_before.id and beat.image == beat_before.image, "a restart keeps container and image"
    assert beat.started_at > beat_before.started_at, (beat_before, beat)
    seen_by_beat = in_container(mounted, "celery_beat", "/app/edms/settings/base.py")
    assert f"CELERY_BEAT_SCHEDULER = '{DATABASE_SCHEDULER}'" in seen_by_beat

    # The restarted container keeps its old log: the expectation reads only what its current process wrote.
    new_banner = apply(mounted, sshd, tmp_path, "compose-logs.yml", service="celery_beat",
                       expect=r"scheduler -> django_celery_beat\.schedulers\.DatabaseScheduler", log_timeout=60)
    old_banner = apply(mounted, sshd, tmp_path, "compose-logs.yml", service="celery_beat",
                       expect=r"scheduler -> celery\.beat\.PersistentScheduler", log_timeout=3)

    assert new_banner.returncode == 0, new_banner.stdout + new_banner.stderr
    assert "matched: . scheduler -> django_celery_beat.schedulers.DatabaseScheduler" in new_banner.stdout
    assert ". scheduler -> celery.beat.PersistentScheduler" in mounted.logs("celery_beat"), "the old run's banner is gone"
    assert old_banner.returncode == 1, old_banner.stdout + old_banner.stderr
    assert (r"no log line of celery_beat since it started matches /scheduler -> celery\.beat\.PersistentScheduler/ "
            "within 3 s; last lines:") in old_banner.stdout, old_banner.stdout
    assert ". scheduler -> django_celery_beat.schedulers.DatabaseScheduler" in old_banner.stdout.split("last lines:")[1]


def test_a_container_that_exits_right_after_start_fails_with_its_state_and_log(baked: LabStack, sshd: Sshd,
                                                                                tmp_path: Path) -> None:
    # An override file gives beat a command that dies two seconds after it starts, as a process that fails
    # once its imports are done: `up -d` has returned and the container was seen running by then.
    (baked.dir / "broken-beat.yml").write_text(
        "services:\n  celery_beat:\n"
        "    command: [sh, -c, 'echo \"beat: no broker configured\" >&2; sleep 2; exit 3']\n")
    try:
        failed = apply(baked, sshd, tmp_path, "compose-recreate.yml", service="celery_beat", wait=120,
                       compose_files=["docker-compose.yml", "broken-beat.yml"])

        assert failed.returncode == 1, failed.stdout + failed.stderr
        state = f"celery_beat did not stay up: {baked.name}-celery_beat-1 exited, exit code 3"
        assert state in failed.stdout, failed.stdout
        assert "beat: no broker configured" in failed.stdout.split("last log lines of celery_beat:")[1]
    finally:
        restored = baked.compose("up", "-d", "--no-deps", "--force-recreate", "celery_beat")
        assert restored.returncode == 0, restored.stderr


def test_exec_passes_values_through_the_environment(lab_stack: LabStack, sshd: Sshd, tmp_path: Path) -> None:
    marker = tmp_path / "expanded"
    value = f"it's \"$(touch {marker})\" `touch {marker}` $HOME\nsecond line; exit 3 # ${{PATH}}"

    run = apply(lab_stack, sshd, tmp_path, "compose-exec.yml", service="celery_beat", value=value)

    # the playbook asserts the process printed exactly the value: no shell on the way expanded or split it
    assert run.returncode == 0, run.stdout + run.stderr
    assert "exec -T -e REMEDIATE_VALUE celery_beat python -c" in run.stdout
    assert "$(touch" not in run.stdout, "the value was pasted into the command line"
    assert not marker.exists()


def test_logs_match_beats_banner_since_its_container_started(lab_stack: LabStack, sshd: Sshd, tmp_path: Path) -> None:
    run = apply(lab_stack, sshd, tmp_path, "compose-logs.yml", service="celery_beat",
                expect=r"scheduler -> celery\.beat\.\w+Scheduler", log_timeout=60)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "matched: . scheduler -> celery.beat.PersistentScheduler" in run.stdout


def test_unknown_service_and_missing_project_are_clear_errors(lab_stack: LabStack, sshd: Sshd, tmp_path: Path) -> None:
    before = containers(lab_stack)

    unknown = apply(lab_stack, sshd, tmp_path, "compose-recreate.yml", service="celery_beet", wait=60)
    missing = apply(lab_stack, sshd, tmp_path, "compose-recreate.yml", service="celery_beat", wait=60,
                    compose_dir=str(tmp_path / "no-such-project"))

    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert (f"no service 'celery_beet' in compose project {lab_stack.dir} "
            "(services: backend, celery_beat, celery_worker, db, redis)") in unknown.stdout
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert f"compose project directory {tmp_path / 'no-such-project'} does not exist on lab" in missing.stdout
    assert containers(lab_stack) == before
