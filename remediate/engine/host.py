"""One host's run: connect, say who acts, run its plays in order over its one transport, roll a play back when a
verification asks for it, and end with the host's result (and a copy of its records on the host, if asked)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from ..core.audit import AuditError, RunAudit
from ..core.errors import StepError, Unreachable
from ..core.options import RunOptions
from ..core.results import HostResult, Status, host_status
from ..inputs.inventory import Host
from ..inputs.playbook import Play
from ..transport.base import Transport
from .act import Actor
from .context import HostContext, playbook_key
from .control import Events, Interrupt, NoEvents, Stop
from .known import HostFacts
from .lock import Holder, HostSideLock, Locked
from .pending import Owed, PendingStore
from .play import HostLog, PlayRunner
from .recovery import restore_plays
from .step import StepRunner


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
        holder: Holder | None = None,
    ) -> None:
        self.ctx = HostContext(host, transport, options, run_id, template_path, events or NoEvents(), sleep, clock, audit)
        self.plays = plays
        self._held: list[Play] = []  # verification plays waiting for later playbooks' fixes (_hold)
        self.stop = Stop(transport)
        self.log = HostLog()
        self._interrupt = interrupt
        # with a holder: the run lock on the host itself, taken once connected, released after the last record
        self._holder = holder
        self._host_lock: HostSideLock | None = None
        facts = HostFacts(transport)
        owed = Owed(pending, host.name, options.check)
        self.actor = Actor(self.ctx, facts, self.stop, owed)
        self.runner = PlayRunner(self.ctx, StepRunner(self.ctx, facts, self.actor), owed, self.stop, self.log)

    def interrupt(self) -> None:
        """Stop after the current action; kill the current remote command unless it is a file write."""
        self.stop.request()

    def run(self) -> HostResult:
        """All plays in order; a failed step stops this host, never the others."""
        if self._interrupt is not None:
            self._interrupt.register(self.stop)
        try:
            try:
                result = self._run()
            finally:
                if self._interrupt is not None:
                    self._interrupt.unregister(self.stop)
            try:
                self.ctx.record("host_end", status=result.status.value, message=result.message,
                                interrupted=bool(self.log.interrupted_at))
            except AuditError as exc:
                result = replace(result, status=Status.FAILED, message=f"{result.message}\n{exc}".strip())
            note = self._copy_trail(result)
            return replace(result, notices=result.notices + (note,)) if note else result
        finally:
            if self._host_lock is not None:
                self._host_lock.release()

    def _run(self) -> HostResult:
        began = self.ctx.clock()
        name, log = self.ctx.host.name, self.log
        if self.stop.requested():
            log.interrupted_at = "before this host started"
            return HostResult(name, Status.FAILED, (), "interrupted before this host started")
        try:
            self.ctx.transport.connect()
            if self._holder is not None and not self.ctx.host.is_local:
                # `connection: local`: the controller is the host, and its lock in the state directory is the
                # run lock (a host lock keyed by name would serialise every local inventory's `here` on a machine)
                self._lock_on_host(self._holder)
            else:
                self.ctx.record("host", **self.ctx.transport.identity().audit_fields())
            for play in self.plays:
                if self._hold(play):
                    continue
                if not self._play(play):
                    break
            self._run_held()
        except Unreachable as exc:
            return HostResult(name, Status.UNREACHABLE, tuple(log.results), str(exc), self._notices())
        except Locked as exc:
            return HostResult(name, Status.FAILED, tuple(log.results), str(exc), self._notices())
        except AuditError as exc:
            # no host may change anything without its write-ahead record: the whole run stops here
            if self._interrupt is not None:
                self._interrupt.halt(str(exc))
            return HostResult(name, Status.FAILED, tuple(log.results), str(exc), self._notices())
        except Exception as exc:  # a bug in remediate: the host ends failed, the run ends with its recap
            if self._interrupt is not None:
                self._interrupt.halt(f"internal error on {name}")
            return HostResult(name, Status.FAILED, tuple(log.results),
                              f"internal error: {type(exc).__name__}: {exc}", self._notices())
        counted = tuple(r for r in log.results if not r.ignored)
        failed = next((r for r in counted if r.status == Status.FAILED), None)
        status = Status.FAILED if failed else host_status(counted)
        message = f"{failed.name}: {failed.message}" if failed else ""
        if log.interrupted_at:
            status = Status.FAILED
            fault = self._interrupt.fault if self._interrupt is not None and not self._interrupt.is_set() else ""
            why = f"stopped {log.interrupted_at}: the run was halted: {fault}" if fault else f"interrupted {log.interrupted_at}"
            message = why + (f"\n{message}" if message else "")
        return HostResult(name, status, tuple(log.results), message, self._notices(),
                          None if status in (Status.FAILED, Status.PENDING) or log.verified_at is None else log.verified_at - began)

    def _play(self, play: Play) -> bool:
        """One play (rolled back if its verification asks for it); whether the host goes on."""
        played = self.runner.run(play)
        if played.roll_back:
            self._roll_back(play)
        return played.go_on

    def _hold(self, play: Play) -> bool:
        """Whether a play of verifications waits for the later playbooks' fixes, so that their reloads merge with
        the ones before it (kept in order, after every play held before it)."""
        if not _verification(play):
            return False
        later = self.plays[self.plays.index(play) + 1:]
        if self._held or any(not _verification(p) and playbook_key(p) != playbook_key(play) for p in later):
            self._held.append(play)
            return True
        return False

    def _run_held(self) -> None:
        """The merged reloads still held, then the verification plays that waited for them (not after an interrupt)."""
        if self.log.interrupted_at or not self.runner.reload_held():
            return
        for play in self._held:
            if not self._play(play):
                break

    def _lock_on_host(self, holder: Holder) -> None:
        """The `host` record and the run lock on the host itself (other controllers), at once: the record's
        fsync on the controller overlaps the lock's round trip to the host, and the record still comes first in
        the trail (before the notice of a stale lock and every intent). Locked naming the holder."""
        host = self.ctx.host
        identity = self.ctx.transport.identity()
        failed: list[BaseException] = []

        def record() -> None:
            try:
                self.ctx.record("host", **identity.audit_fields())
            except BaseException as exc:  # noqa: BLE001 - raised again on this host's thread below
                failed.append(exc)

        writer = threading.Thread(target=record, name=f"{host.name}: host record", daemon=True)
        writer.start()
        try:
            lock = HostSideLock(self.ctx.transport, host.name, identity.address)
            stale = lock.acquire(holder, self.ctx.options.wait_lock, lambda m: self.ctx.progress("run lock", m))
            self._host_lock = lock
        finally:
            writer.join()
            if failed:  # a trail that cannot be written stops the run, before a refusal by the lock
                raise failed[0]
        if stale:
            self.log.notices.append(stale)
            self.ctx.record("notice", message=stale)

    def _roll_back(self, play: Play) -> None:
        """on_verify_failure: rollback: restore what this run wrote in the play, then run the handlers they notify."""
        plays, what = restore_plays(play, self.actor.written, self.ctx.host.name, self.ctx.run_id)
        if not plays:
            return
        self.ctx.record("notice", message=f"verification failed: rolling back {what} (on_verify_failure)")
        self.log.notices.append(f"verification failed: rolled back {what} and ran the handlers the files notify")
        for restore in plays:
            self.runner.run(restore)
        self.runner.reload_held()

    def _notices(self) -> tuple[str, ...]:
        return self.ctx.transport.notices() + tuple(self.log.notices)

    def _copy_trail(self, result: HostResult) -> str:
        """With `audit_remote_dir` set for the host, append this run's records about it there; say if that failed."""
        audit, remote = self.ctx.audit, self.ctx.host.vars.get("audit_remote_dir")
        if not remote or audit is None or result.status == Status.UNREACHABLE or self.log.interrupted_at:
            return ""
        where = f"{remote}/audit.jsonl"
        try:
            done = self.ctx.transport.run(["sh", "-c", 'mkdir -p -- "$0" && cat >> "$0/audit.jsonl"', str(remote)],
                                          stdin=audit.lines_for(self.ctx.host.name))
        except (StepError, Unreachable) as exc:
            return f"audit copy to {where} failed: {exc}"
        return "" if done.ok else f"audit copy to {where} failed: {done.err.strip() or f'exit {done.rc}'}"


def _verification(play: Play) -> bool:
    """A play of verifications only (no handlers): it changes nothing, so it may wait for later plays' fixes."""
    return bool(play.steps) and not play.handlers and all(s.verify for s in play.steps)
