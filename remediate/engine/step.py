"""One step on one host: its `loop:` items, `when`, the attempts until `until` holds, and the judgement of
`changed_when` / `failed_when`; each attempt plans on fresh facts, then acts."""
from __future__ import annotations

import shlex
import time
import traceback
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..core.audit import AuditError
from ..core.errors import InputError, StepError, Unreachable, tail_lines
from ..core.options import RunOptions
from ..core.results import CommandOutput, Status, StepResult, host_status
from ..inputs import templating
from ..inputs.inventory import Host
from ..inputs.playbook import Play, StepSpec
from ..steps import REGISTRY
from ..steps.base import PlanContext
from ..transport.base import Become
from .act import Actor
from .context import HostContext
from .known import HostFacts
from .pending import PendingReload


class StepRunner:
    """Runs steps on one host: plans each attempt from the facts it asks for, and hands the actions to the actor."""

    def __init__(self, ctx: HostContext, facts: HostFacts, actor: Actor) -> None:
        self.ctx = ctx
        self.facts = facts
        self.actor = actor

    def run(self, spec: StepSpec, play: Play, variables: Mapping[str, Any], notified_paths: tuple[str, ...] = (),
            debts: list[PendingReload] | None = None) -> StepResult:
        """One step, or one per item of its `loop:`, folded into one result, with the time it took."""
        started = time.monotonic()
        result = self._run(spec, play, variables, notified_paths, debts if debts is not None else [])
        return replace(result, duration=time.monotonic() - started)

    def _run(self, spec: StepSpec, play: Play, variables: Mapping[str, Any], notified_paths: tuple[str, ...],
             debts: list[PendingReload]) -> StepResult:
        if spec.loop is None:
            return self._one(spec, play, variables, notified_paths, debts)
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
            one = self._one(spec, play, {**variables, "item": item}, notified_paths, debts)
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

    def _one(self, spec: StepSpec, play: Play, variables: Mapping[str, Any], notified_paths: tuple[str, ...],
             debts: list[PendingReload]) -> StepResult:
        """One step: `when`, then attempts until `until` holds (Ansible's retries + 1 attempts)."""
        base = StepResult(spec.name, spec.kind, Status.OK, spec.where)
        if spec.verify and self.ctx.options.check:
            # a verification proves the result of changes that check mode does not make
            return replace(base, status=Status.SKIPPED, message="verification: not run in check mode")
        try:
            if spec.when is not None:
                if not templating.evaluate(spec.when, variables, spec.where, f"step {spec.name!r}: when"):
                    return replace(base, status=Status.SKIPPED, message="condition is false")
            result = self._attempts(spec, play, variables, notified_paths, debts)
        except (StepError, InputError) as exc:
            # found on the host's turn (a template error at run time, a rendered argument of the wrong type):
            # the step fails, the host stops, and the run ends with its recap (never exit 3 after a change)
            return replace(base, status=Status.FAILED, message=str(exc))
        except (AuditError, Unreachable):
            raise
        except Exception as exc:  # a bug: fail the step truthfully rather than lose the run's end
            try:  # the traceback, for whoever fixes it: in the trail (masked), not in the operator's output
                self.ctx.record("notice", message=f"internal error in step {spec.name!r}",
                                traceback=traceback.format_exc(limit=20))
            except AuditError:
                pass
            return replace(base, status=Status.FAILED, message=f"internal error: {type(exc).__name__}: {exc} "
                                                               "(its traceback is in the audit trail)")
        if spec.verify and result.status == Status.CHANGED:
            result = replace(result, status=Status.OK)
        if result.status == Status.FAILED and spec.ignore_errors:
            result = replace(result, ignored=True)
        return result

    def _attempts(self, spec: StepSpec, play: Play, variables: Mapping[str, Any], notified_paths: tuple[str, ...],
                  debts: list[PendingReload]) -> StepResult:
        attempts = spec.retries + 1 if spec.until else 1
        result = StepResult(spec.name, spec.kind, Status.OK, spec.where)
        for attempt in range(1, attempts + 1):
            result = self._attempt(spec, play, variables, notified_paths, debts)
            if spec.until is None or result.status in (Status.WOULD_CHANGE, Status.SKIPPED):
                return result
            if templating.evaluate(spec.until, _scope(spec, variables, result), spec.where, f"step {spec.name!r}: until"):
                return replace(result, status=Status.CHANGED if result.changed else Status.OK, message="")
            if attempt == attempts:
                return replace(result, status=Status.FAILED,
                               message=f"until condition still false after {attempts} attempts{_last_seen(result)}")
            self.ctx.progress(spec.name, f"attempt {attempt}/{attempts}: not yet, retrying in {spec.delay:g} s")
            self.ctx.sleep(spec.delay)
        return result

    def _attempt(self, spec: StepSpec, play: Play, variables: Mapping[str, Any], notified_paths: tuple[str, ...],
                 debts: list[PendingReload]) -> StepResult:
        """Render the arguments, build the step, plan on fresh facts, act, judge."""
        what = f"step {spec.name!r}"
        cls = REGISTRY[spec.kind]
        args = {**cls.var_defaults(variables), **templating.render_value(dict(spec.args), variables, spec.where, what)}
        step = cls.build(args, spec.where, what)
        plan_ctx = PlanContext(self.ctx.host.name, self.ctx.run_id, variables, notified_paths, self.ctx.template_path)
        become = become_for(spec, play, self.ctx.host, self.ctx.options, variables)
        transport = self.ctx.transport.as_user(become)
        actions = step.plan(self.facts.gather(step.probes(), transport, become), plan_ctx)
        if not actions:
            return StepResult(spec.name, spec.kind, Status.OK, spec.where)
        done = self.actor.act(spec, play, actions, debts, transport, become)
        check = self.ctx.options.check
        output = next((o.output for o in reversed(done.outcomes) if o.output is not None), None)
        data: dict[str, Any] = {}
        for outcome in done.outcomes:
            data.update(outcome.data)
        messages = [o.message for o in done.outcomes if o.message]
        result = StepResult(
            spec.name, spec.kind, done.status(check), spec.where, "".join(a.diff(self.ctx.host.name) for a in actions),
            done.described, "; ".join(messages) if messages else ("not run in check mode" if done.skipped_only(check) else ""),
            output, tuple(p for a in actions for p in a.paths()), data=data,
        )
        if done.outcomes:
            result = _judge(spec, result, variables)
        # A failed action that explains itself (a log regex never matched, a query printed no JSON) keeps
        # its explanation; a plain command failure is told by its argv, exit code and output tail.
        explained = any(o.failed and o.message for o in done.outcomes)
        if done.failed and result.status == Status.FAILED and output is not None and spec.until is None and not explained:
            result = replace(result, message=_command_failure(output))
        return result


