"""Compose steps against a fake transport: v1/v2 detection, the argv each runs, and the proof after an action."""
from __future__ import annotations

import json
from collections.abc import Iterator
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
from tests.fakes import FakeTransport, ok

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
                health: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "Running": status in ("running", "restarting"),
                             "StartedAt": started.isoformat().replace("+00:00", "Z"), "ExitCode": exit_code}
    if health:
        state["Health"] = {"Status": health}
    return {"Id": cid, "Name": f"/edms-celery_beat-{cid}", "Image": "sha256:img", "State": state,
            "RestartCount": restarts, "Config": {"Labels": {"com.docker.compose.service": "celery_beat"}}}


class Host:
    """A fake host: a clock, and the containers `docker inspect` shows at each poll."""

    def __init__(self, polls: list[list[dict[str, Any]]]) -> None:
        self.now = T0
        self.polls: Iterator[list[dict[str, Any]]] = iter(polls)
        self.last: list[dict[str, Any]] = []
        self.transport = FakeTransport().on(("sh", "-c"), self.inspect).on(
            ("docker", "compose", "--project-directory", "/srv/edms", "restart"), ok()).on(
            ("docker", "compose", "--project-directory", "/srv/edms", "logs"), ok(b"Traceback ...\nImportError: boom\n"))

    def inspect(self, argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        self.last = next(self.polls, self.last)
        clock = self.now.isoformat().replace("+00:00", "Z")
        return CommandResult(argv, 0, f"{clock}\n{json.dumps(self.last)}".encode(), b"")

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def ctx(self) -> ExecContext:
        return ExecContext("h", self.transport, "run", sleep=self.sleep, clock=lambda: self.now.timestamp())


def restart(wait: float = 30, settle: float = 3) -> ServiceAction:
    return ServiceAction(cf.Compose(("docker", "compose")), cf.Project("/srv/edms"), "edms", ("celery_beat",),
                         "restart", wait=wait, settle=settle)


def test_running_for_settle_seconds_proves_the_restart() -> None:
    old = inspect_doc("a", "running", T0 - timedelta(hours=1))
    new = [inspect_doc("a", "running", T0 + timedelta(seconds=1))]
    host = Host([[old], new, new, new, new, new])

    outcome = restart().execute(host.ctx())

    assert not outcome.failed and "started 2026-11-25T02:00:01" in outcome.message
    assert host.now - T0 >= timedelta(seconds=4), "returned before the container had stayed up for `settle`"


def test_a_container_that_exits_right_after_start_fails_with_its_state_and_log() -> None:
    old = inspect_doc("a", "running", T0 - timedelta(hours=1))
    host = Host([[old], [inspect_doc("a", "running", T0 + timedelta(seconds=1))],
                 [inspect_doc("a", "exited", T0 + timedelta(seconds=1), exit_code=1)]])

    with pytest.raises(StepError) as err:
        restart().execute(host.ctx())

    message = str(err.value)
    assert "celery_beat did not stay up: edms-celery_beat-a exited, exit code 1" in message
    assert "last log lines of celery_beat:\nTraceback ...\nImportError: boom" in message


def test_restarts_by_the_restart_policy_count_as_a_crash() -> None:
    old = inspect_doc("a", "running", T0 - timedelta(hours=1), restarts=2)
    host = Host([[old], [inspect_doc("a", "running", T0 + timedelta(seconds=2), restarts=3)]])

    with pytest.raises(StepError, match="did not stay up"):
        restart().execute(host.ctx())


def test_no_new_container_within_the_wait_reports_what_it_last_saw() -> None:
    old = [inspect_doc("a", "running", T0 - timedelta(hours=1))]
    host = Host([old])

    with pytest.raises(StepError, match=r"no new container up within 5 s; last seen: edms-celery_beat-a running"):
        restart(wait=5).execute(host.ctx())


def test_a_healthcheck_must_report_healthy() -> None:
    old = inspect_doc("a", "running", T0 - timedelta(hours=1), health="healthy")
    starting = inspect_doc("a", "running", T0 + timedelta(seconds=1), health="starting")
    host = Host([[old], [starting], [starting], [inspect_doc("a", "running", T0 + timedelta(seconds=1), health="unhealthy")]])

    with pytest.raises(StepError, match="did not stay up: edms-celery_beat-a running, unhealthy"):
        restart(settle=0).execute(host.ctx())


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
