"""Everything a command reads from disk, validated before any host is contacted: the inventory, the hosts a run
selects, its playbooks against the step kinds, every variable a step uses, and the run's secrets."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.errors import InputError, Location
from ..core.options import KEY_PASSPHRASE_ENV, RunOptions
from ..core.redact import MIN_SECRET_LENGTH, Redactor, ShortSecret, redactor_for
from . import patterns, resources, schema, templating
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
    scopes += _rendered_secrets(inventory, plays, listed, options)
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


_ANNOUNCED: set[Path] = set()


def _rendered_secrets(inventory: Inventory, plays: tuple[Play, ...], listed: tuple[str, ...],
                      options: RunOptions) -> list[tuple[Location, Mapping[str, Any]]]:
    """Secret variables given as templates (`api_token: "{{ base }}-{{ inventory_hostname }}"`), rendered per host
    and play as the run will render them: their values are masked too, not only the template text. One that needs
    a registered result cannot be rendered before the run and is left as it is."""
    from ..core.redact import is_secret_name

    out: list[tuple[Location, Mapping[str, Any]]] = []
    for play in plays or (None,):
        for host in inventory.hosts:
            raw = {**(play.defaults if play else {}), **host.vars, **(play.vars if play else {})}
            names = [n for n, v in raw.items() if is_secret_name(n, listed) and templating.undeclared(v)]
            if not names:
                continue
            plain = {**options.extra_vars, "inventory_hostname": host.name, "run_id": "run"}
            lazy = templating.Lazy(raw, plain, {}, play.where if play else host.where)
            rendered: dict[str, Any] = {}
            for name in names:
                try:
                    rendered[name] = lazy[name]
                except InputError:
                    continue
            out.append((play.where if play else host.where, rendered))
    return out


def inventory_path(env: str | None, inventory: str | None = None) -> Path:
    """`-i` as given (a file, or an ENV name), else inventory/ENV.yml; an ENV that is no file here but one of the
    shipped examples is used with a line on stderr saying so (once per process), never silently."""
    if inventory and ("/" in inventory or Path(inventory).suffix in (".yml", ".yaml", ".json")):
        given = Path(inventory).expanduser()
        if not given.is_file():  # a path is that file: never a shipped example of the same name
            raise InputError(f"-i {inventory}: no such inventory file" if not given.exists()
                             else f"-i {inventory}: not a file")
        return given
    path = resources.find("inventory", inventory or env or "")
    if resources.shipped(path) and path not in _ANNOUNCED:
        _ANNOUNCED.add(path)
        print(f"remediate: using the example inventory shipped with remediate: {path}", file=sys.stderr)
    return path


def load_hosts(env: str | None, options: RunOptions, inventory: str | None = None) -> Loaded:
    """An inventory and the hosts --limit selects (all when none), for commands without playbooks."""
    inv = load_inventory(inventory_path(env, inventory))
    hosts = inv.select(options.limit or "all", "--limit", Location(inv.path))
    if options.limit and not hosts:
        raise InputError(f"--limit {options.limit!r} selects no host in {inv.path}")
    return Loaded(inv, (), (), hosts, (), secrets_of(inv, (), options))


def load(env: str, playbooks: tuple[str, ...], options: RunOptions, kinds: Kinds,
         inventory: str | None = None) -> Loaded:
    """Load and validate inventory and playbooks; InputError on anything wrong."""
    inv = load_inventory(inventory_path(env, inventory))
    paths = tuple(resources.find("playbooks", p) for p in (playbooks or ("site",)))
    plays = tuple(play for path in paths for play in load_playbook(path, kinds))
    check_tags(plays, options)
    if options.start_at_task:
        plays = start_at(plays, options.start_at_task)
    tpath = resources.template_path(paths)
    selected: dict[str, Host] = {}
    limit = set(h.name for h in inv.select(options.limit, "--limit", Location(inv.path))) if options.limit else None
    if limit is not None and not limit:
        raise InputError(f"--limit {options.limit!r} selects no host in {inv.path}")
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


def check_tags(plays: tuple[Play, ...], options: RunOptions) -> None:
    """--tags / --skip-tags must name tags some play or step has (or Ansible's special ones): a typo selects
    nothing, silently, otherwise."""
    known = {t for p in plays for t in (*p.tags, *(t for s in (*p.steps, *p.handlers) for t in s.tags))}
    for flag, asked in (("--tags", options.tags), ("--skip-tags", options.skip_tags)):
        unknown = patterns.unknown_tags(asked, known)
        if unknown:
            listed = ", ".join(sorted(known)) or "none"
            raise InputError(f"{flag}: no play or step has the tag {unknown[0]!r}"
                             f"{schema.suggest(unknown[0], known)} (the playbooks' tags: {listed})")


def start_at(plays: tuple[Play, ...], name: str) -> tuple[Play, ...]:
    """--start-at-task: the plays without the steps before the first step of that name (else fnmatch pattern)."""
    import fnmatch

    for matches in (lambda s: s.name == name, lambda s: fnmatch.fnmatchcase(s.name, name)):
        for i, play in enumerate(plays):
            for j, step in enumerate(play.steps):
                if matches(step):
                    return (*(replace(p, steps=()) for p in plays[:i]), replace(play, steps=play.steps[j:]),
                            *plays[i + 1:])
    steps = [s.name for p in plays for s in p.steps]
    raise InputError(f"--start-at-task: no step named {name!r}{schema.suggest(name, steps)}")


def check_variables(play: Play, host: Host, options: RunOptions, tpath: tuple[str, ...],
                    registered_earlier: frozenset[str] = frozenset()) -> None:
    """Every variable a step uses must be defined for the host (or registered earlier): exit 3, no contact."""
    known = set(play.defaults) | set(host.vars) | set(play.vars) | set(options.extra_vars) | MAGIC_VARS
    known |= registered_earlier
    registered = {s.register for s in (*play.steps, *play.handlers) if s.register}
    used: set[str] = set()
    for spec in (*play.steps, *play.handlers):
        used |= _check_step(spec, known | registered, host, tpath)
    if not used:  # nothing is templated: no variable is used, and Jinja2 is not needed to say so
        return
    # the variables steps use are templates too: what they use must be defined, and none may use itself
    plain = set(options.extra_vars) | MAGIC_VARS | registered_earlier | registered | templating.global_names()
    raw = {k: v for k, v in {**play.defaults, **host.vars, **play.vars}.items() if k not in plain}
    found = templating.references(raw, used, plain)
    if isinstance(found, tuple):
        name, missing = found
        at = play.where if name in play.vars or name in play.defaults else host.where
        raise InputError(f"variable {name!r}: undefined variable {missing!r} for host {host.name!r}"
                         f"{schema.suggest(missing, [*raw, *plain])}", at, name)
    if isinstance(found, list):
        at = play.where if found[0] in play.vars or found[0] in play.defaults else host.where
        raise InputError(f"variable cycle: {' -> '.join(found)} (for host {host.name!r})", at, found[0])


def _check_step(spec: StepSpec, known: set[str], host: Host, tpath: tuple[str, ...]) -> set[str]:
    used = templating.undeclared(dict(spec.args)) - ({"item"} if spec.loop is not None else set())
    used |= templating.undeclared(spec.loop) if spec.loop is not None else set()
    for expr in (spec.when, spec.until, spec.changed_when, spec.failed_when):
        if expr:
            used |= templating.undeclared(expr, is_expression=True)
    missing = sorted(used - known)
    if missing:  # Jinja2's own names (range, dict...) are defined too: looked up only here, for a template's names
        missing = sorted(set(missing) - templating.global_names())
    if missing:
        raise InputError(
            f"step {spec.name!r}: undefined variable {missing[0]!r} for host {host.name!r}", spec.where, missing[0]
        )
    if spec.kind == "template" and isinstance(spec.args.get("src"), str) and not templating.is_template(spec.args["src"]):
        _check_template(spec, spec.args["src"], known, tpath)
    return used


def _check_template(spec: StepSpec, name: str, known: set[str], tpath: tuple[str, ...]) -> None:
    import jinja2
    from jinja2 import meta

    env = templating.environment(tpath)
    try:
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        missing = sorted(meta.find_undeclared_variables(env.parse(source)) - known - templating.global_names())
    except jinja2.TemplateNotFound:
        raise InputError(f"step {spec.name!r}: template {name!r} not found in {', '.join(tpath)}", spec.where, "src") from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"template syntax error: {exc.message}", Location(exc.filename or name, exc.lineno)) from None
    if missing:
        raise InputError(f"step {spec.name!r}: template {filename} uses undefined variable {missing[0]!r}", spec.where, "src")
