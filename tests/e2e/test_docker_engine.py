"""Container facts and waits through the Docker Engine API over the host's one SSH connection (issue 18).

Driven by the CLI as a user would, against real lab stacks through sshd daemons of this module's own. Their
sessions get a `docker` wrapper first on PATH that logs every invocation, so a test can see which docker
processes remediate started on the host: compose commands (config, build, up, exec) and `docker system
dial-stdio` (the Engine API's transport), never a `docker inspect`, `docker logs`, `docker ps` or `docker image
inspect` per question. What remediate reports is compared with what `docker inspect` says on this machine.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Sshd, free_port, remediate, running_lab
from tests.lab import LabStack

pytestmark = pytest.mark.lab

PLAYBOOKS = ROOT / "tests" / "fixtures" / "playbooks"
SERVICES = ("backend", "celery_beat", "celery_worker", "db", "redis")
# the docker subcommands a host may see from remediate: compose itself, and the Engine API's transport
ALLOWED = ("compose ", "system dial-stdio")
# remediate reports moments by the host's clock, known to within half the round trip it was measured with
CLOCK = 0.05


@dataclass(frozen=True)
class EngineSshd:
    """An sshd of this module: the suite's Sshd, plus the log of every `docker` its sessions ran."""

    sshd: Sshd
    calls: Path

    def docker_calls(self) -> list[str]:
        """The argv (space-joined) of every `docker` process the sessions started since the last reset."""
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def reset(self) -> None:
        """Forget the calls logged so far."""
        self.calls.write_text("")


