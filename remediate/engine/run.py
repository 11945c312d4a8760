"""A run over many hosts: each in its own worker (at most --forks at once) over its own transport, audited."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ..core.audit import AuditError, RunAudit
from ..core.options import RunOptions
from ..core.redact import Redactor
from ..core.results import HostResult, Mode, RunReport, Status
from ..inputs.inventory import Host, Inventory
from ..inputs.playbook import Play
from ..transport.base import Transport
from .control import Events, Interrupt
from .host import HostRunner
from .lock import ControllerLock, Holder, Locked
from .pending import PendingStore


def run_hosts(
    inventory: Inventory,
    plays: tuple[Play, ...],
    hosts: tuple[Host, ...],
    template_path: tuple[str, ...],
    options: RunOptions,
    mode: Mode,
    audit: RunAudit,
    pending: PendingStore,
    connect: Callable[[Host], Transport],
    events: Events,
    interrupt: Interrupt,
    redactor: Redactor,
    locks: Path | None = None,
) -> RunReport:
    """Every host in parallel, each over the transport `connect` gives it (closed when the host is done); the
    run's last record says how it ended. A host runs the plays whose `hosts:` select it. With `locks` (the
    state directory's locks/), each host is locked for its run, on the controller and on the host (lock.py)."""

    me = Holder.me(audit.run_id, mode.value)

    def one(host: Host) -> HostResult:
        mine = tuple(p for p in plays if host.name in {h.name for h in inventory.select(p.hosts, "hosts", p.where)})
        if interrupt.is_set():
            return HostResult(host.name, Status.FAILED, (), "interrupted before this host started")
        if interrupt.fault:
            return HostResult(host.name, Status.FAILED, (), f"not started: the run was halted: {interrupt.fault}")
        lock = ControllerLock(locks, host.name) if locks is not None else None
        notices: tuple[str, ...] = ()
        if lock is not None:
            try:
                stale = lock.acquire(me, options.wait_lock, lambda m: events.progress(host.name, "run lock", m))
            except Locked as exc:
                audit.record("host_end", host.name, status=Status.FAILED.value, message=str(exc), locked=True)
                return HostResult(host.name, Status.FAILED, (), str(exc))
            if stale:
                audit.record("notice", host.name, message=stale)
                notices = (stale,)
        try:
            transport = connect(host)
            try:
                result = HostRunner(host, mine, transport, options, audit.run_id, template_path, events,
                                    audit=audit, pending=pending, interrupt=interrupt, holder=me).run()
            finally:
                transport.close()
        finally:
            if lock is not None:
                lock.release()
        return replace(result, notices=notices + result.notices) if notices else result

    forks = max(1, min(options.forks, len(hosts) or 1))
    results: list[HostResult] = []
    with ThreadPoolExecutor(max_workers=forks, thread_name_prefix="host") as pool:
        futures = [pool.submit(one, host) for host in hosts]
        while True:
            try:
                results = [f.result() for f in futures]
                break
            except KeyboardInterrupt:
                # without the CLI's signal handlers Ctrl-C lands here: stop the hosts the same way, then wait
                interrupt.trigger()
    report = RunReport(audit.run_id, mode, tuple(results), interrupt.is_set(), redactor)
    try:
        audit.record("run_end", exit_code=int(report.exit_code()), summary=report.summary(),
                     interrupted=report.interrupted, hosts={h.host: h.status.value for h in report.hosts})
    except AuditError as exc:
        # hosts were contacted and may have changed: the recap is the account, and it says the trail's is not
        return replace(report, audit_error=str(exc))
    return report
