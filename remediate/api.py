"""The real entries, shared by the CLI and tests: load the inputs once, then apply, check, rollback, diagnose,
drift or backups, each with the loaded inputs, one RunOptions and the state directory, returning a report."""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.audit import AuditError, AuditLog, RunAudit, read_records, sha256_file, verify
from .core.errors import InputError, Location
from .core.options import RunOptions
from .core.results import Mode, RunReport
from .core.state import StateDir
from .engine.control import Events, Interrupt, NoEvents
from .engine.lock import ControllerLock, Holder, HostSideLock, Locked
from .engine.pending import PendingStore
from .engine.run import run_hosts
from .inputs import load as inputs
from .inputs import playbook, resources
from .inputs.inventory import Host, load_inventory
from .inputs.load import Loaded, secrets_of
from .steps import REGISTRY
from .transport.base import Become, Transport
from .transport.shared import Connections

if TYPE_CHECKING:  # diagnose, drift, backups and rollback are imported by their commands: apply starts lighter
    from . import backups as bk
    from . import diagnose as dg
    from .drift.model import DriftReport, FixOutcome

__all__ = ["DriftRun", "Loaded", "Why", "apply", "backups_list", "backups_prune", "check", "connector", "diagnose",
           "drift", "drift_check", "host_become", "load", "load_hosts", "load_playbook", "load_rollback",
           "make_transport", "new_run_id", "rollback", "ssh_routes", "start_audit"]


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class Why:
    """Why a run happens, as the operator says it (`--reason`, `--change-ref`)."""

    reason: str | None = None
    change_ref: str | None = None

    def fields(self) -> dict[str, str | None]:
        """As the run_start record keeps it."""
        return {"reason": self.reason, "change_ref": self.change_ref}


# ---- inputs -------------------------------------------------------------------------------------------------------


def load_playbook(path: Path) -> tuple[playbook.Play, ...]:
    """A playbook file, its steps checked against the registered step kinds."""
    return playbook.load_playbook(path, REGISTRY)


def load(env: str, playbooks: tuple[str, ...], options: RunOptions, inventory: str | None = None) -> Loaded:
    """Inventory and playbooks, validated (every variable a step uses too); InputError on anything wrong."""
    return inputs.load(env, playbooks, options, REGISTRY, inventory)


def load_hosts(env: str | None, options: RunOptions, inventory: str | None = None) -> Loaded:
    """An inventory and the hosts --limit selects, for the commands without playbooks (diagnose, backups)."""
    return inputs.load_hosts(env, options, inventory)


def load_rollback(run_id: str, options: RunOptions, state: StateDir, force: bool = False,
                  inventory: str | None = None, verify_after: bool = True) -> Loaded:
    """The plays undoing run_id, from the verified trail: restore files, their handlers, the verifications."""
    from .engine.rollback import plan_from_records, rollback_plays

    verdict = verify(state.audit)
    if not verdict.ok and not force:
        raise InputError(f"the audit trail {state.audit} fails verification ({verdict.problem}); "
                         "it cannot be trusted to roll back (--force to use it anyway)")
    plan = plan_from_records(read_records(state.audit), run_id, str(state.audit))
    inv = load_inventory(Path(inventory) if inventory else Path(plan.inventory))
    paths = []
    for path, digest in plan.playbooks:
        try:
            now = sha256_file(path)
        except OSError as exc:
            raise InputError(f"playbook {path} of run {run_id} cannot be read: {exc.strerror or exc}") from None
        if now != digest and not force:
            raise InputError(f"playbook {path} changed since run {run_id} (sha256 {now}, then {digest}); "
                             "its handlers and verifications may differ (--force to use it as it is now)")
        paths.append(Path(path))
    plays = tuple(play for path in paths for play in load_playbook(path))
    known = {h.name for h in inv.hosts}
    missing = [h for h in plan.hosts if h not in known]
    if missing:
        raise InputError(f"run {run_id} changed host {missing[0]!r}, which {inv.path} no longer has")
    selected = set(plan.hosts)
    if options.limit:
        selected &= {h.name for h in inv.select(options.limit, "--limit", Location(inv.path))}
    hosts = tuple(h for h in inv.hosts if h.name in selected)
    todo = tuple(p for p in rollback_plays(plan, plays, force, verify_after) if p.hosts in selected)
    return Loaded(inv, todo, tuple(paths), hosts, resources.template_path(tuple(paths)), secrets_of(inv, plays, options))


def make_transport(host: Host, options: RunOptions) -> Transport:
    """The transport for one host: local, or one SSH connection (see connector, for many); logged command by
    command with -vvv."""
    return connector((host,), options)(host)


