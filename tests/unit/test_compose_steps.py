"""Compose steps against a fake transport: v1/v2 detection, the argv each runs, and the proof after an action."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from remediate.facts import compose as cf
from remediate.actions import ExecContext, RunCommand
from remediate.core.errors import StepError
from remediate.steps.base import PlanContext
from remediate.actions.compose import ServiceAction
from remediate.steps.compose import ComposeExec, ComposeRestart
from remediate.transport.base import CommandResult
from tests.fakes import FakeDocker, FakeTransport, ok

V1_CONFIG = b"""\
services:
  backend:
    build: {context: ./backend}
    image: edms-backend
  celery_beat:
    image: edms-backend
    command: celery -A edms beat
"""
T0 = datetime(2026, 11, 25, 2, 0, 0, tzinfo=timezone.utc)


def found(which: str) -> FakeTransport:
    """A host whose detection script reports `which` (v2, v1 or none)."""
    return FakeTransport().on(("sh", "-c"), ok(which.encode() + b"\n"))


def test_v2_is_preferred() -> None:
    assert cf.detect(found("v2")) == cf.Compose(("docker", "compose"))


def test_v1_fallback_plans_docker_compose_argv_and_reads_yaml_config() -> None:
    transport = found("v1").on(("test", "-d", "/srv/edms"), ok()).on(
        ("docker-compose", "--project-directory", "/srv/edms", "config"), ok(V1_CONFIG))
    step = ComposeRestart(service=("celery_beat",), project_dir="/srv/edms")
    (probe,) = step.probes()
    facts = {probe: probe.gather(transport)}

    (action,) = step.plan(facts, PlanContext("h", "run"))
    exec_action = ComposeExec(service="celery_beat", argv=("celery", "inspect", "ping"), env={"V": "x"},
                              project_dir="/srv/edms").plan(facts, PlanContext("h", "run"))[0]

    assert isinstance(action, ServiceAction) and isinstance(exec_action, RunCommand)
    assert action.commands() == (("docker-compose", "--project-directory", "/srv/edms", "restart", "celery_beat"),)
    # v1 has no --format: the model came from its YAML
    assert ("docker-compose", "--project-directory", "/srv/edms", "config") in transport.calls
    assert exec_action.argv == ("docker-compose", "--project-directory", "/srv/edms", "exec", "-T", "-e", "V",
                                "celery_beat", "celery", "inspect", "ping")


def test_v1_project_name_is_the_one_given_else_the_directory() -> None:
    named = found("v1").on(("test", "-d", "/srv/edms"), ok()).on(
        ("docker-compose", "--project-directory", "/srv/edms", "-p", "edms-staging", "config"), ok(V1_CONFIG))
    unnamed = found("v1").on(("test", "-d", "/srv/edms"), ok()).on(
        ("docker-compose", "--project-directory", "/srv/edms", "config"), ok(V1_CONFIG))
    v1 = cf.Compose(("docker-compose",))

    assert cf.gather_model(named, v1, cf.Project("/srv/edms", name="edms-staging")).name == "edms-staging"
    assert cf.gather_model(unnamed, v1, cf.Project("/srv/edms")).name == "edms"


def test_neither_compose_is_a_clear_error() -> None:
    with pytest.raises(StepError, match=r"fake: neither `docker compose` \(v2\) nor `docker-compose` \(v1\) is installed"):
        cf.detect(found("none"))


def inspect_doc(cid: str, status: str, started: datetime, *, restarts: int = 0, exit_code: int = 0,
                health: str | None = None, image: str = "sha256:img") -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "Running": status in ("running", "restarting"),
                             "StartedAt": started.isoformat().replace("+00:00", "Z"), "ExitCode": exit_code}
    config: dict[str, Any] = {"Labels": {"com.docker.compose.service": "celery_beat"}}
    if health:
        state["Health"] = {"Status": health}
        config["Healthcheck"] = {"Test": ["CMD", "true"]}
    return {"Id": cid, "Name": f"/edms-celery_beat-{cid}", "Image": image, "State": state,
            "RestartCount": restarts, "Config": config}


class Host:
    """A fake host: compose commands over its transport, and an Engine API whose events follow a fake clock."""

    def __init__(self, *running: dict[str, Any]) -> None:
        self.engine = FakeDocker(T0)
        for doc in running:
            self.engine.docs[doc["Id"]] = doc
        self.engine.log = {"a": "Traceback ...\nImportError: boom\n"}
        self.transport = FakeTransport(engine=self.engine).on(
            ("docker", "compose", "--project-directory", "/srv/edms", "restart"), ok()).on(
            ("docker", "compose", "--project-directory", "/srv/edms", "build"), ok()).on(
            ("docker", "compose", "--project-directory", "/srv/edms", "up"), ok())

    @property
    def now(self) -> datetime:
        return self.engine.now

    def ctx(self) -> ExecContext:
        return ExecContext("h", self.transport, "run", sleep=self.engine.sleep, clock=self.engine.clock)


def restart(wait: float = 30, settle: float = 3) -> ServiceAction:
    return ServiceAction(cf.Compose(("docker", "compose")), cf.Project("/srv/edms"), "edms", ("celery_beat",),
                         "restart", wait=wait, settle=settle)


def test_running_for_settle_seconds_proves_the_restart() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1)))
    host.engine.at(1, "start", inspect_doc("a", "running", T0 + timedelta(seconds=1)))

    outcome = restart().execute(host.ctx())

    assert not outcome.failed and "started 2026-11-25T02:00:01" in outcome.message, outcome.message
    assert host.now - T0 >= timedelta(seconds=4), "returned before the container had stayed up for `settle`"
    assert host.now - T0 < timedelta(seconds=4.01), "a poll's interval late: the host's clock decides, not a poll"
    proof = outcome.data["proof"]["celery_beat"]
    assert proof["verdict"] == "running" and proof["at"] == "2026-11-25T02:00:04+00:00", proof
    assert "still up at 02:00:04.000 with no healthcheck, 3.00 s after it started: proved" in outcome.message


def test_a_container_that_exits_right_after_start_fails_with_its_state_and_log() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1)))
    host.engine.at(1, "start", inspect_doc("a", "running", T0 + timedelta(seconds=1))).at(
        2, "die", inspect_doc("a", "exited", T0 + timedelta(seconds=1), exit_code=1), exit_code=1)

    outcome = restart(settle=5).execute(host.ctx())

    assert outcome.failed
    assert "celery_beat did not stay up: edms-celery_beat-a exited, exit code 1" in outcome.message
    assert "died at 02:00:02.000 (exit code 1), 1.00 s after it started" in outcome.message
    assert "last log lines of celery_beat:\nTraceback ...\nImportError: boom" in outcome.message
    assert host.now - T0 == timedelta(seconds=2), "decided at the die event, not at the end of `settle`"


def test_restarts_by_the_restart_policy_count_as_a_crash() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1), restarts=2))
    host.engine.at(1, "start", inspect_doc("a", "running", T0 + timedelta(seconds=1), restarts=2)).at(
        2, "die", inspect_doc("a", "restarting", T0 + timedelta(seconds=1), restarts=2), exit_code=1).at(
        2.1, "start", inspect_doc("a", "running", T0 + timedelta(seconds=2.1), restarts=3))

    outcome = restart().execute(host.ctx())

    assert outcome.failed and "did not stay up" in outcome.message, outcome.message


def test_no_new_container_within_the_wait_reports_what_it_last_saw() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1)))

    outcome = restart(wait=5).execute(host.ctx())

    assert outcome.failed
    assert "celery_beat: no new container up within 5 s; last seen: edms-celery_beat-a running" in outcome.message
    assert host.now - T0 == timedelta(seconds=5)


def test_a_healthcheck_must_report_healthy() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1), health="healthy"))
    starting = inspect_doc("a", "running", T0 + timedelta(seconds=1), health="starting")
    host.engine.at(1, "start", starting).at(
        4, "health_status: unhealthy", inspect_doc("a", "running", T0 + timedelta(seconds=1), health="unhealthy"))

    outcome = restart(settle=0).execute(host.ctx())

    assert outcome.failed and "did not stay up: edms-celery_beat-a running, unhealthy" in outcome.message
    assert "unhealthy at 02:00:04.000 (health_status), 3.00 s after it started" in outcome.message


def test_healthy_proves_at_the_health_event() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1), health="healthy"))
    host.engine.at(1, "start", inspect_doc("a", "running", T0 + timedelta(seconds=1), health="starting")).at(
        7.5, "health_status: healthy", inspect_doc("a", "running", T0 + timedelta(seconds=1), health="healthy"))

    outcome = restart(settle=3).execute(host.ctx())

    assert not outcome.failed, outcome.message
    assert host.now - T0 == timedelta(seconds=7.5), "a healthcheck waits for healthy, not for `settle`"
    assert "edms-celery_beat-a running, healthy" in outcome.message
    assert "healthy at 02:00:07.500 (health_status), 6.50 s after it started" in outcome.message


def test_a_rebuild_waits_for_a_container_of_the_new_image() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1), image="sha256:old"))
    host.engine.images["edms-backend"] = "sha256:new"
    host.engine.at(1, "start", inspect_doc("b", "running", T0 + timedelta(seconds=1), image="sha256:old")).at(
        2, "start", inspect_doc("c", "running", T0 + timedelta(seconds=2), image="sha256:new"))
    action = ServiceAction(cf.Compose(("docker", "compose")), cf.Project("/srv/edms"), "edms", ("celery_beat",),
                           "rebuild", builder="backend", image="edms-backend", wait=30, settle=3)

    outcome = action.execute(host.ctx())

    assert not outcome.failed, outcome.message
    assert outcome.data["containers"]["celery_beat"]["id"] == "c" and host.now - T0 == timedelta(seconds=5)
    assert [c[4] for c in host.transport.calls] == ["build", "up"]
    assert host.engine.subscriptions == 1


def test_a_rebuild_that_made_the_image_already_running_is_refused() -> None:
    host = Host(inspect_doc("a", "running", T0 - timedelta(hours=1), image="sha256:same"))
    host.engine.images["edms-backend"] = "sha256:same"
    action = ServiceAction(cf.Compose(("docker", "compose")), cf.Project("/srv/edms"), "edms", ("celery_beat",),
                           "rebuild", builder="backend", image="edms-backend")

    with pytest.raises(StepError, match=r"the rebuild produced the image it already ran \(sha256:same\)"):
        action.execute(host.ctx())
    assert [c[4] for c in host.transport.calls] == ["build"], "nothing recreated"


EXEC_PLAYBOOK = """\
- hosts: all
  steps:
    - {name: ask, compose_exec: {service: celery_beat, argv: [celery, inspect, ping], read_only: true}}
    - {name: act, compose_exec: {service: celery_beat, argv: [touch, /tmp/x]}}
    - {name: ask again, compose_exec: {service: celery_beat, argv: [celery, inspect, ping], read_only: true}}
"""


@pytest.mark.parametrize(("check", "reads"), [(True, 1), (False, 2)])
def test_the_compose_model_is_read_once_per_host_until_something_changes(tmp_path: Any, check: bool,
                                                                        reads: int) -> None:
    from remediate.core.options import RunOptions
    from remediate.engine.host import HostRunner
    from remediate.inputs.inventory import Host
    from remediate.api import load_playbook

    (tmp_path / "p.yml").write_text(EXEC_PLAYBOOK)
    config = ("docker-compose", "--project-directory", "/srv/edms", "config")
    transport = found("v1").on(("test", "-d", "/srv/edms"), ok()).on(config, ok(V1_CONFIG))
    transport.on(("docker-compose", "--project-directory", "/srv/edms", "exec"), ok())
    host = Host("h", "addr", vars={"compose_dir": "/srv/edms"})
    result = HostRunner(host, load_playbook(tmp_path / "p.yml"), transport, RunOptions(check=check), "run1").run()
    assert result.status.value in ("would_change", "changed"), result
    # the write-like step invalidates what was read; check mode changes nothing, so one read serves the run
    assert transport.calls.count(config) == reads
