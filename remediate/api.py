"""The one entry the CLI and tests share: load, validate, plan and execute, return a RunReport."""
from __future__ import annotations


import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .inputs import resources, templating
from .core.audit import AuditError, AuditLog, RunAudit, sha256_file
from .core.errors import InputError, Location
from .engine.host import Events, HostRunner, Interrupt, NoEvents, RunOptions
from .inputs.inventory import Host, Inventory, load_inventory
from .engine.pending import PendingStore
from .inputs.playbook import Play, StepSpec, load_playbook
from .core.redact import MIN_SECRET_LENGTH, Redactor, ShortSecret, redactor_for
from .core.results import HostResult, RunReport, Status
from .transport.base import Transport

MAGIC_VARS = {"inventory_hostname", "run_id", "result"}


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class Loaded:
    """Everything read from disk and validated, before any host is contacted."""

    inventory: Inventory
    plays: tuple[Play, ...]
    playbook_paths: tuple[Path, ...]
    hosts: tuple[Host, ...]
    template_path: tuple[str, ...]
    redactor: Redactor = Redactor()


@dataclass(frozen=True)
class Why:
    """Why a run happens, as the operator says it (`--reason`, `--change-ref`)."""

    reason: str | None = None
    change_ref: str | None = None


def secrets_of(inventory: Inventory, plays: tuple[Play, ...], options: RunOptions) -> Redactor:
    """The run's redactor: values of `secret_vars` and of variables named like a password, secret, token or key."""
    listed = (*inventory.secret_vars, *(n for p in plays for n in p.secret_vars))
    scopes: list[tuple[Location, Mapping[str, Any]]] = [(h.where, h.vars) for h in inventory.hosts]
    scopes += [(p.where, m) for p in plays for m in (p.vars, p.defaults)]
    scopes.append((Location("-e"), options.extra_vars))
    redactor = Redactor()
    for where, scope in scopes:
        try:
            redactor = redactor.merged(redactor_for([scope], listed))
        except ShortSecret as exc:
            raise InputError(
                f"secret variable {exc}: its value is shorter than {MIN_SECRET_LENGTH} characters; masking it "
                "would mask unrelated text in every output (use a real secret, or drop it from secret_vars)",
                where, "secret_vars",
            ) from None
    return redactor


def inventory_path(env: str, inventory: str | None = None) -> Path:
    """`-i` as given, else inventory/ENV.yml."""
    return resources.find("inventory", inventory or env)


def load(env: str, playbooks: tuple[str, ...], options: RunOptions, inventory: str | None = None) -> Loaded:
    """Load and validate inventory and playbooks; InputError on anything wrong."""
    inv = load_inventory(inventory_path(env, inventory))
    paths = tuple(resources.find("playbooks", p) for p in (playbooks or ("site",)))
    plays = tuple(play for path in paths for play in load_playbook(path))
    tpath = resources.template_path(paths)
    selected: dict[str, Host] = {}
    limit = set(h.name for h in inv.select(options.limit, "--limit", Location(inv.path))) if options.limit else None
    for play in plays:
        for host in inv.select(play.hosts, f"play {play.name!r}: hosts", play.where):
            if limit is None or host.name in limit:
                selected[host.name] = host
    registered_before: dict[str, set[str]] = {}
    for play in plays:
        for host in inv.select(play.hosts, "hosts", play.where):
            if host.name in selected:
                # a host's registered results outlive their play (HostRunner keeps them), so later plays may use them
                earlier = registered_before.setdefault(host.name, set())
                check_variables(play, host, options, tpath, frozenset(earlier))
                earlier |= {s.register for s in (*play.steps, *play.handlers) if s.register}
    return Loaded(inv, plays, paths, tuple(selected.values()), tpath, secrets_of(inv, plays, options))