def connector(hosts: Sequence[Host], options: RunOptions) -> Callable[[Host], Transport]:
    """Each host's transport, with the run's SSH settings (ssh_config, keys, -u, --private-key) loaded once and
    every SSH host's route resolved now: a bad ssh_config or ProxyJump is invalid input, before any host is
    contacted. A host's transport runs as its `become` user (the inventory's, else -b/--become-user)."""
    from .transport import local
    from .transport.logged import logged

    settings, routes = _ssh(hosts, options)

    def make(host: Host) -> Transport:
        become = host_become(host, options)
        if host.is_local:
            return logged(local.LocalTransport(host.name, become, options.become_password, options.command_timeout))
        from .transport.ssh import SSHTransport

        assert settings is not None
        return logged(SSHTransport(host, settings, routes.get(host.name), become))

    return make


def ssh_routes(hosts: Sequence[Host], options: RunOptions) -> dict[str, str]:
    """Where each SSH host's connection goes, in words (user@address:port via ...), as a run would resolve it."""
    return {name: route.where for name, route in _ssh(hosts, options)[1].items()}


def _ssh(hosts: Sequence[Host], options: RunOptions) -> tuple[Any, dict[str, Any]]:
    """The run's SSH settings (ssh_config loaded once, the key store) and each SSH host's route."""
    remote = [h for h in hosts if not h.is_local]
    if not remote:
        return None, {}
    from .transport.keys import KeyStore
    from .transport.ssh import SSHOptions, route_of
    from .transport.sshconfig import Defaults, load

    settings = SSHOptions(
        options.connect_timeout, options.command_timeout, options.accept_new_host_keys,
        load(options.ssh_config, enabled=options.use_ssh_config),
        Defaults(user=options.user, private_key=options.private_key),
        agent=True, keys=KeyStore.from_environment(), become_password=options.become_password,
    )
    routes = {}
    for host in remote:
        try:
            routes[host.name] = route_of(host, settings)
        except InputError as exc:
            raise InputError(f"host {host.name!r}: {exc.message}", exc.where or host.where) from None
    return settings, routes


def host_become(host: Host, options: RunOptions) -> Become | None:
    """Whom a host's commands run as outside any play (diagnose, drift's health, backups): the inventory's
    become, else -b/--become; as become_user, else --become-user, else root."""
    wanted = host.become if host.become is not None else options.become
    return Become(host.become_user or options.become_user or "root") if wanted else None


def start_audit(loaded: Loaded, state: StateDir, command: str, why: Why = Why(), run_id: str | None = None,
                continue_broken: bool = False, read_only: bool = False, **fields: Any) -> RunAudit:
    """The run's first audit record (who, why, what with hashes); AuditError, before any host is contacted.
    `read_only`: a run that changes nothing (check mode, drift, diagnose) does not wait for its later records."""
    try:
        inventory = {"path": str(Path(loaded.inventory.path).resolve()), "sha256": sha256_file(loaded.inventory.path)}
        playbooks = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in loaded.playbook_paths]
    except OSError as exc:
        raise AuditError(f"cannot hash the run's inputs for the audit trail: {exc}") from None
    return AuditLog(state.audit).start(
        run_id or new_run_id(), command, loaded.redactor, continue_broken, read_only, why=why.fields(), inventory=inventory,
        playbooks=playbooks,
        hosts=[h.name for h in loaded.hosts], **fields,
    )


def _run_fields(options: RunOptions) -> dict[str, Any]:
    return {"check": options.check, "limit": options.limit, "tags": list(options.tags),
            "skip_tags": list(options.skip_tags), "extra_vars": dict(options.extra_vars)}


# ---- runs ---------------------------------------------------------------------------------------------------------


def _run(loaded: Loaded, options: RunOptions, state: StateDir, mode: Mode, audit: RunAudit, events: Events | None,
         interrupt: Interrupt | None, connect: Callable[[Host], Transport] | None) -> RunReport:
    return run_hosts(loaded.inventory, loaded.plays, loaded.hosts, loaded.template_path, options, mode, audit,
                     PendingStore(state.pending), connect or (lambda host: make_transport(host, options)),
                     events or NoEvents(), interrupt or Interrupt(), loaded.redactor, state.locks)


