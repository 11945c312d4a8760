"""Compose steps: restart, recreate, rebuild, reload (decided from the model), exec, logs."""
from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..facts import compose as cf
from ..actions.base import Action, ExecContext, Outcome, RunCommand
from ..core.errors import StepError
from ..core.results import CommandOutput
from .base import Facts, PlanContext, Probe, Step


@dataclass(frozen=True)
class ComposeFacts:
    """The compose binary and model of one project."""

    compose: cf.Compose
    model: cf.Model


@dataclass(frozen=True)
class ComposeProbe(Probe):
    """Detect compose and read the model of a project."""

    stable = True

    project: cf.Project

    def gather(self, transport: Any) -> ComposeFacts:
        compose = cf.detect(transport)
        return ComposeFacts(compose, cf.gather_model(transport, compose, self.project))


@dataclass(frozen=True)
class ComposeStep(Step):
    """Arguments every compose step shares; the project defaults to the `compose_dir` variable."""

    project_dir: str | None = field(default=None, kw_only=True)
    files: tuple[str, ...] | None = field(default=None, kw_only=True)
    project_name: str | None = field(default=None, kw_only=True)

    @classmethod
    def var_defaults(cls, variables: Mapping[str, Any]) -> dict[str, Any]:
        return with_project_defaults({}, variables)

    def project(self, variables: Mapping[str, Any] | None = None) -> cf.Project:
        """The compose project this step works in."""
        return cf.Project(self.project_dir or "", tuple(self.files or ()), self.project_name)

    def probes(self) -> tuple[Probe, ...]:
        if not self.project_dir:
            raise StepError("no compose project: give project_dir or set the compose_dir variable")
        return (ComposeProbe(self.project()),)

    def facts_of(self, facts: Facts) -> ComposeFacts:
        """This step's compose facts."""
        result: ComposeFacts = facts[ComposeProbe(self.project())]
        return result