def start_sshd(address: str, **environment: str) -> Iterator[EngineSshd]:
    """sshd on `address` in a directory any user can traverse (a non-root user's session reads
    authorized_keys itself), with a logging `docker` wrapper first on the sessions' PATH and `environment` in
    their environment (one SetEnv line: sshd takes its first SetEnv only)."""
    base = Path(tempfile.mkdtemp(prefix="remediate-engine-"))
    base.chmod(0o755)
    shim, keys, calls = base / "bin", base / "ssh", base / "docker-calls.log"
    shim.mkdir()
    real = shutil.which("docker")
    assert real, "docker is not on PATH"
    (shim / "docker").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {calls}\nexec {real} \"$@\"\n")
    (shim / "docker").chmod(0o755)
    calls.write_text("")
    calls.chmod(0o666)
    path = f"{shim}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    port = free_port((address,))
    setenv = " ".join(f"{key}={value}" for key, value in {"PATH": path, **environment}.items())
    env = {**os.environ, "SSHD_EXTRA_CONFIG": f"SetEnv {setenv}"}
    subprocess.run([str(ROOT / "lab" / "sshd.sh"), "start", str(keys), str(port), address], check=True, env=env)
    keys.chmod(0o711)
    (keys / "authorized_keys").chmod(0o644)
    try:
        yield EngineSshd(Sshd(keys, port, (address,)), calls)
    finally:
        subprocess.run([str(ROOT / "lab" / "sshd.sh"), "stop", str(keys)], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def engine_sshd() -> Iterator[EngineSshd]:
    """sshd whose sessions log their docker processes."""
    yield from start_sshd("127.0.0.14")


@pytest.fixture(scope="module")
def dead_daemon_sshd() -> Iterator[EngineSshd]:
    """sshd whose sessions point DOCKER_HOST at a socket nothing listens on: the daemon is unreachable for them."""
    socket_dir = Path(tempfile.mkdtemp(prefix="remediate-nodaemon-"))
    try:
        yield from start_sshd("127.0.0.15", DOCKER_HOST=f"unix://{socket_dir}/no-daemon.sock")
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def engine_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    """A fresh broken stack for this module's tests that break and restore services."""
    yield from running_lab(tmp_path_factory, "engine")


@dataclass(frozen=True)
class Outsider:
    """A non-root user that is not in group docker, and a compose project it can read."""

    name: str
    project: Path


@pytest.fixture(scope="module")
def outsider() -> Iterator[Outsider]:
    """A fresh user (login shell /bin/sh, no password, key login only), compose v2 on its plugin path, not in
    group docker; removed afterwards."""
    name = f"rmd{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix=f"remediate-{name}-"))
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", name], check=True)
    try:
        subprocess.run(["usermod", "-p", "*", name], check=True)  # not locked: sshd without PAM refuses locked accounts
        plugins = home / ".docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        compose = Path(os.path.expanduser("~/.docker/cli-plugins/docker-compose")).resolve()
        assert compose.exists(), "compose v2 is not installed as root's CLI plugin (lab/setup-host.sh)"
        (plugins / "docker-compose").symlink_to(compose)
        project = home / "app"
        project.mkdir()
        (project / "docker-compose.yml").write_text(
            "services:\n  app:\n    image: remediate-lab-os:bookworm\n    command: [sleep, infinity]\n")
        user = pwd.getpwnam(name)
        for path in (home, home / ".docker", plugins, project, project / "docker-compose.yml"):
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        home.chmod(0o755)
        yield Outsider(name, project)
    finally:
        subprocess.run(["userdel", "-f", name], check=False)
        shutil.rmtree(home, ignore_errors=True)


def inventory(path: Path, sshd: Sshd, user: str = "root", /, **host_vars: object) -> Path:
    """An inventory with one host `lab` reached through `sshd` as `user`."""
    lines = [
        "hosts:", "  lab:",
        f"    address: {json.dumps(sshd.addresses[0])}", f"    port: {sshd.port}", f"    user: {user}",
        f"    identity_file: {json.dumps(str(sshd.identity))}", f"    known_hosts: {json.dumps(str(sshd.known_hosts))}",
        "    vars:", *(f"      {key}: {json.dumps(value)}" for key, value in host_vars.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def apply(stack: LabStack, sshd: EngineSshd, tmp_path: Path, playbook: str, *args: str,
          **host_vars: object) -> subprocess.CompletedProcess[str]:
    """`remediate apply lab -p PLAYBOOK ARGS` against `stack` through `sshd`."""
    inv = inventory(tmp_path / f"inv-{uuid.uuid4().hex[:6]}.yml", sshd.sshd, compose_dir=str(stack.dir),
                    celery_app=stack.facts.celery_app, **host_vars)
    return remediate("apply", "lab", "-i", str(inv), "-p", str(PLAYBOOKS / playbook), *args)


def steps_of(run: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The steps of host `lab` in `apply --format json` output."""
    try:
        doc = json.loads(run.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (exit {run.returncode}):\n{run.stdout}\n{run.stderr}") from None
    steps: list[dict[str, Any]] = doc["hosts"]["lab"]["steps"]
    return steps


def inspect(*ids: str) -> list[dict[str, Any]]:
    """`docker inspect` on this machine (the truth the tests compare with)."""
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    docs: list[dict[str, Any]] = json.loads(out)
    return docs


def project_containers(stack: LabStack) -> dict[str, dict[str, Any]]:
    """service -> `docker inspect` of its one container."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.name}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {doc["Config"]["Labels"]["com.docker.compose.service"]: doc for doc in inspect(*ids)}


def when(text: str | None) -> datetime | None:
    """Docker's RFC 3339 (nanoseconds) or an ISO time -> aware datetime at microseconds; None for Docker's zero time."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.replace("+00:00", "").rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}").replace(tzinfo=timezone.utc)


def expected_facts(doc: dict[str, Any]) -> dict[str, Any]:
    """What remediate must report of a container: `docker inspect`'s own values."""
    state, labels = doc["State"], doc["Config"]["Labels"]
    return {
        "id": doc["Id"], "name": doc["Name"].lstrip("/"),
        "project": labels["com.docker.compose.project"], "service": labels["com.docker.compose.service"],
        "status": state["Status"], "running": state["Running"], "health": (state.get("Health") or {}).get("Status"),
        "started_at": when(state["StartedAt"]), "finished_at": when(state["FinishedAt"]),
        "image_id": doc["Image"], "exit_code": state["ExitCode"], "restart_count": doc["RestartCount"],
    }


def reported_facts(container: dict[str, Any]) -> dict[str, Any]:
    """A container as remediate reported it, its times parsed."""
    return {**container, "started_at": when(container.get("started_at")), "finished_at": when(container.get("finished_at"))}


def assert_only_api(sshd: EngineSshd, most_dials: int) -> None:
    """The host ran compose and the Engine API's transport only, and at most `most_dials` API channels."""
    calls = sshd.docker_calls()
    others = [c for c in calls if not c.startswith(ALLOWED)]
    assert not others, f"docker CLI processes per question: {others}"
    dials = [c for c in calls if c.startswith("system dial-stdio")]
    assert 1 <= len(dials) <= most_dials, calls


def test_container_facts_are_what_docker_inspect_says(lab_stack: LabStack, engine_sshd: EngineSshd,
                                                        tmp_path: Path) -> None:
    engine_sshd.reset()

    run = apply(lab_stack, engine_sshd, tmp_path, "compose-facts.yml", "--format", "json")

    assert run.returncode == 0, run.stdout + run.stderr
    truth = project_containers(lab_stack)
    assert sorted(truth) == list(SERVICES)
    for step in steps_of(run):
        service = step["name"]
        (container,) = step["data"]["containers"]
        assert reported_facts(container) == {**reported_facts(container), **expected_facts(truth[service])}, service
        assert step["data"]["running"] is True and step["data"]["started_at"] is not None
    # the image the backend's `image:` names, as the engine has it
    (backend,) = [s for s in steps_of(run) if s["name"] == "backend"]
    tag = backend["data"]["image"]
    assert backend["data"]["image_id"] == inspect(tag)[0]["Id"], backend["data"]
    assert_only_api(engine_sshd, most_dials=1)


def test_a_restart_is_proved_from_events_and_the_host_runs_no_docker_cli_per_question(
        engine_stack: LabStack, engine_sshd: EngineSshd, tmp_path: Path) -> None:
    before = project_containers(engine_stack)["celery_beat"]
    engine_sshd.reset()

    run = apply(engine_stack, engine_sshd, tmp_path, "compose-restart.yml", "--format", "json",
                service="celery_beat", wait=120, settle=3)

    assert run.returncode == 0, run.stdout + run.stderr
    after = project_containers(engine_stack)["celery_beat"]
    started = when(after["State"]["StartedAt"])
    earlier = when(before["State"]["StartedAt"])
    assert after["Id"] == before["Id"] and started and earlier and started > earlier
    (step,) = steps_of(run)
    proof = step["data"]["proof"]["celery_beat"]
    assert proof["verdict"] == "running" and proof["container"] == after["Id"], proof
    actions = [e["action"] for e in proof["events"]]
    assert actions[0] == "start" and "die" not in actions, proof
    assert when(proof["events"][0]["at"]) is not None and abs(
        (when(proof["events"][0]["at"]) - started).total_seconds()) < 0.1, (proof, started)  # type: ignore[operator]
    # no healthcheck: proved once it had been up `settle` seconds, by the host's clock
    decided = when(proof["decided_at"])
    assert decided is not None and 3.0 <= (decided - started).total_seconds() < 4.0, proof
    assert f"celery_beat: {engine_stack.name}-celery_beat-1 running, started" in step["message"]
    assert_only_api(engine_sshd, most_dials=2)


def test_two_restarts_in_one_run_share_the_hosts_event_stream_and_each_sees_only_its_own_events(
        engine_stack: LabStack, engine_sshd: EngineSshd, tmp_path: Path) -> None:
    engine_sshd.reset()

    run = apply(engine_stack, engine_sshd, tmp_path, "compose-restart-twice.yml", "--format", "json",
                service="celery_beat", wait=120, settle=2)

    assert run.returncode == 0, run.stdout + run.stderr
    after = project_containers(engine_stack)["celery_beat"]
    first, second = (step["data"]["proof"]["celery_beat"] for step in steps_of(run))
    assert first["verdict"] == second["verdict"] == "running", (first, second)
    first_decided, second_start = when(first["decided_at"]), when(second["events"][0]["at"])
    started = when(after["State"]["StartedAt"])
    assert second["events"][0]["action"] == "start" and first_decided and second_start and started, second
    assert second_start > first_decided, "the second wait saw an event of the first restart"
    assert abs((second_start - started).total_seconds()) < 0.1, (second, after)
    assert_only_api(engine_sshd, most_dials=2)  # the questions' channel and one event stream, for both steps


def test_a_container_that_dies_after_start_is_reported_from_its_die_event(
        engine_stack: LabStack, engine_sshd: EngineSshd, tmp_path: Path) -> None:
    # beat's command dies two seconds after it starts: `up -d` has returned and the container ran by then
    (engine_stack.dir / "broken-beat.yml").write_text(
        "services:\n  celery_beat:\n"
        "    command: [sh, -c, 'echo \"beat: no broker configured\" >&2; sleep 2; exit 3']\n")
    try:
        engine_sshd.reset()
        failed = apply(engine_stack, engine_sshd, tmp_path, "compose-recreate.yml", "--format", "json",
                       service="celery_beat", wait=120, compose_files=["docker-compose.yml", "broken-beat.yml"])

        assert failed.returncode == 1, failed.stdout + failed.stderr
        dead = project_containers(engine_stack)["celery_beat"]
        assert dead["State"]["Status"] == "exited" and dead["State"]["ExitCode"] == 3
        (step,) = steps_of(failed)
        assert f"celery_beat did not stay up: {engine_stack.name}-celery_beat-1 exited, exit code 3" in step["message"]
        assert "beat: no broker configured" in step["message"].split("last log lines of celery_beat:")[1]
        proof = step["data"]["proof"]["celery_beat"]
        assert proof["verdict"] == "died" and proof["container"] == dead["Id"], proof
        die = [e for e in proof["events"] if e["action"] == "die"]
        assert len(die) == 1 and die[0]["exit_code"] == 3, proof
        died, finished = when(die[0]["at"]), when(dead["State"]["FinishedAt"])
        assert died and finished and abs((died - finished).total_seconds()) < 0.1, (die, finished)
        seen = when(proof["decided_at"])
        assert seen is not None and -CLOCK <= (seen - died).total_seconds() < 1.0, proof  # the event, not a poll
        assert "died" in step["message"], step["message"]

        # the dead container's facts, as remediate reads them, are docker's
        facts = apply(engine_stack, engine_sshd, tmp_path, "compose-service.yml", "--format", "json",
                      service="celery_beat", compose_files=["docker-compose.yml", "broken-beat.yml"])
        assert facts.returncode == 0, facts.stdout + facts.stderr
        (container,) = steps_of(facts)[0]["data"]["containers"]
        assert reported_facts(container) == {**reported_facts(container), **expected_facts(dead)}
        assert steps_of(facts)[0]["data"]["running"] is False
        assert_only_api(engine_sshd, most_dials=3)
    finally:
        (engine_stack.dir / "broken-beat.yml").unlink()
        restored = engine_stack.compose("up", "-d", "--no-deps", "--force-recreate", "celery_beat")
        assert restored.returncode == 0, restored.stderr


def test_healthy_and_unhealthy_transitions_come_from_health_status_events(
        engine_stack: LabStack, engine_sshd: EngineSshd, tmp_path: Path) -> None:
    healthy = apply(engine_stack, engine_sshd, tmp_path, "compose-restart.yml", "--format", "json",
                    service="backend", wait=180, settle=5)

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    backend = project_containers(engine_stack)["backend"]
    assert backend["State"]["Health"]["Status"] == "healthy"
    proof = steps_of(healthy)[0]["data"]["proof"]["backend"]
    assert proof["verdict"] == "healthy", proof
    marks = [e for e in proof["events"] if e["action"] == "health_status: healthy"]
    assert len(marks) == 1, proof
    healthy_at, started = when(marks[0]["at"]), when(backend["State"]["StartedAt"])
    assert healthy_at and started and healthy_at > started
    passing = [when(p["End"]) for p in backend["State"]["Health"]["Log"] if p["ExitCode"] == 0]
    first = min((t for t in passing if t and t > started), default=None)
    if first is not None:  # still in the last five probes docker keeps
        assert abs((healthy_at - first).total_seconds()) < 0.5, (marks, backend["State"]["Health"]["Log"])
    decided = when(proof["decided_at"])
    assert decided is not None and -CLOCK <= (decided - healthy_at).total_seconds() < 1.0, proof

    # a healthcheck that fails: unhealthy after two failing probes a second apart
    (engine_stack.dir / "sick-backend.yml").write_text(textwrap.dedent("""\
        services:
          backend:
            healthcheck:
              test: ["CMD", "false"]
              interval: 1s
              retries: 2
              start_period: 1s
        """))
    try:
        sick = apply(engine_stack, engine_sshd, tmp_path, "compose-recreate.yml", "--format", "json",
                     service="backend", wait=120, compose_files=["docker-compose.yml", "sick-backend.yml"])

        assert sick.returncode == 1, sick.stdout + sick.stderr
        backend = project_containers(engine_stack)["backend"]
        assert backend["State"]["Health"]["Status"] == "unhealthy"
        (step,) = steps_of(sick)
        assert f"backend did not stay up: {engine_stack.name}-backend-1 running, unhealthy" in step["message"]
        proof = step["data"]["proof"]["backend"]
        assert proof["verdict"] == "unhealthy" and proof["container"] == backend["Id"], proof
        (mark,) = [e for e in proof["events"] if e["action"] == "health_status: unhealthy"]
        unhealthy_at = when(mark["at"])
        decided = when(proof["decided_at"])
        assert unhealthy_at and decided and -CLOCK <= (decided - unhealthy_at).total_seconds() < 1.0, proof
    finally:
        (engine_stack.dir / "sick-backend.yml").unlink()
        restored = engine_stack.compose("up", "-d", "--no-deps", "--force-recreate", "--wait", "backend")
        assert restored.returncode == 0, restored.stderr


def test_logs_since_start_come_from_the_engine(lab_stack: LabStack, engine_sshd: EngineSshd, tmp_path: Path) -> None:
    engine_sshd.reset()

    run = apply(lab_stack, engine_sshd, tmp_path, "compose-logs.yml", service="celery_beat",
                expect=r"scheduler -> celery\.beat\.\w+Scheduler", log_timeout=60)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "matched: . scheduler -> celery.beat.PersistentScheduler" in run.stdout
    assert_only_api(engine_sshd, most_dials=2)


def test_an_unreachable_daemon_is_a_clear_error(lab_stack: LabStack, dead_daemon_sshd: EngineSshd,
                                                 tmp_path: Path) -> None:
    run = apply(lab_stack, dead_daemon_sshd, tmp_path, "compose-service.yml", service="celery_beat")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "cannot reach the Docker daemon" in run.stdout, run.stdout
    assert "docker system dial-stdio" in run.stdout and "no-daemon.sock: connect: no such file or directory" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_a_user_without_access_to_the_daemon_is_told_why(outsider: Outsider, engine_sshd: EngineSshd,
                                                          tmp_path: Path) -> None:
    inv = inventory(tmp_path / "inv.yml", engine_sshd.sshd, outsider.name, compose_dir=str(outsider.project))

    run = remediate("apply", "lab", "-i", str(inv), "-p", str(PLAYBOOKS / "compose-service.yml"), "-e", "service=app")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "cannot reach the Docker daemon" in run.stdout, run.stdout
    assert "permission denied" in run.stdout and outsider.name in run.stdout and "group docker" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_help_and_runs_without_compose_steps_never_import_docker(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "f.txt").write_text("first\n")
    playbook = tmp_path / "plain.yml"
    playbook.write_text("- name: plain\n  hosts: all\n  steps:\n    - name: a line\n"
                        f"      lineinfile: {{path: {json.dumps(str(work / 'f.txt'))}, line: hello}}\n")
    inv = tmp_path / "inv.yml"
    inv.write_text("hosts:\n  here:\n    connection: local\n"
                   f"    vars: {{backup_dir: {json.dumps(str(tmp_path / 'backups'))}}}\n")
    probe = ("import runpy, sys\nsys.argv = ['remediate', *sys.argv[1:]]\ncode = 0\ntry:\n"
             "    runpy.run_module('remediate', run_name='__main__')\nexcept SystemExit as exc:\n"
             "    code = exc.code\nprint('DOCKER-IMPORTED' if 'docker' in sys.modules else 'NO-DOCKER')\n"
             "sys.exit(code)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["--help"], ["apply", "here", "-i", str(inv), "-p", str(playbook)]):
        run = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
        assert run.stdout.strip().endswith("NO-DOCKER"), (args, run.stdout, run.stderr)
        assert run.returncode == 0, (args, run.stdout, run.stderr)
    assert (work / "f.txt").read_text() == "first\nhello\n"
