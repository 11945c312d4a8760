"""Execute plans on one host: facts in, actions out; check mode plans, shows and stops."""
from __future__ import annotations

import getpass
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..inputs import templating
from ..actions.base import Action, ExecContext, Outcome, RemoveFile, WriteFile
from ..core.audit import AuditError, RunAudit
from ..core.errors import Interrupted, StepError, Unreachable
from ..facts.files import FileFact
from .pending import PendingReload, PendingStore
from ..inputs.inventory import Host
from ..inputs.playbook import Play, StepSpec
from ..core.results import CommandOutput, HostResult, Status, StepResult, host_status
from ..steps import REGISTRY
from ..steps.base import PlanContext, Probe
from ..steps.files import FileProbe
from ..transport.base import Transport


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


class Interrupt:
    """Set on SIGINT/SIGTERM: hosts start nothing new, in-flight commands are killed, in-flight writes finish."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._runners: list[HostRunner] = []
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        """Whether the run was interrupted."""
        return self.event.is_set()

    def register(self, runner: HostRunner) -> None:
        """A host runner to tell when the interrupt comes."""
        with self._lock:
            self._runners.append(runner)
        if self.event.is_set():
            runner.interrupt()

    def unregister(self, runner: HostRunner) -> None:
        """The runner has finished."""
        with self._lock:
            if runner in self._runners:
                self._runners.remove(runner)

    def trigger(self) -> None:
        """Stop the run; called from a signal handler, so it only sets flags under short-held locks."""
        self.event.set()
        with self._lock:
            runners = list(self._runners)
        for runner in runners:
            runner.interrupt()


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
        audit: RunAudit | None = None,
        pending: PendingStore | None = None,
        interrupt: Interrupt | None = None,
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
        # answers of stable probes, valid until an action changes something on the host
        self.stable_facts: dict[Probe, Any] = {}
        # registered results outlive their play, as in Ansible
        self.registered: dict[str, Any] = {}
        self.audit = audit
        self.pending = pending
        self._interrupt = interrupt
        self.notices: list[str] = []
        # audit fields of every file this run wrote on the host, for on_verify_failure: rollback
        self.written: list[dict[str, Any]] = []
        # and of every row update (django_rows), restored after the files by on_verify_failure: rollback
        self.rows_written: list[dict[str, Any]] = []
        self.interrupted_at = ""
        self._play: Play | None = None
        self._step_debts: list[PendingReload] = []
        self._guard = threading.Lock()
        self._writing = False
        self._stop = False

    def interrupt(self) -> None:
        """Stop after the current action; kill the current remote command unless it is a file write."""
        with self._guard:
            self._stop = True
            writing = self._writing
        kill = getattr(self.transport, "interrupt", None)
        if not writing and kill is not None:
            kill()

    def _stopped(self) -> bool:
        with self._guard:
            return self._stop

    def run(self) -> HostResult:
        """All plays in order; a failed step stops this host, never the others."""
        if self._interrupt is not None:
            self._interrupt.register(self)
        try:
            result = self._run()
        finally:
            if self._interrupt is not None:
                self._interrupt.unregister(self)
        try:
            self._record("host_end", status=result.status.value, message=result.message,
                         interrupted=bool(self.interrupted_at))
        except AuditError as exc:
            result = replace(result, status=Status.FAILED, message=f"{result.message}\n{exc}".strip())
        note = self._copy_trail(result)
        return replace(result, notices=result.notices + (note,)) if note else result

    def _copy_trail(self, result: HostResult) -> str:
        """With `audit_remote_dir` set for the host, append this run's records about it there; say if that failed."""
        remote = self.host.vars.get("audit_remote_dir")
        if not remote or self.audit is None or result.status == Status.UNREACHABLE or self.interrupted_at:
            return ""
        where = f"{remote}/audit.jsonl"
        try:
            done = self.transport.run(["sh", "-c", 'mkdir -p -- "$0" && cat >> "$0/audit.jsonl"', str(remote)],
                                      stdin=self.audit.lines_for(self.host.name))
        except (StepError, Unreachable) as exc:
            return f"audit copy to {where} failed: {exc}"
        return "" if done.ok else f"audit copy to {where} failed: {done.err.strip() or f'exit {done.rc}'}"

    def _run(self) -> HostResult:
        results: list[StepResult] = []
        if self._stopped():
            self.interrupted_at = "before this host started"
            return HostResult(self.host.name, Status.FAILED, (), "interrupted before this host started")
        try:
            connect = getattr(self.transport, "connect", None)
            if connect is not None:
                connect()
            self._record("host", **self._who())
            for play in self.plays:
                if not self._run_play(play, results):
                    break
        except Unreachable as exc:
            return HostResult(self.host.name, Status.UNREACHABLE, tuple(results), str(exc), self._notices())
        except AuditError as exc:
            return HostResult(self.host.name, Status.FAILED, tuple(results), str(exc), self._notices())
        failed = next((r for r in results if r.status == Status.FAILED and not r.data.get("ignored")), None)
        status = Status.FAILED if failed else host_status(tuple(r for r in results if not r.data.get("ignored")))
        message = f"{failed.name}: {failed.message}" if failed else ""
        if self.interrupted_at:
            status = Status.FAILED
            message = f"interrupted {self.interrupted_at}" + (f"\n{message}" if message else "")
        return HostResult(self.host.name, status, tuple(results), message, self._notices())

    def _notices(self) -> tuple[str, ...]:
        return tuple(getattr(self.transport, "notices", ())) + tuple(self.notices)

    def _who(self) -> dict[str, Any]:
        """Who acts on the host: SSH user and the fingerprints of both keys (the transport records them)."""
        if self.host.is_local:
            return {"connection": "local", "ssh_user": None, "address": "local"}
        return {
            "connection": "ssh",
            "ssh_user": self.host.user or getpass.getuser(),
            "address": f"{self.host.address}:{self.host.port}",
            "host_key_fingerprint": getattr(self.transport, "host_key_fingerprint", None),
            "client_key_fingerprint": getattr(self.transport, "client_key_fingerprint", None),
            "identity_file": self.host.identity_file,
        }

    def _record(self, event: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.record(event, self.host.name, **fields)

    def _step_done(self, spec: StepSpec, result: StepResult) -> None:
        """Tell the live output and the audit trail (verification outcomes included)."""
        self.events.step_done(self.host.name, result)
        self._record(
            "step", step=result.name, kind=result.kind, where=str(result.where), status=result.status.value,
            verify=spec.verify, handler=result.handler, message=result.message, changed_paths=list(result.changed_paths),
            rc=result.output.rc if result.output is not None else None,
        )

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
        self._play = play
        variables = self.base_vars(play)
        notified: dict[str, list[str]] = {}
        for owed in self._owed(play):
            notified.setdefault(owed.handler, []).extend(owed.paths)
        for spec in play.steps:
            if not self._selected(spec, play):
                continue
            if self._stopped():
                self.interrupted_at = f"before step {spec.name!r}"
                return False
            self._step_debts = []
            result = self.run_step(spec, variables)
            results.append(result)
            self._step_done(spec, result)
            if self._step_debts and not result.changed and self.pending is not None:
                # changed_when said no change (or the step failed): no reload is owed for it
                self.pending.discard(self.host.name, tuple(self._step_debts))
            if spec.register:
                variables[spec.register] = self.registered[spec.register] = result.as_vars()
            if result.status == Status.FAILED and not spec.ignore_errors:
                if self._stopped():
                    self.interrupted_at = f"during step {spec.name!r}"
                elif spec.verify and play.on_verify_failure == "rollback" and not self.options.check:
                    self._roll_back(play, results)
                return False
            if result.changed:
                for name in spec.notify:
                    notified.setdefault(name, []).extend(result.changed_paths)
        return self._run_handlers(play, notified, variables, results)

    def _run_handlers(
        self, play: Play, notified: Mapping[str, list[str]], variables: dict[str, Any], results: list[StepResult]
    ) -> bool:
        for handler in play.handlers:
            hits = [n for n in (handler.name, *handler.listen) if n in notified]
            if not hits:
                continue
            if self._stopped():
                self.interrupted_at = f"before handler {handler.name!r}"
                return False
            paths = tuple(dict.fromkeys(p for n in hits for p in notified[n]))
            result = replace(self.run_step(handler, variables, paths), handler=True)
            results.append(result)
            self._step_done(handler, result)
            if handler.register:
                variables[handler.register] = self.registered[handler.register] = result.as_vars()
            if result.status != Status.FAILED and not self.options.check and self.pending is not None:
                self.pending.settle(self.host.name, playbook_key(play), play.name, tuple(hits))
            if result.status == Status.FAILED and not handler.ignore_errors:
                if self._stopped():
                    self.interrupted_at = f"during handler {handler.name!r}"
                return False
        return True

    def _owed(self, play: Play) -> tuple[PendingReload, ...]:
        """Reloads an earlier run on this host owes for this play: its handlers run now even without changes."""
        if self.pending is None:
            return ()
        owed = tuple(p for p in self.pending.load(self.host.name) if p.playbook == playbook_key(play) and p.play == play.name)
        for p in owed:
            note = f"handler {p.handler!r} is owed since run {p.run_id} (step {p.step!r} changed {', '.join(p.paths)})"
            self.notices.append(note)
            self._record("notice", message=note, pending=True)
        return owed

    def _roll_back(self, play: Play, results: list[StepResult]) -> None:
        """on_verify_failure: rollback: restore what this run wrote in the play, then run the handlers they notify."""
        from .rollback import Change, RowsChange, restore_play, restore_rows_play

        def mine(w: Mapping[str, Any]) -> bool:
            return bool(w["playbook"] == playbook_key(play) and w["play"] == play.name)

        writes = [w for w in self.written if mine(w)]
        rows = [RowsChange.from_result({**w, "host": self.host.name}) for w in self.rows_written if mine(w)]
        if not writes and not rows:
            return
        changes = Change.from_writes(self.host.name, writes)
        what = ", ".join(x for x in (f"{len(changes)} file(s)" if changes else "",
                                     f"rows of {len(rows)} step(s)" if rows else "") if x)
        self._record("notice", message=f"verification failed: rolling back {what} (on_verify_failure)")
        self.notices.append(f"verification failed: rolled back {what} and ran the handlers the files notify")
        if changes:
            self._run_play(restore_play(play, changes, self.host.name, force=False, rollback_of=self.run_id), results)
        if rows:
            self._run_play(restore_rows_play(play, rows, self.host.name, force=False, rollback_of=self.run_id), results)
        self._play = play

    def _selected(self, spec: StepSpec, play: Play) -> bool:
        tags = set(spec.tags) | set(play.tags)
        if self.options.tags and not tags & set(self.options.tags):
            return False
        return not (self.options.skip_tags and tags & set(self.options.skip_tags))

    def run_step(self, spec: StepSpec, variables: Mapping[str, Any], notified_paths: tuple[str, ...] = ()) -> StepResult:
        """One step, or one per item of its `loop:`, folded into one result, with the time it took."""
        started = time.monotonic()
        result = self._run_step(spec, variables, notified_paths)
        return replace(result, duration=time.monotonic() - started)

    def _run_step(self, spec: StepSpec, variables: Mapping[str, Any], notified_paths: tuple[str, ...]) -> StepResult:
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
                elif isinstance(action, RemoveFile):
                    self.overlay[action.path] = replace(action.before, exists=False, data=b"")
                continue
            described.append(action.describe())
            outcome = self._execute(spec, action, exec_ctx)
            outcomes.append(outcome)
            changed |= action.is_change
            if action.is_change:
                self.stable_facts.clear()
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
        # A failed action that explains itself (a log regex never matched, a query printed no JSON) keeps
        # its explanation; a plain command failure is told by its argv, exit code and output tail.
        explained = any(o.failed and o.message for o in outcomes)
        if failed and result.status == Status.FAILED and output is not None and spec.until is None and not explained:
            result = replace(result, message=_command_failure(output))
        return result

    def _execute(self, spec: StepSpec, action: Action, ctx: ExecContext) -> Outcome:
        """The one place a change is made: intent (and owed reloads) recorded before, result after."""
        fields: dict[str, Any] = {}
        debts: tuple[PendingReload, ...] = ()
        if action.is_change:
            play = self._play
            fields = {
                **action.audit_fields(self.run_id), "step": spec.name, "where": str(spec.where),
                "play": play.name if play else "", "playbook": playbook_key(play) if play else "", "notify": list(spec.notify),
            }
            diff = action.diff(self.host.name)
            try:
                self._record("intent", **fields, **({"diff": diff} if diff else {}))
                if spec.notify and action.paths() and self.pending is not None and play is not None:
                    debts = tuple(PendingReload(playbook_key(play), play.name, n, action.paths(), self.run_id, spec.name)
                                  for n in spec.notify)
                    self.pending.add(self.host.name, debts)
                    self._step_debts.extend(debts)
            except AuditError as exc:
                raise StepError(f"{exc}; refusing to make this change, nothing was changed") from None
        with self._guard:
            if self._stop:
                raise Interrupted("interrupted before this action; nothing was changed")
            self._writing = not action.interruptible
        try:
            outcome = action.execute(ctx)
        except StepError as exc:
            if action.is_change:
                if debts and self.pending is not None:
                    self.pending.discard(self.host.name, debts)
                outcome_name = "interrupted" if isinstance(exc, Interrupted) else "failed"
                self._record("result", step=spec.name, action=fields.get("action"), outcome=outcome_name, message=str(exc))
            raise
        finally:
            with self._guard:
                self._writing = False
        if action.is_change:
            out = outcome.output
            # what the action learnt by making the change (outcome.audit) replaces what it planned
            result_fields = {**{k: v for k, v in fields.items() if k != "action"}, **dict(outcome.audit)}
            self._record(
                "result", **result_fields, action=fields.get("action"), outcome="failed" if outcome.failed else "ok",
                rc=out.rc if out is not None else None, message=outcome.message,
                **({"stderr_tail": out.stderr[-2000:]} if out is not None and outcome.failed else {}),
            )
            if fields.get("type") in ("write", "remove") and not outcome.failed:
                self.written.append(fields)
            elif fields.get("type") == "rows" and not outcome.failed:
                self.rows_written.append({**fields, **dict(outcome.audit)})
        return outcome

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
            elif probe.stable:
                if probe not in self.stable_facts:
                    self.stable_facts[probe] = probe.gather(self.transport)
                facts[probe] = self.stable_facts[probe]
            else:
                facts[probe] = probe.gather(self.transport)
        return facts


def playbook_key(play: Play) -> str:
    """A play's playbook as the audit trail and pending reloads name it: an absolute path."""
    return os.path.abspath(play.path)


def _last_seen(result: StepResult) -> str:
    out = result.output
    if out is None:
        return f": {result.message}" if result.message else ""
    from ..core.errors import tail_lines

    tail = tail_lines(out.stderr or out.stdout, 5)
    return f"; last exit {out.rc}" + (f", output:\n{tail}" if tail else "")


def _command_failure(output: CommandOutput) -> str:
    from ..core.errors import tail_lines
    import shlex

    tail = tail_lines(output.stderr or output.stdout, 15)
    return f"command failed (exit {output.rc}): {shlex.join(output.argv)}" + (f"\n{tail}" if tail else "")