def with_project_defaults(args: dict[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """Fill project_dir/files/project_name from compose_dir/compose_files/compose_project variables."""
    out = dict(args)
    for arg, var in (("project_dir", "compose_dir"), ("files", "compose_files"), ("project_name", "compose_project")):
        if out.get(arg) is None and variables.get(var):
            value = variables[var]
            out[arg] = list(value) if isinstance(value, (list, tuple)) else value
    return out


@dataclass(frozen=True)
class ServiceAction(Action):
    """Restart, recreate or rebuild services, then prove each runs a new container (and new image)."""

    compose: cf.Compose
    project: cf.Project
    project_name: str
    services: tuple[str, ...]
    mode: str
    reason: str = ""
    builder: str | None = None
    image: str | None = None
    wait: float = 180.0
    # A container without a healthcheck proves itself by staying up this long: a process that crashes on
    # import is "running" for a second or two after `up -d` has already returned.
    settle: float = 5.0

    def commands(self) -> tuple[tuple[str, ...], ...]:
        """The compose commands this action runs, in order."""
        if self.mode == "restart":
            return (self.compose.argv(self.project, "restart", *self.services),)
        recreate = self.compose.argv(self.project, "up", "-d", "--no-deps", "--force-recreate", *self.services)
        if self.mode == "rebuild":
            return (self.compose.argv(self.project, "build", self.builder or self.services[0]), recreate)
        return (recreate,)

    def describe(self) -> str:
        via = f" via {self.builder}" if self.builder and self.builder not in self.services else ""
        why = f" ({self.reason})" if self.reason else ""
        cmds = "; ".join(shlex.join(c) for c in self.commands())
        return f"{', '.join(self.services)}: {self.mode}{via}{why}: {cmds}"

    def execute(self, ctx: ExecContext) -> Outcome:
        t = ctx.transport
        before = {s: cf.gather_containers(t, self.project_name, s) for s in self.services}
        new_image = None
        prefix = len(self.compose.argv(self.project))
        for argv in self.commands():
            ctx.progress(f"compose {shlex.join(argv[prefix:])}")
            t.run(argv, timeout=1800).check()
        if self.mode == "rebuild" and self.image:
            new_image = t.run(["docker", "image", "inspect", "--format", "{{.Id}}", self.image]).check().out.strip()
        proofs = {}
        for service in self.services:
            old_images = {c.image_id for c in before[service].containers}
            if new_image and new_image in old_images:
                raise StepError(f"{service}: the rebuild produced the image it already ran ({new_image[:19]}); nothing new to run")
            proofs[service] = self._prove(ctx, service, before[service], new_image)
        summary = "; ".join(f"{s}: {c.describe()}" for s, c in proofs.items())
        data = {
            "containers": {s: {"id": c.id, "started_at": c.started_at.isoformat() if c.started_at else None,
                               "image_id": c.image_id} for s, c in proofs.items()},
        }
        return Outcome(message=summary, data=data)

    def _prove(self, ctx: ExecContext, service: str, before: cf.ServiceState, image: str | None) -> cf.Container:
        """Poll until a container started after the action is up: healthy, or running for `settle` s without a healthcheck."""
        deadline = ctx.clock() + self.wait
        restarts = {c.id: c.restart_count for c in before.containers}
        while True:
            state = cf.gather_containers(ctx.transport, self.project_name, service)
            fresh = [c for c in state.containers
                     if c.started_at and c.started_at > before.now and (image is None or c.image_id == image)]
            for c in fresh:
                crashed = (not c.running or c.status in ("exited", "dead", "restarting") or c.health == "unhealthy"
                           or c.restart_count > restarts.get(c.id, 0))
                if crashed:
                    raise StepError(self._failure(ctx, service, f"{service} did not stay up: {c.describe()}"))
                up_for = (state.now - c.started_at).total_seconds() if c.started_at else 0.0
                if c.health == "healthy" or (c.health is None and up_for >= self.settle):
                    return c
            if ctx.clock() >= deadline:
                seen = "; ".join(c.describe() for c in state.containers) or "no container"
                raise StepError(self._failure(
                    ctx, service, f"{service}: no new container up within {self.wait:g} s; last seen: {seen}"))
            ctx.sleep(1.0)

    def _failure(self, ctx: ExecContext, service: str, message: str) -> str:
        logs = cf.tail_logs(ctx.transport, self.compose, self.project, service, 20)
        return f"{message}\nlast log lines of {service}:\n{logs}" if logs else message


def _services(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise StepError("no service given")
    return value


@dataclass(frozen=True)
class ComposeRestart(ComposeStep):
    """Restart services (`docker compose restart`), then prove they run again.

    ```yaml
    - name: restart beat
      compose_restart: {service: celery_beat}
    ```
    """

    kind = "compose_restart"
    mode = "restart"
    service: tuple[str, ...] = ()
    wait: float = 180.0
    settle: float = 5.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        services = _services(self.service)
        for s in services:
            f.model.service(s)
        return (ServiceAction(f.compose, self.project(), f.model.name, services, self.mode,
                              wait=self.wait, settle=self.settle),)


@dataclass(frozen=True)
class ComposeRecreate(ComposeRestart):
    """Recreate services (`up -d --no-deps --force-recreate`).

    ```yaml
    - name: recreate beat
      compose_recreate: {service: celery_beat}
    ```
    """

    kind = "compose_recreate"
    mode = "recreate"


@dataclass(frozen=True)
class ComposeRebuild(ComposeStep):
    """Build the image services run (through the service that builds it), then recreate them.

    ```yaml
    - name: rebuild beat
      compose_rebuild: {service: celery_beat}
    ```
    """

    kind = "compose_rebuild"
    service: tuple[str, ...] = ()
    wait: float = 180.0
    settle: float = 5.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        actions: list[Action] = []
        by_builder: dict[str, list[str]] = {}
        for s in _services(self.service):
            by_builder.setdefault(f.model.builder(s).name, []).append(s)
        for builder, services in by_builder.items():
            image = f.model.service(builder).image
            actions.append(ServiceAction(f.compose, self.project(), f.model.name, tuple(services), "rebuild",
                                         builder=builder, image=image, wait=self.wait, settle=self.settle))
        return tuple(actions)


@dataclass(frozen=True)
class ComposeReload(ComposeStep):
    """Restart or rebuild, decided from the compose model and the files the notifying steps changed (a handler).

    ```yaml
    handlers:
      - name: reload beat
        compose_reload: {service: celery_beat}
    ```
    """

    kind = "compose_reload"
    service: tuple[str, ...] = ()
    wait: float = 180.0
    settle: float = 5.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        decisions = [cf.decide_reload(f.model, s, ctx.notified_paths) for s in _services(self.service)]
        actions: list[Action] = []
        for d in decisions:
            if d.action == "rebuild":
                image = f.model.service(d.builder or d.service).image
                actions.append(ServiceAction(f.compose, self.project(), f.model.name, (d.service,), "rebuild",
                                             d.reason, d.builder, image, self.wait, self.settle))
            else:
                actions.append(ServiceAction(f.compose, self.project(), f.model.name, (d.service,), "restart",
                                             d.reason, wait=self.wait, settle=self.settle))
        return _merge_rebuilds(actions)


def _merge_rebuilds(actions: list[Action]) -> tuple[Action, ...]:
    """Services rebuilt through the same builder share one build."""
    merged: list[Action] = []
    for action in actions:
        if isinstance(action, ServiceAction) and action.mode == "rebuild":
            for i, prev in enumerate(merged):
                if isinstance(prev, ServiceAction) and prev.mode == "rebuild" and prev.builder == action.builder:
                    merged[i] = ServiceAction(prev.compose, prev.project, prev.project_name,
                                              prev.services + action.services, "rebuild",
                                              f"{prev.reason}; {action.reason}" if action.reason != prev.reason else prev.reason,
                                              prev.builder, prev.image, prev.wait, prev.settle)
                    break
            else:
                merged.append(action)
        else:
            merged.append(action)
    return tuple(merged)


@dataclass(frozen=True)
class ComposeExec(ComposeStep):
    """Run argv in a service's container (`exec -T`); values reach it as environment variables, never as code.

    ```yaml
    - name: registered tasks
      compose_exec:
        service: celery_worker
        argv: [celery, -A, "{{ celery_app }}", inspect, registered, --json]
        read_only: true
      register: registered
    ```
    """

    kind = "compose_exec"
    service: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    user: str | None = None
    read_only: bool = False
    timeout: float | None = 300.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        return (exec_action(f.compose, self.project(), self.service, self.argv, self.env, self.stdin,
                            self.user, self.read_only, self.timeout),)


def exec_action(
    compose: cf.Compose, project: cf.Project, service: str, argv: tuple[str, ...], env: Mapping[str, str],
    stdin: str | None, user: str | None = None, read_only: bool = True, timeout: float | None = 300.0,
) -> RunCommand:
    """`compose exec -T` with env names on the command line and their values in the docker CLI's environment."""
    opts: list[str] = ["exec", "-T"]
    for key in env:
        opts += ["-e", key]
    if user:
        opts += ["--user", user]
    full = compose.argv(project, *opts, service, *argv)
    return RunCommand(full, dict(env), stdin, None, read_only, timeout)


@dataclass(frozen=True)
class LogsAction(Action):
    """Wait until a service's log since its current container started matches a regex."""

    is_change = False
    project_name: str
    service: str
    expect: str
    timeout: float
    interval: float

    def describe(self) -> str:
        return f"{self.service} log since start matches /{self.expect}/"

    def execute(self, ctx: ExecContext) -> Outcome:
        pattern = re.compile(self.expect)
        deadline = ctx.clock() + self.timeout
        text = ""
        while True:
            state = cf.gather_containers(ctx.transport, self.project_name, self.service)
            running = [c for c in state.containers if c.running]
            if running:
                c = max(running, key=lambda c: c.started_at or state.now)
                since = c.started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if c.started_at else "0"
                result = ctx.transport.run(["docker", "logs", "--since", since, c.id])
                text = result.out + result.err
                match = pattern.search(text)
                if match:
                    line = text[text.rfind("\n", 0, match.start()) + 1: text.find("\n", match.end()) % (len(text) + 1)]
                    return Outcome(CommandOutput(("docker", "logs", c.id), 0, text[-4000:]),
                                   message=f"matched: {line.strip()[:200]}", data={"match": match.group(0)})
            if ctx.clock() >= deadline:
                seen = "\n".join(text.strip().splitlines()[-10:]) or "(no running container)"
                return Outcome(CommandOutput(("docker", "logs"), 1, text[-4000:]), failed=True,
                               message=f"no log line of {self.service} since it started matches /{self.expect}/ "
                                       f"within {self.timeout:g} s; last lines:\n{seen}")
            ctx.sleep(self.interval)


@dataclass(frozen=True)
class ComposeLogs(ComposeStep):
    """Verify a service's log since its current container started matches a regex (polled until `timeout`).

    ```yaml
    - name: beat uses the database scheduler
      compose_logs:
        service: celery_beat
        expect: "scheduler -> django_celery_beat.schedulers.DatabaseScheduler"
        timeout: 60
    ```
    """

    kind = "compose_logs"
    service: str
    expect: str
    timeout: float = 60.0
    interval: float = 2.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        try:
            re.compile(self.expect)
        except re.error as exc:
            raise StepError(f"expect: invalid regex {self.expect!r}: {exc}") from None
        return (LogsAction(f.model.name, self.service, self.expect, self.timeout, self.interval),)


@dataclass(frozen=True)
class Report(Action):
    """Hands facts already gathered to `register:` (read-only: runs in check mode too)."""

    runs_in_check = True
    is_change = False
    what: str
    facts: Mapping[str, Any]

    def describe(self) -> str:
        return f"read {self.what}"

    def execute(self, ctx: ExecContext) -> Outcome:
        return Outcome(data=dict(self.facts))


@dataclass(frozen=True)
class ComposeService(ComposeStep):
    """Read a service's compose model and containers into `register:` (environment, command, build, mounts, state).

    ```yaml
    - name: what beat runs
      compose_service: {service: celery_beat}
      register: beat
    ```
    """

    kind = "compose_service"
    service: str

    def probes(self) -> tuple[Probe, ...]:
        return (*super().probes(), ContainersProbe(self.project(), self.service))

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        svc = f.model.service(self.service)
        state: cf.ServiceState = facts[ContainersProbe(self.project(), self.service)]
        builder = None
        try:
            builder = f.model.builder(self.service).name
        except StepError:
            pass
        running = [c for c in state.containers if c.running]
        latest = max((c.started_at for c in running if c.started_at), default=None)
        info: dict[str, Any] = {
            "service": svc.name, "image": svc.image, "build_context": svc.build_context, "builder": builder,
            "environment": dict(svc.environment), "command": list(svc.command),
            "mounts": [{"type": m.type, "source": m.source, "target": m.target} for m in svc.mounts],
            "running": bool(running), "project_name": f.model.name,
            "containers": [
                {"id": c.id, "name": c.name, "status": c.status, "health": c.health, "image_id": c.image_id,
                 "started_at": c.started_at.isoformat() if c.started_at else None} for c in state.containers
            ],
            "started_at": latest.isoformat() if latest else None,
        }
        return (Report(f"compose model and containers of {self.service}", info),)


@dataclass(frozen=True)
class ContainersProbe(Probe):
    """Containers of one service and the host's clock."""

    project: cf.Project
    service: str

    def gather(self, transport: Any) -> cf.ServiceState:
        compose = cf.detect(transport)
        model = cf.gather_model(transport, compose, self.project)
        return cf.gather_containers(transport, model.name, self.service)


MARKER = "REMEDIATE_JSON:"


def query_result(stdout: str, stderr: str = "", rc: int | None = 0, what: str = "query") -> dict[str, Any]:
    """The JSON object of a Django shell script's last `REMEDIATE_JSON:` line (the one parser of that line).

    StepError when there is none or it is not a JSON object, with the exit code and the output's tail.
    """
    import json

    from ..core.errors import tail_lines

    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                doc = json.loads(line[len(MARKER):])
            except json.JSONDecodeError as exc:
                raise StepError(f"{what} printed invalid JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise StepError(f"{what} printed JSON that is not an object")
            return doc
    raise StepError(f"{what} printed no {MARKER} line (exit {rc}); output:\n{tail_lines(stdout + stderr, 10)}")


@dataclass(frozen=True)
class QueryAction(RunCommand):
    """A Django shell script fed on stdin; its line starting with REMEDIATE_JSON: is the result."""

    def describe(self) -> str:
        return f"query {self.argv[-4] if len(self.argv) >= 4 else ''}: python manage.py shell < script".strip()

    def execute(self, ctx: ExecContext) -> Outcome:
        outcome = super().execute(ctx)
        out = outcome.output
        if outcome.failed or out is None:
            return outcome
        try:
            return Outcome(out, data={"json": query_result(out.stdout, out.stderr, out.rc)})
        except StepError as exc:
            return Outcome(out, failed=True, message=str(exc))


def run_query(transport: Any, action: RunCommand, what: str = "query") -> dict[str, Any]:
    """Run a read-only Django shell query built by `exec_action` and return its JSON object (StepError if none)."""
    result = transport.run(action.argv, stdin=(action.stdin or "").encode(), env=action.env or None,
                           timeout=action.timeout)
    return query_result(result.out, result.err, result.rc, what)


@dataclass(frozen=True)
class DjangoQuery(ComposeStep):
    """Run a Django shell script from templates/ in a service; values reach it as environment variables.

    The script prints one line `REMEDIATE_JSON:{...}`; `register:` exposes it as `result.json`.

    ```yaml
    - name: effective celery settings in beat
      django_query:
        service: celery_beat
        template: celery_state.py.j2
        env: {REMEDIATE_CELERY_APP: "{{ celery_app }}"}
      register: state
    ```
    """

    kind = "django_query"
    service: str
    template: str
    env: Mapping[str, str] = field(default_factory=dict)
    manage: str = "manage.py"
    read_only: bool = True
    timeout: float | None = 300.0

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        from ..inputs import templating

        f = self.facts_of(facts)
        f.model.service(self.service)
        script = templating.render_file(self.template, ctx.template_path, ctx.vars)
        base = exec_action(f.compose, self.project(), self.service, ("python", self.manage, "shell"),
                           {k: str(v) for k, v in self.env.items()}, script, None, self.read_only, self.timeout)
        return (QueryAction(base.argv, base.env, base.stdin, base.cwd, base.read_only, base.timeout),)
