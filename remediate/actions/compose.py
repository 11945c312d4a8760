"""Compose actions: restart, recreate or rebuild services and prove a new container runs; wait for a log line."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..core.errors import StepError
from ..celery.schedules import iso
from ..core.results import CommandOutput
from ..facts import compose as cf
from ..facts import containers as fc
from .base import Action, ExecContext, Outcome

if TYPE_CHECKING:
    from ..transport.docker import Subscription


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
        before = {s: fc.gather_containers(t, self.project_name, s) for s in self.services}
        prefix = len(self.compose.argv(self.project))
        commands = self.commands()
        for argv in commands[:-1]:  # the build: no container of the services starts yet
            ctx.progress(f"compose {shlex.join(argv[prefix:])}")
            t.run(argv, timeout=1800).check()
        new_image = fc.image_id(t, self.image) if self.mode == "rebuild" and self.image else None
        if self.mode == "rebuild" and self.image and new_image is None:
            raise StepError(f"{', '.join(self.services)}: the rebuild left no image {self.image} on {t.name}")
        for service in self.services:
            old_images = {c.image_id for c in before[service].containers}
            if new_image and new_image in old_images:
                raise StepError(f"{service}: the rebuild produced the image it already ran ({new_image[:19]}); nothing new to run")
        # subscribed before the command that starts the containers: nothing they do is missed
        with t.docker().events(fc.wait_filters(self.project_name)) as events:
            ctx.progress(f"compose {shlex.join(commands[-1][prefix:])}")
            t.run(commands[-1], timeout=1800).check()
            proofs = Wait(ctx, self, new_image).run(events)
        failed = next((p for p in proofs.values() if not p.verdict.proved), None)
        data = {
            "containers": {s: {"id": p.container.id, "started_at": p.container.started_at.isoformat()
                               if p.container.started_at else None, "image_id": p.container.image_id}
                           for s, p in proofs.items() if p.container is not None and p.verdict.proved},
            "proof": {s: p.as_data() for s, p in proofs.items()},
        }
        if failed is not None:
            return Outcome(failed=True, message=self._failure(ctx, failed), data=data)
        summary = "; ".join(f"{s}: {p.container.describe() if p.container else '?'}; {p.story()}" for s, p in proofs.items())
        return Outcome(message=summary, data=data)

    def _failure(self, ctx: ExecContext, proof: fc.Proof) -> str:
        service = proof.service
        if proof.verdict is fc.Verdict.TIMEOUT:
            seen = "; ".join(c.describe() for c in proof.last_seen) or "no container"
            message = f"{service}: no new container up within {self.wait:g} s; last seen: {seen}"
            newest = max(proof.last_seen, key=lambda c: c.started_at or datetime.min.replace(tzinfo=timezone.utc),
                         default=None)
        else:
            state = proof.container.describe() if proof.container else "gone"
            message = f"{service} did not stay up: {state}: {proof.story()}"
            newest = proof.container
        logs = fc.tail(ctx.transport, newest, 20) if newest is not None else ""
        return f"{message}\nlast log lines of {service}:\n{logs}" if logs else message


class Wait:
    """One action's wait: its services' container events, read until each is proved or failed, or the deadline."""

    def __init__(self, ctx: ExecContext, action: ServiceAction, image: str | None) -> None:
        self.ctx = ctx
        self.action = action
        self.image = image
        self.api = ctx.transport.docker()
        self.events: dict[str, list[fc.Event]] = {s: [] for s in action.services}
        self.candidates: dict[str, dict[str, fc.Candidate]] = {s: {} for s in action.services}

    def run(self, stream: Subscription) -> dict[str, fc.Proof]:
        """Read the stream until every service is proved, one fails, or `wait` seconds after the command returned."""
        ctx, api, services = self.ctx, self.api, self.action.services
        returned = ctx.clock()
        up_returned = api.host_time(returned)
        deadline = returned + self.action.wait
        proofs: dict[str, fc.Proof] = {}
        while True:
            now = api.host_time(ctx.clock())
            look_again = []
            for service in (s for s in services if s not in proofs):
                decision = fc.judge(self.events[service], self.candidates[service], self.action.settle, now)
                if decision.verdict is not None:
                    proofs[service] = self._proof(service, decision, up_returned)
                    if not decision.verdict.proved:
                        return proofs
                elif decision.look_again is not None:
                    look_again.append(api.local_time(decision.look_again))
            if len(proofs) == len(services):
                return proofs
            doc = stream.next(min([deadline, *look_again]))
            if doc is not None:
                self._see(fc.event(doc))
            elif ctx.clock() >= deadline or stream.ended:
                service = next(s for s in services if s not in proofs)
                seen = fc.gather_containers(ctx.transport, self.action.project_name, service).containers
                proofs[service] = fc.Proof(service, fc.Verdict.TIMEOUT, None, tuple(self.events[service]),
                                           up_returned, api.host_time(ctx.clock()), None, seen)
                return proofs

    def _see(self, e: fc.Event) -> None:
        if e.service not in self.events:
            return
        self.events[e.service].append(e)
        if e.action == "start" and e.container not in self.candidates[e.service]:
            c = fc.inspect(self.ctx.transport, e.container)
            if c is not None:
                self.candidates[e.service][e.container] = fc.Candidate(
                    c.id, c.started_at or e.at, c.healthcheck, self.image is None or c.image_id == self.image)

    def _proof(self, service: str, decision: fc.Decision, up_returned: datetime) -> fc.Proof:
        decided = self.api.host_time(self.ctx.clock())
        c = fc.inspect(self.ctx.transport, decision.container) if decision.container else None
        mine = [e for e in self.events[service] if e.container == decision.container]
        first = next((i for i, e in enumerate(mine) if e.action == "start"), 0)
        mine = mine[first:]  # a restart's own stop (its `die`) came before: not this run of the container
        assert decision.verdict is not None
        return fc.Proof(service, decision.verdict, c, tuple(mine), up_returned, decided, decision.at)


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
            c = fc.newest_running(fc.gather_containers(ctx.transport, self.project_name, self.service))
            if c is not None:
                text = fc.logs_since(ctx.transport, c, self.after)
                match = pattern.search(text)
                if match:
                    line = text[text.rfind("\n", 0, match.start()) + 1: text.find("\n", match.end()) % (len(text) + 1)]
                    return Outcome(CommandOutput(("engine-api", "logs", c.id), 0, text[-4000:]),
                                   message=f"matched: {line.strip()[:200]}", data={"match": match.group(0)})
            if ctx.clock() >= deadline:
                seen = "\n".join(text.strip().splitlines()[-10:]) or "(no running container)"
                return Outcome(CommandOutput(("engine-api", "logs", self.service), 1, text[-4000:]), failed=True,
                               message=f"no log line of {self.service} since it started matches /{self.expect}/ "
                                       f"within {self.timeout:g} s; last lines:\n{seen}")
            ctx.sleep(self.interval)
