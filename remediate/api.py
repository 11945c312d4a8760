"""The one entry the CLI and tests share: load, validate, plan and execute, return a RunReport."""
from __future__ import annotations


import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import resources, templating
from .errors import InputError, Location
from .executor import Events, HostRunner, NoEvents, RunOptions
from .inventory import Host, Inventory, load_inventory
from .playbook import Play, StepSpec, load_playbook
from .results import HostResult, RunReport, Status
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
    return Loaded(inv, plays, paths, tuple(selected.values()), tpath)


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


def execute(
    loaded: Loaded,
    options: RunOptions,
    events: Events | None = None,
    run_id: str | None = None,
    transport_factory: Callable[[Host, RunOptions], Transport] = make_transport,
) -> RunReport:
    """Run every selected host in parallel (at most --forks at once), each over its own transport."""
    run_id = run_id or new_run_id()
    events = events or NoEvents()
    stop = threading.Event()

    def one(host: Host) -> HostResult:
        plays = tuple(
            p for p in loaded.plays
            if host.name in {h.name for h in loaded.inventory.select(p.hosts, "hosts", p.where)}
        )
        transport = transport_factory(host, options)
        try:
            return HostRunner(host, plays, transport, options, run_id, loaded.template_path, events).run()
        finally:
            transport.close()

    forks = max(1, min(options.forks, len(loaded.hosts) or 1))
    interrupted = False
    results: list[HostResult] = []
    with ThreadPoolExecutor(max_workers=forks, thread_name_prefix="host") as pool:
        futures = [pool.submit(one, host) for host in loaded.hosts]
        try:
            results = [f.result() for f in futures]
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            for future in futures:
                future.cancel()
            results = [f.result() if f.done() and not f.cancelled() and f.exception() is None
                       else HostResult(h.name, Status.FAILED, (), "interrupted")
                       for f, h in zip(futures, loaded.hosts)]
    return RunReport(run_id, "check" if options.check else "apply", tuple(results), interrupted)


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