def check_variables(play: Play, host: Host, options: RunOptions, tpath: tuple[str, ...],
                    registered_earlier: frozenset[str] = frozenset()) -> None:
    """Every variable a step uses must be defined for the host (or registered earlier): exit 3, no contact."""
    known = set(play.defaults) | set(host.vars) | set(play.vars) | set(options.extra_vars) | MAGIC_VARS
    known |= registered_earlier
    known |= set(templating.environment().globals)
    registered = {s.register for s in (*play.steps, *play.handlers) if s.register}
    for spec in (*play.steps, *play.handlers):
        _check_step(spec, known | registered, host, tpath)


def _check_step(spec: StepSpec, known: set[str], host: Host, tpath: tuple[str, ...]) -> None:
    used = templating.undeclared(dict(spec.args)) - ({"item"} if spec.loop is not None else set())
    used |= templating.undeclared(spec.loop) if spec.loop is not None else set()
    for expr in (spec.when, spec.until, spec.changed_when, spec.failed_when):
        if expr:
            used |= templating.undeclared(expr, is_expression=True)
    missing = sorted(used - known)
    if missing:
        raise InputError(
            f"step {spec.name!r}: undefined variable {missing[0]!r} for host {host.name!r}", spec.where, missing[0]
        )
    if spec.kind == "template" and isinstance(spec.args.get("src"), str) and not templating.is_template(spec.args["src"]):
        _check_template(spec, spec.args["src"], known, tpath)


def _check_template(spec: StepSpec, name: str, known: set[str], tpath: tuple[str, ...]) -> None:
    import jinja2
    from jinja2 import meta

    env = templating.environment(tpath)
    try:
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        missing = sorted(meta.find_undeclared_variables(env.parse(source)) - known)
    except jinja2.TemplateNotFound:
        raise InputError(f"step {spec.name!r}: template {name!r} not found in {', '.join(tpath)}", spec.where, "src") from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"template syntax error: {exc.message}", Location(exc.filename or name, exc.lineno)) from None
    if missing:
        raise InputError(f"step {spec.name!r}: template {filename} uses undefined variable {missing[0]!r}", spec.where, "src")


def make_transport(host: Host, options: RunOptions) -> Transport:
    """The transport for a host: local, or one SSH connection."""
    if host.is_local:
        from .transport.local import LocalTransport

        return LocalTransport(host.name)
    from .transport.ssh import SSHOptions, SSHTransport

    return SSHTransport(host, SSHOptions(options.connect_timeout, options.command_timeout, options.accept_new_host_keys))


def start_audit(
    loaded: Loaded,
    options: RunOptions,
    run_id: str,
    why: Why = Why(),
    command: str | None = None,
    log: AuditLog | None = None,
    **fields: Any,
) -> RunAudit:
    """The run's first audit record (who, why, what with hashes); AuditError, before any host is contacted."""
    log = log or AuditLog.default()
    try:
        inventory = {"path": str(Path(loaded.inventory.path).resolve()), "sha256": sha256_file(loaded.inventory.path)}
        playbooks = [{"path": str(p.resolve()), "sha256": sha256_file(p)} for p in loaded.playbook_paths]
    except OSError as exc:
        raise AuditError(f"cannot hash the run's inputs for the audit trail: {exc}") from None
    return log.start(
        run_id, command or ("check" if options.check else "apply"), loaded.redactor,
        why={"reason": why.reason, "change_ref": why.change_ref},
        inventory=inventory, playbooks=playbooks, hosts=[h.name for h in loaded.hosts],
        options={"check": options.check, "limit": options.limit, "tags": list(options.tags),
                 "skip_tags": list(options.skip_tags), "extra_vars": dict(options.extra_vars)},
        **fields,
    )