def apply(loaded: Loaded, options: RunOptions, state: StateDir, events: Events | None = None,
          interrupt: Interrupt | None = None, why: Why = Why(),
          connect: Callable[[Host], Transport] | None = None) -> RunReport:
    """Run the playbooks on every selected host (check mode when options.check), audited; fail closed: an audit
    trail that cannot be written is an AuditError before any host is contacted."""
    mode = Mode.CHECK if options.check else Mode.APPLY
    connect = connect or connector(loaded.hosts, options)
    audit = start_audit(loaded, state, mode.value, why, continue_broken=options.force_audit_continue,
                        read_only=options.check, options=_run_fields(options))
    return _run(loaded, options, state, mode, audit, events, interrupt, connect)


def check(loaded: Loaded, options: RunOptions, state: StateDir, events: Events | None = None,
          interrupt: Interrupt | None = None, connect: Callable[[Host], Transport] | None = None) -> RunReport:
    """Plan and show on every selected host; change nothing (exit 2 when something would change)."""
    return apply(loaded, replace(options, check=True), state, events, interrupt, connect=connect)


def rollback(loaded: Loaded, options: RunOptions, state: StateDir, run_id: str, force: bool = False,
             events: Events | None = None, interrupt: Interrupt | None = None, why: Why = Why()) -> RunReport:
    """Restore the files run_id changed (compare-and-swap), run the handlers they notified, then verifications."""
    connect = connector(loaded.hosts, options)
    audit = start_audit(loaded, state, "rollback", why, continue_broken=options.force_audit_continue,
                        options=_run_fields(options), rollback_of=run_id, force=force)
    return _run(loaded, options, state, Mode.CHECK if options.check else Mode.ROLLBACK, audit, events, interrupt,
                connect)


# ---- read-only passes ---------------------------------------------------------------------------------------------


def diagnose(loaded: Loaded, options: RunOptions, state: StateDir, why: Why = Why()) -> dg.DiagnoseReport:
    """diagnose's one read-only pass per host, audited."""
    from . import diagnose as dg

    connect = connector(loaded.hosts, options)
    audit = start_audit(loaded, state, "diagnose", why, read_only=True)
    report = dg.diagnose(loaded.hosts, connect, options.forks, audit)
    audit.record("run_end", exit_code=int(report.exit_code()), interrupted=False, summary={
        "hosts": len(report.hosts), "problems": sum(bool(r.problems) for r in report.hosts),
        "errors": sum(bool(r.error) for r in report.hosts)})
    return report


@dataclass(frozen=True)
class DriftRun:
    """A drift run: the assessment (with --fix: before, the apply run, after) and what the notification did."""

    outcome: FixOutcome
    notification: str = ""  # what happened to the notification, for the output ("" when none was due)
    notify_error: str = ""  # why it was not sent


def drift_check(loaded: Loaded, env: str, options: RunOptions, state: StateDir, health: bool = True,
                clock: Callable[[], datetime] | None = None) -> DriftReport:
    """One assessment: the playbooks in check mode, then diagnose, sharing one connection per host; masked."""
    from . import diagnose as dg
    from .drift.assess import assess
    from .drift.model import from_doc, playbook_check_name, shown_path, to_doc

    started = (clock or (lambda: datetime.now(timezone.utc)))()
    timer = time.monotonic()
    options = replace(options, check=True, diff=True)
    steps = [s for p in loaded.plays for s in p.steps]
    names = tuple(dict.fromkeys(playbook_check_name(s.where.path) for s in steps))
    files: dict[str, str] = {}
    for s in steps:
        files.setdefault(playbook_check_name(s.where.path), shown_path(s.where.path))
    connections = Connections(connector(loaded.hosts, options))
    try:
        audit = start_audit(loaded, state, Mode.CHECK.value, continue_broken=options.force_audit_continue,
                            read_only=True, options=_run_fields(options))
        check_run = _run(loaded, options, state, Mode.CHECK, audit, None, None, connections.lend)
        diagnoses = dg.diagnose(loaded.hosts, connections.lend, options.forks) if health and loaded.hosts else None
    finally:
        connections.close()
    seconds = {d.host: d.duration for d in diagnoses.hosts if d.duration is not None} if diagnoses else {}
    report = assess(env, check_run.run_id, started,
                    tuple(h.name for h in loaded.hosts), names, check_run, diagnoses.hosts if diagnoses else (),
                    files, seconds)
    report = replace(report, duration=time.monotonic() - timer,
                     playbooks=tuple(shown_path(str(p)) for p in loaded.playbook_paths))
    # masked once, here, so every rendering, the history and the notifications only ever see masked text
    return from_doc(loaded.redactor.data(to_doc(report)))


