"""Compose steps: restart, recreate, rebuild, reload (decided from the model: `decide_reload`), exec, logs, the
model and containers of a service, Django shell queries."""
from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from ..actions.base import Action
from ..actions.commands import QueryAction, Report, RunCommand
from ..actions.compose import ServiceAction, LogsAction
from ..core.errors import StepError
from ..facts import compose as cf
from ..facts.base import Facts, Probe
from ..facts.compose import ComposeFacts, ComposeProbe, ContainersProbe, ServiceContainers
from .base import PlanContext, Step


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
        decisions = [decide_reload(f.model, s, ctx.notified_paths) for s in _services(self.service)]
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
    decided: bool = False  # its `when:`/`loop:` decided it must run: check mode shows it as would_change, not run

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        action = exec_action(f.compose, self.project(), self.service, self.argv, self.env, self.stdin,
                             self.user, self.read_only, self.timeout)
        return (replace(action, decided=self.decided and not self.read_only),)


def exec_action(
    compose: cf.Compose, project: cf.Project, service: str, argv: tuple[str, ...], env: Mapping[str, str],
    stdin: str | None, user: str | None = None, read_only: bool = True, timeout: float | None = 300.0,
) -> RunCommand:
    """`compose exec -T` with env names on the command line and their values in the docker CLI's environment."""
    return RunCommand(compose.exec_argv(project, service, argv, tuple(env), user), dict(env), stdin, None, read_only,
                      timeout)


@dataclass(frozen=True)
class ComposeLogs(ComposeStep):
    """Verify a service's log since its current container started matches a regex (polled until `timeout`);
    `since` (an ISO time, e.g. a query's `now` registered before a change) looks only at lines after it.

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
    since: str = ""

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        try:
            re.compile(self.expect)
        except re.error as exc:
            raise StepError(f"expect: invalid regex {self.expect!r}: {exc}") from None
        after = None
        if self.since:
            try:
                after = datetime.fromisoformat(self.since)
            except ValueError:
                raise StepError(f"since: not an ISO time: {self.since!r}") from None
            if after.tzinfo is None:
                after = after.replace(tzinfo=timezone.utc)
        return (LogsAction(f.model.name, self.service, self.expect, self.timeout, self.interval, after),)


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
        found: ServiceContainers = facts[ContainersProbe(self.project(), self.service)]
        state = found.state
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
            "image_id": found.image_id,
            "containers": [c.as_data() for c in state.containers],
            "started_at": latest.isoformat() if latest else None,
            "restart": svc.restart, "replicas": svc.replicas,
            "celery": _celery_view(svc),
        }
        return (Report(f"compose model and containers of {self.service}", info),)


def _celery_view(svc: cf.Service) -> dict[str, Any] | None:
    """A service's celery command line as celery reads it: its subcommand, whether it runs beat, -Q, --pidfile
    and what the pidfile lives on (`tmpfs`, `volume`, `bind`, or `layer`: the container's own)."""
    from ..celery import commands

    command = commands.parse(svc.command)
    if command is None:
        return None
    queues, pidfile = command.get("-Q", "--queues"), command.get("--pidfile")
    path = pidfile.value if pidfile is not None and pidfile.value else None
    mount = cf.mount_of(svc.mounts, path) if path else None
    return {"subcommand": command.subcommand, "runs_beat": command.runs_beat,
            "queues": queues.value.split(",") if queues is not None and queues.value else None,
            "pidfile": path, "pidfile_on": (mount.type if mount else "layer") if path else None}


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


@dataclass(frozen=True)
class ReloadDecision:
    """Restart or rebuild a service, and why."""

    service: str
    action: str  # "restart" | "rebuild"
    reason: str
    builder: str | None = None


def decide_reload(model: cf.Model, service_name: str, changed: Sequence[str]) -> ReloadDecision:
    """A changed file reaching the container through a bind mount -> restart; inside a build context, not mounted -> rebuild."""
    service = model.service(service_name)

    def rel(path: str) -> str:
        return posixpath.relpath(path, model.dir) if path.startswith(model.dir.rstrip("/") + "/") else path

    if not changed:
        return ReloadDecision(service_name, "restart", "no changed files were reported; a restart reloads the code")
    mounted: list[str] = []
    rebuild: list[str] = []
    neither: list[str] = []
    builder = None
    for path in changed:
        if any(m.type == "bind" and _under(path, m.source) for m in service.mounts):
            mounted.append(path)
            continue
        try:
            candidate = model.builder(service_name)
        except StepError:
            candidate = None
        if candidate and candidate.build_context and _under(path, candidate.build_context):
            builder = candidate
            rebuild.append(path)
        else:
            neither.append(path)
    if rebuild and builder is not None and builder.build_context:
        context = "./" + rel(builder.build_context) if builder.build_context.startswith(model.dir) else builder.build_context
        via = f"; image built by {builder.name}" if builder.name != service_name else ""
        return ReloadDecision(
            service_name, "rebuild",
            f"{', '.join(rel(p) for p in rebuild)} {'is' if len(rebuild) == 1 else 'are'} in build context {context}, not mounted{via}",
            builder.name,
        )
    if mounted:
        target = next(m.target for m in service.mounts if m.type == "bind" and _under(mounted[0], m.source))
        return ReloadDecision(
            service_name, "restart", f"{', '.join(rel(p) for p in mounted)} {'is' if len(mounted) == 1 else 'are'} bind-mounted at {target}"
        )
    return ReloadDecision(
        service_name, "restart",
        f"{', '.join(rel(p) for p in neither)} neither mounted nor in a build context of {service_name}; restarting",
    )


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")
