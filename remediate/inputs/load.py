"""Everything a command reads from disk, validated before any host is contacted: the inventory, the hosts a run
selects, its playbooks against the step kinds, every variable a step uses, and the run's secrets."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InputError, Location
from ..core.options import KEY_PASSPHRASE_ENV, RunOptions
from ..core.redact import MIN_SECRET_LENGTH, Redactor, ShortSecret, redactor_for
from . import resources, templating
from .inventory import Host, Inventory, load_inventory
from .playbook import Kinds, Play, StepSpec, load_playbook

MAGIC_VARS = {"inventory_hostname", "run_id", "result"}


@dataclass(frozen=True)
class Loaded:
    """Everything read from disk and validated, before any host is contacted."""

    inventory: Inventory
    plays: tuple[Play, ...]
    playbook_paths: tuple[Path, ...]
    hosts: tuple[Host, ...]
    template_path: tuple[str, ...]
    redactor: Redactor = Redactor()


def secrets_of(inventory: Inventory, plays: tuple[Play, ...], options: RunOptions) -> Redactor:
    """The run's redactor: values of `secret_vars` and of variables named like a password, secret, token or key."""
    listed = (*inventory.secret_vars, *(n for p in plays for n in p.secret_vars))
    scopes: list[tuple[Location, Mapping[str, Any]]] = [(h.where, h.vars) for h in inventory.hosts]
    scopes += [(p.where, m) for p in plays for m in (p.vars, p.defaults)]
    scopes.append((Location("-e"), options.extra_vars))
    # never sent anywhere it could be printed, and masked should it ever be (too short to mask: left alone)
    given = {"become_password": options.become_password,
             "ssh_key_passphrase": os.environ.get(KEY_PASSPHRASE_ENV)}
    scopes.append((Location("--ask-become-pass"),
                   {k: v for k, v in given.items() if v and len(v) >= MIN_SECRET_LENGTH}))
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


def inventory_path(env: str | None, inventory: str | None = None) -> Path:
    """`-i` as given, else inventory/ENV.yml."""
    return resources.find("inventory", inventory or env or "")


def load_hosts(env: str | None, options: RunOptions, inventory: str | None = None) -> Loaded:
    """An inventory and the hosts --limit selects (all when none), for commands without playbooks."""
    inv = load_inventory(inventory_path(env, inventory))
    hosts = inv.select(options.limit or "all", "--limit", Location(inv.path))
    return Loaded(inv, (), (), hosts, (), secrets_of(inv, (), options))


def load(env: str, playbooks: tuple[str, ...], options: RunOptions, kinds: Kinds,
         inventory: str | None = None) -> Loaded:
    """Load and validate inventory and playbooks; InputError on anything wrong."""
    inv = load_inventory(inventory_path(env, inventory))
    paths = tuple(resources.find("playbooks", p) for p in (playbooks or ("site",)))
    plays = tuple(play for path in paths for play in load_playbook(path, kinds))
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
                # a host's registered results outlive their play (the engine keeps them), so later plays may use them
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
