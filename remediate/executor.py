"""Execute plans on one host: facts in, actions out; check mode plans, shows and stops."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from . import templating
from .actions import ExecContext, Outcome, WriteFile
from .errors import StepError, Unreachable
from .facts import FileFact
from .inventory import Host
from .playbook import Play, StepSpec
from .results import CommandOutput, HostResult, Status, StepResult, host_status
from .steps import REGISTRY
from .steps.base import PlanContext, Probe
from .steps.files import FileProbe
from .transport.base import Transport


@dataclass(frozen=True)
class RunOptions:
    """Options of one run, shared by every host."""

    check: bool = False
    diff: bool = False
    forks: int = 10
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    verify_timeout: float = 900.0
    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    accept_new_host_keys: bool = False


class Events(Protocol):
    """Where live progress goes (the CLI prints it; tests collect it)."""

    def step_done(self, host: str, result: StepResult) -> None:
        """A step finished on a host."""

    def progress(self, host: str, step: str, message: str) -> None:
        """A long step says what it is waiting for."""


class NoEvents:
    """Events that go nowhere."""

    def step_done(self, host: str, result: StepResult) -> None:
        """Ignore."""

    def progress(self, host: str, step: str, message: str) -> None:
        """Ignore."""


class HostRunner:
    """Runs every play for one host over that host's one transport."""

    def __init__(
        self,
        host: Host,
        plays: tuple[Play, ...],
        transport: Transport,
        options: RunOptions,
        run_id: str,
        template_path: tuple[str, ...] = (),
        events: Events | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.plays = plays
        self.transport = transport
        self.options = options
        self.run_id = run_id
        self.template_path = template_path
        self.events = events or NoEvents()
        self.sleep = sleep
        self.clock = clock
        # check mode: what planned writes would have made of each file, so later steps plan on it
        self.overlay: dict[str, FileFact] = {}
        # registered results outlive their play, as in Ansible
        self.registered: dict[str, Any] = {}

    def run(self) -> HostResult:
        """All plays in order; a failed step stops this host, never the others."""
        results: list[StepResult] = []
        try:
            connect = getattr(self.transport, "connect", None)
            if connect is not None:
                connect()
            for play in self.plays:
                if not self._run_play(play, results):
                    break
        except Unreachable as exc:
            return HostResult(self.host.name, Status.UNREACHABLE, tuple(results), str(exc), self._notices())
        failed = next((r for r in results if r.status == Status.FAILED and not r.data.get("ignored")), None)
        status = Status.FAILED if failed else host_status(tuple(r for r in results if not r.data.get("ignored")))
        message = f"{failed.name}: {failed.message}" if failed else ""
        return HostResult(self.host.name, status, tuple(results), message, self._notices())

    def _notices(self) -> tuple[str, ...]:
        return tuple(getattr(self.transport, "notices", ()))

    def base_vars(self, play: Play) -> dict[str, Any]:
        """Variables by precedence: play defaults < inventory < play vars < -e extra vars."""
        return {
            **play.defaults,
            **self.host.vars,
            **play.vars,
            **self.registered,
            **self.options.extra_vars,
            "inventory_hostname": self.host.name,
            "run_id": self.run_id,
        }

    def _run_play(self, play: Play, results: list[StepResult]) -> bool:
        variables = self.base_vars(play)
        notified: dict[str, list[str]] = {}
        for spec in play.steps:
            if not self._selected(spec, play):
                continue
            result = self.run_step(spec, variables)
            results.append(result)
            self.events.step_done(self.host.name, result)
            if spec.register:
                variables[spec.register] = self.registered[spec.register] = result.as_vars()
            if result.status == Status.FAILED and not spec.ignore_errors:
                return False
            if result.changed:
                for name in spec.notify:
                    notified.setdefault(name, []).extend(result.changed_paths)
        for handler in play.handlers:
            hits = [n for n in (handler.name, *handler.listen) if n in notified]
            if not hits:
                continue
            paths = tuple(dict.fromkeys(p for n in hits for p in notified[n]))
            result = replace(self.run_step(handler, variables, paths), handler=True)
            results.append(result)
            self.events.step_done(self.host.name, result)
            if handler.register:
                variables[handler.register] = self.registered[handler.register] = result.as_vars()
            if result.status == Status.FAILED and not handler.ignore_errors:
                return False
        return True

    def _selected(self, spec: StepSpec, play: Play) -> bool:
        tags = set(spec.tags) | set(play.tags)
        if self.options.tags and not tags & set(self.options.tags):
            return False
        return not (self.options.skip_tags and tags & set(self.options.skip_tags))

    def run_step(self, spec: StepSpec, variables: Mapping[str, Any], notified_paths: tuple[str, ...] = ()) -> StepResult:
        """One step, or one per item of its `loop:`, folded into one result."""
        if spec.loop is None:
            return self._run_one(spec, variables, notified_paths)
        base = StepResult(spec.name, spec.kind, Status.OK, spec.where)
        try:
            items = templating.render_value(spec.loop, variables, spec.where, f"step {spec.name!r}: loop")
        except StepError as exc:
            return replace(base, status=Status.FAILED, message=str(exc))
        if not isinstance(items, list):
            return replace(base, status=Status.FAILED, message=f"loop: expected a list, got {type(items).__name__}")
        if not items:
            return replace(base, status=Status.SKIPPED, message="loop: no items")
        results = []
        for item in items:
            one = self._run_one(spec, {**variables, "item": item}, notified_paths)
            results.append(one)
            if one.status == Status.FAILED:
                break
        status = host_status(tuple(results))
        if status == Status.OK and all(r.status == Status.SKIPPED for r in results):
            status = Status.SKIPPED
        return StepResult(
            spec.name, spec.kind, status, spec.where,
            "".join(r.diff for r in results), tuple(a for r in results for a in r.actions),
            "; ".join(r.message for r in results if r.message), results[-1].output,
            tuple(p for r in results for p in r.changed_paths),
            data={"results": [r.as_vars() for r in results]},
        )

    def _run_one(self, spec: StepSpec, variables: Mapping[str, Any], notified_paths: tuple[str, ...]) -> StepResult:
        """One step: `when`, then attempts until `until` holds (Ansible's retries + 1 attempts)."""
        base = StepResult(spec.name, spec.kind, Status.OK, spec.where)
        if spec.verify and self.options.check:
            # a verification proves the result of changes that check mode does not make
            return replace(base, status=Status.SKIPPED, message="verification: not run in check mode")
        try:
            if spec.when is not None:
                if not templating.evaluate(spec.when, variables, spec.where, f"step {spec.name!r}: when"):
                    return replace(base, status=Status.SKIPPED, message="condition is false")
            attempts = spec.retries + 1 if spec.until else 1
            result = base
            for attempt in range(1, attempts + 1):
                result = self._attempt(spec, variables, notified_paths)
                if spec.until is None or result.status in (Status.WOULD_CHANGE, Status.SKIPPED):
                    break
                scope = {**variables, "result": result.as_vars()}
                if spec.register:
                    scope[spec.register] = scope["result"]
                if templating.evaluate(spec.until, scope, spec.where, f"step {spec.name!r}: until"):
                    result = replace(result, status=Status.CHANGED if result.changed else Status.OK, message="")
                    break
                if attempt == attempts:
                    seen = _last_seen(result)
                    result = replace(
                        result, status=Status.FAILED,
                        message=f"until condition still false after {attempts} attempts{seen}",
                    )
                    break
                self.events.progress(self.host.name, spec.name, f"attempt {attempt}/{attempts}: not yet, retrying in {spec.delay:g} s")
                self.sleep(spec.delay)
        except StepError as exc:
            return replace(base, status=Status.FAILED, message=str(exc))
        if spec.verify and result.status == Status.CHANGED:
            result = replace(result, status=Status.OK)
        if result.status == Status.FAILED and spec.ignore_errors:
            result = replace(result, data={**result.data, "ignored": True})
        return result

    def _attempt(self, spec: StepSpec, variables: Mapping[str, Any], notified_paths: tuple[str, ...]) -> StepResult:
        what = f"step {spec.name!r}"
        cls = REGISTRY[spec.kind]
        args = {**cls.var_defaults(variables), **templating.render_value(dict(spec.args), variables, spec.where, what)}
        step = cls.build(args, spec.where, what)
        ctx = PlanContext(self.host.name, self.run_id, variables, notified_paths, self.template_path)
        facts = self._gather(step.probes())
        actions = step.plan(facts, ctx)
        base = StepResult(spec.name, spec.kind, Status.OK, spec.where)
        if not actions:
            return base
        exec_ctx = ExecContext(
            self.host.name, self.transport, self.run_id, self.sleep, self.clock,
            lambda message: self.events.progress(self.host.name, spec.name, message),
            self.options.verify_timeout,
        )
        described: list[str] = []
        outcomes: list[Outcome] = []
        would_change = changed = failed = pending = skipped_only = False
        for action in actions:
            if self.options.check and not action.runs_in_check:
                described.append(("would " if action.is_change else "would check: ") + action.describe())
                would_change |= action.is_change
                if isinstance(action, WriteFile):
                    self.overlay[action.path] = replace(action.before, exists=True, data=action.content)
                continue
            described.append(action.describe())
            outcome = action.execute(exec_ctx)
            outcomes.append(outcome)
            changed |= action.is_change
            if outcome.failed:
                failed = True
                break
            pending |= outcome.pending
        skipped_only = self.options.check and not outcomes and not would_change
        diff = "".join(a.diff(self.host.name) for a in actions)
        output = next((o.output for o in reversed(outcomes) if o.output is not None), None)
        data: dict[str, Any] = {}
        for outcome in outcomes:
            data.update(outcome.data)
        messages = [o.message for o in outcomes if o.message]
        status = (
            Status.FAILED if failed else Status.PENDING if pending else Status.CHANGED if changed
            else Status.WOULD_CHANGE if would_change else Status.SKIPPED if skipped_only else Status.OK
        )
        result = StepResult(
            spec.name, spec.kind, status, spec.where, diff, tuple(described),
            "; ".join(messages) if messages else ("not run in check mode" if skipped_only else ""),
            output, tuple(p for a in actions for p in a.paths()), data=data,
        )
        if outcomes:
            result = self._judge(spec, result, variables)
        if failed and result.status == Status.FAILED and output is not None and spec.until is None:
            result = replace(result, message=_command_failure(output))
        return result

    def _judge(self, spec: StepSpec, result: StepResult, variables: Mapping[str, Any]) -> StepResult:
        """Apply changed_when / failed_when to an executed step."""
        scope = {**variables, "result": result.as_vars()}
        if spec.register:
            scope[spec.register] = scope["result"]
        if spec.failed_when is not None:
            bad = bool(templating.evaluate(spec.failed_when, scope, spec.where, f"step {spec.name!r}: failed_when"))
            if bad:
                result = replace(result, status=Status.FAILED, message=f"failed_when is true{_last_seen(result)}")
            elif result.status == Status.FAILED:
                result = replace(result, status=Status.CHANGED, message="")
        if spec.changed_when is not None and result.status in (Status.CHANGED, Status.OK):
            changed = bool(templating.evaluate(spec.changed_when, scope, spec.where, f"step {spec.name!r}: changed_when"))
            result = replace(result, status=Status.CHANGED if changed else Status.OK)
        return result

    def _gather(self, probes: tuple[Probe, ...]) -> dict[Probe, Any]:
        facts: dict[Probe, Any] = {}
        for probe in probes:
            if isinstance(probe, FileProbe) and probe.path in self.overlay:
                facts[probe] = self.overlay[probe.path]
            else:
                facts[probe] = probe.gather(self.transport)
        return facts


def _last_seen(result: StepResult) -> str:
    out = result.output
    if out is None:
        return f": {result.message}" if result.message else ""
    from .errors import tail_lines

    tail = tail_lines(out.stderr or out.stdout, 5)
    return f"; last exit {out.rc}" + (f", output:\n{tail}" if tail else "")


def _command_failure(output: CommandOutput) -> str:
    from .errors import tail_lines
    import shlex

    tail = tail_lines(output.stderr or output.stdout, 15)
    return f"command failed (exit {output.rc}): {shlex.join(output.argv)}" + (f"\n{tail}" if tail else "")
