"""The one place a change is made: an action's intent (and the reloads it owes) recorded before, its result after.

Check mode makes no change: an action that is not read-only is described as "would ..." and its prediction of
what it would leave is remembered for the steps planned after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..actions.base import Action, ExecContext, Outcome
from ..core.audit import AuditError, diff_fields
from ..core.changes import Change, from_record
from ..core.errors import Interrupted, StepError
from ..core.results import Status
from ..inputs.playbook import Play, StepSpec
from ..transport.base import Become, Transport
from .context import HostContext, playbook_key
from .control import Stop
from .known import HostFacts
from .pending import Owed, PendingReload


@dataclass(frozen=True)
class Acted:
    """What one attempt's actions did (or, in check mode, would do)."""

    described: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    would_change: bool = False
    changed: bool = False
    failed: bool = False
    pending: bool = False

    def status(self, check: bool) -> Status:
        """The attempt's status before changed_when/failed_when."""
        if self.failed:
            return Status.FAILED
        if self.pending:
            return Status.PENDING
        if self.changed:
            return Status.CHANGED
        if self.would_change:
            return Status.WOULD_CHANGE
        return Status.SKIPPED if self.skipped_only(check) else Status.OK

    def skipped_only(self, check: bool) -> bool:
        """Check mode ran nothing and would change nothing: every action needs the changes it would not make."""
        return check and not self.outcomes and not self.would_change


class Actor:
    """Carries out the actions a step planned, on one host."""

    def __init__(self, ctx: HostContext, facts: HostFacts, stop: Stop, owed: Owed) -> None:
        self.ctx = ctx
        self.facts = facts
        self.stop = stop
        self.owed = owed
        # what this run changed on the host, read back from the records written: on_verify_failure's input
        self.written: list[Change] = []
        self._become: Become | None = None  # whom the current step's actions run as

    def act(self, spec: StepSpec, play: Play, actions: tuple[Action, ...], debts: list[PendingReload],
            transport: Transport | None = None, become: Become | None = None) -> Acted:
        """Each action in order (over `transport`: the host's, as the step's user), until one fails; `debts`
        gathers the reloads the changes owe."""
        ctx = self.ctx
        run = ExecContext(ctx.host.name, transport or ctx.transport, ctx.run_id, ctx.sleep, ctx.clock,
                          lambda message: ctx.progress(spec.name, message), ctx.options.verify_timeout)
        self._become = become
        described: list[str] = []
        outcomes: list[Outcome] = []
        would_change = changed = pending = False
        for action in actions:
            if ctx.options.check and not action.runs_in_check:
                described.append(("would " if action.is_change else "would check: ") + action.describe())
                would_change |= action.is_change
                self.facts.predict(action)
                continue
            described.append(action.describe())
            outcome = self.execute(spec, play, action, run, debts)
            outcomes.append(outcome)
            changed |= action.is_change
            if action.is_change:
                self.facts.changed()
            if outcome.failed:
                return Acted(tuple(described), tuple(outcomes), would_change, changed, True, pending)
            pending |= outcome.pending
        return Acted(tuple(described), tuple(outcomes), would_change, changed, False, pending)

    def _diff_fields(self, diff: str) -> dict[str, Any]:
        """The diff as the intent record keeps it: whole up to MAX_AUDIT_DIFF bytes, else its size and the
        sha256 of its masked text (a hash of the unmasked one would confirm a guess of a secret)."""
        audit = self.ctx.audit
        if not diff or audit is None:
            return {"diff": diff} if diff else {}
        return diff_fields(audit.redactor.text(diff))

    def execute(self, spec: StepSpec, play: Play, action: Action, run: ExecContext,
                debts: list[PendingReload]) -> Outcome:
        """Make one change (or run one read-only action): intent and owed reloads before, result after."""
        fields: dict[str, Any] = {}
        owed: tuple[PendingReload, ...] = ()
        if action.is_change:
            fields = {**action.audit_fields(self.ctx.run_id), "step": spec.name, "where": str(spec.where),
                      "play": play.name, "playbook": playbook_key(play), "notify": list(spec.notify)}
            if self._become is not None:
                fields["become"] = self._become.user  # whom the change was made as: its rollback is made as them
            diff = action.diff(self.ctx.host.name)
            try:
                self.ctx.record("intent", **fields, **self._diff_fields(diff))
                if spec.notify and action.paths():
                    owed = tuple(PendingReload(playbook_key(play), play.name, n, action.paths(), self.ctx.run_id,
                                               spec.name) for n in spec.notify)
                    self.owed.add(owed)
                    debts.extend(owed)
            except AuditError as exc:
                # no change without its write-ahead record: this host stops, and the run halts (engine/host.py)
                raise AuditError(f"{exc}; refusing to make this change, nothing was changed") from None
        # a stop requested before the action starts raises here: nothing was attempted, so no result is recorded
        with self.stop.acting(action.interruptible):
            try:
                outcome = action.execute(run)
            except StepError as exc:
                if action.is_change:
                    self.owed.discard(owed)
                    outcome_name = "interrupted" if isinstance(exc, Interrupted) else "failed"
                    self.ctx.record("result", step=spec.name, action=fields.get("action"), outcome=outcome_name,
                                    message=str(exc))
                raise
        if action.is_change:
            self._done(spec, fields, outcome)
        return outcome

    def _done(self, spec: StepSpec, fields: dict[str, Any], outcome: Outcome) -> None:
        out = outcome.output
        # what the action learnt by making the change (outcome.audit) replaces what it planned
        result_fields = {**{k: v for k, v in fields.items() if k != "action"}, **dict(outcome.audit)}
        self.ctx.record(
            "result", **result_fields, action=fields.get("action"), outcome="failed" if outcome.failed else "ok",
            rc=out.rc if out is not None else None, message=outcome.message,
            **({"stderr_tail": out.stderr[-2000:]} if out is not None and outcome.failed else {}),
        )
        if not outcome.failed:
            change = from_record({**result_fields, "host": self.ctx.host.name})
            if change is not None:
                self.written.append(change)
