"""A run over many hosts: each in its own worker (at most --forks at once) over its own transport, audited."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..core.audit import RunAudit
from ..core.options import RunOptions
from ..core.redact import Redactor
from ..core.results import HostResult, Mode, RunReport, Status
from ..inputs.inventory import Host, Inventory
from ..inputs.playbook import Play
from ..transport.base import Transport
from .control import Events, Interrupt
from .host import HostRunner
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
) -> RunReport:
    """Every host in parallel, each over the transport `connect` gives it (closed when the host is done); the
    run's last record says how it ended. A host runs the plays whose `hosts:` select it."""

    def one(host: Host) -> HostResult:
        mine = tuple(p for p in plays if host.name in {h.name for h in inventory.select(p.hosts, "hosts", p.where)})
        if interrupt.is_set():
            return HostResult(host.name, Status.FAILED, (), "interrupted before this host started")
        transport = connect(host)
        try:
            return HostRunner(host, mine, transport, options, audit.run_id, template_path, events,
                              audit=audit, pending=pending, interrupt=interrupt).run()
        finally:
            transport.close()

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
    audit.record("run_end", exit_code=int(report.exit_code()), summary=report.summary(),
                 interrupted=report.interrupted, hosts={h.host: h.status.value for h in report.hosts})
    return report