def execute(
    loaded: Loaded,
    options: RunOptions,
    events: Events | None = None,
    run_id: str | None = None,
    transport_factory: Callable[[Host, RunOptions], Transport] = make_transport,
    audit: RunAudit | None = None,
    pending: PendingStore | None = None,
    interrupt: Interrupt | None = None,
    why: Why = Why(),
    mode: str | None = None,
) -> RunReport:
    """Run every selected host in parallel (at most --forks at once), each over its own transport, audited.

    Without `audit`, the run's trail is started here in the state directory; if it cannot be written,
    AuditError is raised before any host is contacted (fail closed).
    """
    run_id = audit.run_id if audit is not None else run_id or new_run_id()
    events = events or NoEvents()
    interrupt = interrupt or Interrupt()
    audit = audit or start_audit(loaded, options, run_id, why)
    pending = pending or PendingStore.default()

    def one(host: Host) -> HostResult:
        plays = tuple(
            p for p in loaded.plays
            if host.name in {h.name for h in loaded.inventory.select(p.hosts, "hosts", p.where)}
        )
        if interrupt.is_set():
            return HostResult(host.name, Status.FAILED, (), "interrupted before this host started")
        transport = transport_factory(host, options)
        try:
            return HostRunner(host, plays, transport, options, run_id, loaded.template_path, events,
                              audit=audit, pending=pending, interrupt=interrupt).run()
        finally:
            transport.close()

    forks = max(1, min(options.forks, len(loaded.hosts) or 1))
    results: list[HostResult] = []
    with ThreadPoolExecutor(max_workers=forks, thread_name_prefix="host") as pool:
        futures = [pool.submit(one, host) for host in loaded.hosts]
        while True:
            try:
                results = [f.result() for f in futures]
                break
            except KeyboardInterrupt:
                # without the CLI's signal handlers Ctrl-C lands here: stop the hosts the same way, then wait
                interrupt.trigger()
    report = RunReport(run_id, mode or ("check" if options.check else "apply"), tuple(results),
                       interrupt.is_set(), loaded.redactor)
    audit.record("run_end", exit_code=int(report.exit_code()), summary=report.summary(),
                 interrupted=report.interrupted, hosts={h.host: h.status.value for h in report.hosts})
    return report


def prepare_rollback(
    run_id: str,
    options: RunOptions,
    force: bool = False,
    log: AuditLog | None = None,
    inventory: str | None = None,
    verify: bool = True,
) -> Loaded:
    """The plays undoing run_id, from the verified trail: restore files, their handlers, the verifications."""
    from .core import audit as audit_mod
    from .engine.rollback import plan_from_records, rollback_plays

    log = log or AuditLog.default()
    verdict = audit_mod.verify(log.path)
    if not verdict.ok and not force:
        raise InputError(f"the audit trail {log.path} fails verification ({verdict.problem}); "
                         "it cannot be trusted to roll back (--force to use it anyway)")
    plan = plan_from_records(audit_mod.read_records(log.path), run_id, str(log.path))
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
    todo = tuple(p for p in rollback_plays(plan, plays, force, verify) if p.hosts in selected)
    return Loaded(inv, todo, tuple(paths), hosts, resources.template_path(tuple(paths)), secrets_of(inv, plays, options))


def rollback(
    run_id: str,
    options: RunOptions,
    force: bool = False,
    events: Events | None = None,
    why: Why = Why(),
    log: AuditLog | None = None,
    interrupt: Interrupt | None = None,
    inventory: str | None = None,
    verify: bool = True,
) -> RunReport:
    """Restore the files run_id changed (compare-and-swap), run the handlers they notified, then verifications."""
    loaded = prepare_rollback(run_id, options, force, log, inventory, verify)
    audit = start_rollback_audit(loaded, options, run_id, force, why, log)
    return execute(loaded, options, events, audit=audit, interrupt=interrupt, mode=rollback_mode(options))


def start_rollback_audit(
    loaded: Loaded, options: RunOptions, run_id: str, force: bool, why: Why = Why(), log: AuditLog | None = None
) -> RunAudit:
    """The first record of a rollback run, naming the run it undoes."""
    return start_audit(loaded, options, new_run_id(), why, command="rollback", log=log, rollback_of=run_id, force=force)


def rollback_mode(options: RunOptions) -> str:
    """The report's mode for a rollback run."""
    return "check" if options.check else "rollback"


def run(
    env: str,
    playbooks: tuple[str, ...] = (),
    options: RunOptions | None = None,
    inventory: str | None = None,
    events: Events | None = None,
) -> RunReport:
    """Load, validate and run: what `remediate apply` does."""
    options = options or RunOptions()
    loaded = load(env, playbooks, options, inventory)
    return execute(loaded, options, events)