def become_for(spec: StepSpec, play: Play, host: Host, options: RunOptions,
               variables: Mapping[str, Any]) -> Become | None:
    """Whom a step runs as: `become` of the step, else its play, else the host, else -b; `become_user` likewise
    (a template is rendered now), else root. None: the login user."""
    wanted = next((b for b in (spec.become, play.become, host.become) if b is not None), options.become)
    if not wanted:
        return None
    user = next((u for u in (spec.become_user, play.become_user, host.become_user, options.become_user)
                 if u is not None), "root")
    if templating.is_template(user):
        user = str(templating.render_value(user, variables, spec.where, f"step {spec.name!r}: become_user")).strip()
    try:
        return Become(user)
    except ValueError as exc:
        raise StepError(f"step {spec.name!r}: {exc}") from None


def _scope(spec: StepSpec, variables: Mapping[str, Any], result: StepResult) -> dict[str, Any]:
    """The variables `until`, `changed_when` and `failed_when` see: the step's result as `result` (and its register)."""
    scope = {**variables, "result": result.as_vars()}
    if spec.register:
        scope[spec.register] = scope["result"]
    return scope


def _judge(spec: StepSpec, result: StepResult, variables: Mapping[str, Any]) -> StepResult:
    """Apply changed_when / failed_when to an executed step."""
    scope = _scope(spec, variables, result)
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


def _last_seen(result: StepResult) -> str:
    out = result.output
    if out is None:
        return f": {result.message}" if result.message else ""
    tail = tail_lines(out.stderr or out.stdout, 5)
    return f"; last exit {out.rc}" + (f", output:\n{tail}" if tail else "")


def _command_failure(output: CommandOutput) -> str:
    tail = tail_lines(output.stderr or output.stdout, 15)
    return f"command failed (exit {output.rc}): {shlex.join(output.argv)}" + (f"\n{tail}" if tail else "")
