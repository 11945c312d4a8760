"""Compose actions: restart, recreate or rebuild services and prove a new container runs; wait for a log line."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime

from ..core.errors import StepError
from ..celery.schedules import iso
from ..core.results import CommandOutput
from ..facts import compose as cf
from .base import Action, ExecContext, Outcome


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


@dataclass(frozen=True)
class LogsAction(Action):
    """Wait until a service's log since its current container started matches a regex."""

    is_change = False
    project_name: str
    service: str
    expect: str
    timeout: float
    interval: float
    after: datetime | None = None  # only lines after this time (when later than the container's start)

    def describe(self) -> str:
        return f"{self.service} log since {'start' if self.after is None else iso(self.after)} matches /{self.expect}/"

    def execute(self, ctx: ExecContext) -> Outcome:
        pattern = re.compile(self.expect)
        deadline = ctx.clock() + self.timeout
        text = ""
        while True:
            c = cf.newest_running(cf.gather_containers(ctx.transport, self.project_name, self.service))
            if c is not None:
                text = cf.logs_since(ctx.transport, c, self.after)
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