def drift(loaded: Loaded, env: str, options: RunOptions, state: StateDir, health: bool = True, fix: bool = False,
          events: Events | None = None, interrupt: Interrupt | None = None, notify_url: str | None = None,
          clock: Callable[[], datetime] | None = None) -> DriftRun:
    """Check; with `fix`, apply the playbooks to the drifted hosts only and check every host again (not after an
    interrupt); record every assessment in the history; notify when drift appeared or cleared."""
    from .drift import history, notify
    from .drift.model import FixOutcome

    before = drift_check(loaded, env, options, state, health, clock)
    outcome = FixOutcome(before, None, None)
    drifted = before.drifted_hosts()
    if fix and drifted:
        chosen = replace(loaded, hosts=tuple(h for h in loaded.hosts if h.name in drifted))
        applied = apply(chosen, replace(options, check=False, diff=True, limit=",".join(drifted)), state, events,
                        interrupt, Why(f"remediate drift --fix: drift on {', '.join(drifted)}"))
        after = None if applied.interrupted else \
            replace(drift_check(loaded, env, options, state, health, clock), phase="after-fix")
        outcome = FixOutcome(before, applied, after)
    history.record(before, state.history)
    if outcome.after is not None:
        history.record(outcome.after, state.history)
    if not notify_url:
        return DriftRun(outcome)
    final = outcome.after or before
    change = notify.transition(history.announced(env, notify.key(notify_url), state.history), final)
    if change is None:
        return DriftRun(outcome)
    error = notify.post(notify_url, notify.payload(final, change))
    if error:
        return DriftRun(outcome, f"not sent: {error}", error)
    history.set_announced(env, notify.key(notify_url), change.current, state.history)
    return DriftRun(outcome, f"sent to {notify.masked(notify_url)} "
                             f"({'drift appeared' if change.appeared else 'drift cleared'})")


# ---- backups ------------------------------------------------------------------------------------------------------


def backups_list(loaded: Loaded, options: RunOptions, state: StateDir) -> bk.BackupsReport:
    """Per host: its backup root, run directories with dates, sizes and files, and which a rollback needs."""
    from . import backups as bk

    trail = bk.TrailView.of(read_records(state.audit))
    now = time.time()
    outcomes = bk.each_host(loaded.hosts, connector(loaded.hosts, options),
                            lambda h, t: bk.list_host(h, t, trail, now), options.forks)
    return bk.BackupsReport(outcomes)


def backups_prune(loaded: Loaded, options: RunOptions, state: StateDir, older_than: float, force: bool = False,
                  why: Why = Why(), older_than_text: str = "") -> bk.BackupsReport:
    """Remove the backups older than `older_than` seconds that no rollback needs (with `force`, those too);
    options.check: only say what would go. Audited, intents before results."""
    from . import backups as bk

    trail_records = read_records(state.audit)
    verdict = verify(state.audit)
    if not verdict.ok and not force:
        raise InputError(f"the audit trail {state.audit} fails verification ({verdict.problem}); it cannot be trusted "
                         "to tell which backups a rollback needs (--force to prune anyway)")
    trail = bk.TrailView.of(trail_records)
    now = time.time()
    connect = connector(loaded.hosts, options)
    run = start_audit(loaded, state, "prune", why, continue_broken=options.force_audit_continue, options={
        "check": options.check, "force": force, "older_than": older_than_text, "limit": options.limit})
    me = Holder.me(run.run_id, "prune")

    def prune(host: Host, transport: Transport) -> bk.HostOutcome:
        # one run per host: the same locks as apply's (engine/lock.py)
        locks: list[ControllerLock | HostSideLock] = [ControllerLock(state.locks, host.name)]
        if not host.is_local:
            locks.append(HostSideLock(transport, host.name, transport.identity().address))
        taken: list[ControllerLock | HostSideLock] = []
        try:
            for lock in locks:
                lock.acquire(me, options.wait_lock, lambda message: None)
                taken.append(lock)
            return bk.prune_host(host, transport, trail, now, older_than, force, options.check, run)
        except Locked as exc:
            return bk.HostOutcome(host.name, error=str(exc))
        finally:
            for lock in reversed(taken):
                lock.release()

    outcomes = bk.each_host(loaded.hosts, connect, prune, options.forks)
    report = bk.BackupsReport(outcomes, prune=True, check=options.check, older_than=older_than)
    run.record("run_end", exit_code=int(report.exit_code()), interrupted=False, summary={
        "hosts": len(outcomes), "removed": sum(len(o.removed) for o in outcomes),
        "failed": sum(bool(o.error) for o in outcomes)})
    return report
