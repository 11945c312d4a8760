"""One play on one host: its steps in order (as tags select them), then the handlers their changes notified, and
the reloads an earlier run still owes for the play. Compose reloads are held for the whole run and merged
(engine/reloads.py): they run once, before the next verification or when the host's plays end."""
from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.results import Status, StepResult
from ..core.errors import Location
from ..inputs import patterns, templating
from ..inputs.playbook import Play, StepSpec
from .context import HostContext, playbook_key
from .control import Stop
from .pending import Owed, PendingReload
from .reloads import HeldReload, MergedReload, merge, mergeable
from .step import StepRunner

# Step kinds that run only after the held reloads: a rollback puts rows back once the files restored before
# them are reloaded (beat must not see a row it dies on before it runs its old scheduler again).
AFTER_RELOADS = ("restore_rows",)


@dataclass
class HostLog:
    """What a host's run has to report so far: its step results, notices, and where an interrupt stopped it."""

    results: list[StepResult] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    interrupted_at: str = ""
    verified_at: float | None = None  # when the last verification that ran ended (the host's clock)


@dataclass(frozen=True)
class Played:
    """How a play ended: whether the host goes on, and whether a verification failed that asks for a rollback."""

    go_on: bool
    roll_back: bool = False


class PlayRunner:
    """Runs plays for one host; registered results outlive their play, as in Ansible."""

    def __init__(self, ctx: HostContext, steps: StepRunner, owed: Owed, stop: Stop, log: HostLog) -> None:
        self.ctx = ctx
        self.held: list[HeldReload] = []  # compose reloads notified so far, not run yet (reloads.py)
        self.steps = steps
        self.owed = owed
        self.stop = stop
        self.log = log
        self.registered: dict[str, Any] = {}
        # templates that use a result registered later in the play: rendered once it is (see _done)
        self.deferred: dict[str, Any] = {}
        self.where: dict[str, Location] = {}

    def variables(self, play: Play) -> dict[str, Any]:
        """Variables by precedence: play defaults < inventory (group and host vars) < play vars and vars_files <
        registered < -e extra vars. Values given as templates are rendered as they use each other (lazily, as in
        Ansible), once per host and play."""
        raw = {**play.defaults, **self.ctx.host.vars, **play.vars}
        self.where = {**{n: self.ctx.host.where for n in self.ctx.host.vars},
                      **{n: play.where for n in (*play.defaults, *play.vars)}}
        plain = {**self.registered, **self.ctx.options.extra_vars,
                 "inventory_hostname": self.ctx.host.name, "run_id": self.ctx.run_id}
        values, self.deferred = templating.resolve(raw, plain, self.where, play.where)
        return values

    def run(self, play: Play) -> Played:
        """The play's steps, then its notified handlers; a failed step ends the host's run."""
        variables = self.variables(play)
        notified: dict[str, list[str]] = {}
        owed_handlers: set[str] = set()
        for owed in self._owed(play):
            notified.setdefault(owed.handler, []).extend(owed.paths)
            owed_handlers.add(owed.handler)
        for spec in play.steps:
            if not self._selected(spec, play):
                continue
            if (spec.verify or spec.kind in AFTER_RELOADS) and not self.reload_held():
                return Played(False)
            if self.stop.requested():
                self.log.interrupted_at = f"before step {spec.name!r}"
                return Played(False)
            debts: list[PendingReload] = []
            self.ctx.events.step_started(self.ctx.host.name, spec.name, str(spec.where))
            result = self.steps.run(spec, play, variables, debts=debts)
            self._done(spec, result, variables)
            if debts and not result.changed:
                # changed_when said no change (or the step failed): no reload is owed for it
                self.owed.discard(tuple(debts))
            if result.status == Status.FAILED and not spec.ignore_errors:
                if self.stop.requested():
                    self.log.interrupted_at = f"during step {spec.name!r}"
                    return Played(False)
                rollback = spec.verify and play.on_verify_failure == "rollback" and not self.ctx.options.check
                return Played(False, rollback)
            if result.changed:
                for name in spec.notify:
                    notified.setdefault(name, []).extend(result.changed_paths)
        return Played(self._handlers(play, notified, variables, owed_handlers))

    def _handlers(self, play: Play, notified: Mapping[str, list[str]], variables: dict[str, Any],
                  owed: Set[str] = frozenset()) -> bool:
        for handler in play.handlers:
            hits = tuple(n for n in (handler.name, *handler.listen) if n in notified)
            if not hits:
                continue
            if mergeable(handler):
                paths = tuple(dict.fromkeys(p for n in hits for p in notified[n]))
                self.held.append(HeldReload(handler, play, variables, paths, hits))
                continue
            if self.stop.requested():
                self.log.interrupted_at = f"before handler {handler.name!r}"
                return False
            paths = tuple(dict.fromkeys(p for n in hits for p in notified[n]))
            self.ctx.events.step_started(self.ctx.host.name, f"handler: {handler.name}", str(handler.where))
            result = replace(self.steps.run(handler, play, variables, paths), handler=True)
            if self.ctx.options.check and result.status == Status.SKIPPED and set(hits) & owed:
                # a reload an earlier run owes is a real pending change, even when the handler is a command
                result = replace(result, status=Status.WOULD_CHANGE, message="owed by an earlier run; not run in check mode")
            self._done(handler, result, variables)
            if result.status != Status.FAILED:
                self.owed.settle(playbook_key(play), play.name, hits)
            if result.status == Status.FAILED and not handler.ignore_errors:
                if self.stop.requested():
                    self.log.interrupted_at = f"during handler {handler.name!r}"
                return False
        return True

    def reload_held(self) -> bool:
        """Run the held compose reloads, merged per project, and settle what each member owed; False to stop."""
        held, self.held = tuple(self.held), []
        for reload in merge(held):
            if self.stop.requested():
                self.log.interrupted_at = f"before handler {reload.spec.name!r}"
                return False
            if len(reload.members) > 1:
                self.ctx.record("reload", step=reload.spec.name, services=list(reload.spec.args["service"]),
                                merged=[m.audit_fields() for m in reload.members])
            if not self._reload(reload):
                return False
        return True

    def _reload(self, reload: MergedReload) -> bool:
        spec, variables = reload.spec, dict(reload.variables)
        result = replace(self.steps.run(spec, reload.play, variables, reload.paths), handler=True)
        self._done(spec, result, variables)
        if result.status != Status.FAILED:
            for m in reload.members:
                self.owed.settle(playbook_key(m.play), m.play.name, m.hits)
        if result.status == Status.FAILED and not spec.ignore_errors:
            if self.stop.requested():
                self.log.interrupted_at = f"during handler {spec.name!r}"
            return False
        return True

    def _done(self, spec: StepSpec, result: StepResult, variables: dict[str, Any]) -> None:
        """Keep the result, tell the live output and the audit trail (verification outcomes included), register it."""
        self.log.results.append(result)
        if spec.verify and result.status not in (Status.SKIPPED, Status.FAILED, Status.PENDING):
            self.log.verified_at = self.ctx.clock()
        self.ctx.events.step_done(self.ctx.host.name, result)
        self.ctx.record(
            "step", step=result.name, kind=result.kind, where=str(result.where), status=result.status.value,
            verify=spec.verify, handler=result.handler, message=result.message, changed_paths=list(result.changed_paths),
            rc=result.output.rc if result.output is not None else None,
        )
        if spec.register:
            variables[spec.register] = self.registered[spec.register] = result.as_vars()
            if self.deferred:
                values, self.deferred = templating.resolve(self.deferred, variables, self.where)
                variables.update(values)

    def _owed(self, play: Play) -> tuple[PendingReload, ...]:
        """Reloads an earlier run on this host owes for this play: its handlers run now even without changes."""
        owed = self.owed.of_play(playbook_key(play), play.name)
        for p in owed:
            note = f"handler {p.handler!r} is owed since run {p.run_id} (step {p.step!r} changed {', '.join(p.paths)})"
            self.log.notices.append(note)
            self.ctx.record("notice", message=note, pending=True)
        return owed

    def _selected(self, spec: StepSpec, play: Play) -> bool:
        options = self.ctx.options
        return patterns.tag_selected((*spec.tags, *play.tags), options.tags, options.skip_tags)
