"""Playbooks: YAML -> frozen plays and step specs, validated before any host is contacted."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from . import schema, templating
from ..core.errors import InputError, Location
from .yamlio import YList, YMap, load_file

STEP_KEYS = (
    "name", "when", "register", "notify", "listen", "tags", "until", "retries", "delay",
    "changed_when", "failed_when", "ignore_errors", "loop", "verify", "become", "become_user",
)
PLAY_KEYS = ("name", "hosts", "vars", "defaults", "steps", "handlers", "tags", "on_verify_failure", "secret_vars",
             "become", "become_user")
VERIFY_FAILURE_ACTIONS = ("fail", "rollback")


class StepKind(Protocol):
    """What loading needs of a step kind: to check a step's argument names (steps.REGISTRY's classes are these)."""

    def check_args(self, args: YMap, what: str) -> None:
        """Unknown or missing argument names are input errors."""


Kinds = Mapping[str, StepKind]


@dataclass(frozen=True)
class StepSpec:
    """One step as written: its kind, unrendered arguments and the generic step keys."""

    name: str
    kind: str
    args: Mapping[str, Any]
    where: Location
    when: str | None = None
    register: str | None = None
    notify: tuple[str, ...] = ()
    listen: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    until: str | None = None
    retries: int = 3
    delay: float = 5.0
    changed_when: str | None = None
    failed_when: str | None = None
    ignore_errors: bool = False
    loop: Any = None
    verify: bool = False
    become: bool | None = None  # sudo for this step (None: the play's, else the host's)
    become_user: str | None = None  # a user name or a template of one


@dataclass(frozen=True)
class Play:
    """Steps and handlers for a set of hosts, with the play's variables."""

    name: str
    hosts: str
    where: Location
    steps: tuple[StepSpec, ...]
    handlers: tuple[StepSpec, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    path: str = ""
    on_verify_failure: str = "fail"
    secret_vars: tuple[str, ...] = ()
    become: bool | None = None  # sudo for the play's steps and handlers (None: the host's)
    become_user: str | None = None


def load_playbook(path: Path, kinds: Kinds, _seen: tuple[str, ...] = ()) -> tuple[Play, ...]:
    """Load a playbook file (a play, or a list of plays and `import_playbook:` entries), each step checked against
    the step kinds it is given (api.load_playbook gives it steps.REGISTRY)."""
    key = str(path.resolve())
    if key in _seen:
        raise InputError("import_playbook loop", Location(str(path)))
    data = load_file(path)
    if isinstance(data, dict):
        data = [data]
        entries: list[Any] = data
        entry_loc = [Location(str(path), 1)]
    elif isinstance(data, YList):
        entries = data
        entry_loc = [data.loc(i) for i in range(len(data))]
    else:
        raise InputError("a playbook must be a play (mapping) or a list of plays", Location(str(path), 1))
    plays: list[Play] = []
    for entry, at in zip(entries, entry_loc):
        entry = schema.require_map(entry, "a play", at)
        if "import_playbook" in entry:
            schema.check_keys(entry, ("import_playbook",), "an import_playbook entry")
            target = schema.get_str(entry, "import_playbook", "import_playbook", required=True)
            assert target is not None
            plays.extend(load_playbook(path.parent / target, kinds, (*_seen, key)))
            continue
        plays.append(_load_play(entry, str(path), kinds))
    if not plays:
        raise InputError("the playbook has no plays", Location(str(path), 1))
    return tuple(plays)


def _load_play(data: YMap, path: str, kinds: Kinds) -> Play:
    schema.check_keys(data, PLAY_KEYS, "a play", required=("hosts", "steps"))
    name = schema.get_str(data, "name", "a play", default="") or ""
    hosts = schema.get_str(data, "hosts", "a play", required=True) or ""
    steps_data = data["steps"]
    if not isinstance(steps_data, YList):
        raise InputError("'steps' must be a list of steps", data.loc("steps"), "steps")
    handlers_data = data.get("handlers") or YList()
    if not isinstance(handlers_data, list):
        raise InputError("'handlers' must be a list of steps", data.loc("handlers"), "handlers")
    steps = tuple(_load_step(s, steps_data.loc(i), kinds) for i, s in enumerate(steps_data))
    handler_items = handlers_data if isinstance(handlers_data, YList) else YList(handlers_data)
    handlers = tuple(
        _load_step(s, handler_items.loc(i) if isinstance(handlers_data, YList) else data.loc("handlers"), kinds)
        for i, s in enumerate(handler_items)
    )
    handler_names = {h.name for h in handlers} | {n for h in handlers for n in h.listen}
    for step in (*steps, *handlers):
        for target in step.notify:
            if target not in handler_names:
                raise InputError(
                    f"step {step.name!r} notifies unknown handler {target!r}{schema.suggest(target, handler_names)}",
                    step.where, "notify",
                )
    on_failure = schema.get_str(data, "on_verify_failure", "a play", default="fail") or "fail"
    if on_failure not in VERIFY_FAILURE_ACTIONS:
        raise InputError(
            f"on_verify_failure must be one of {', '.join(VERIFY_FAILURE_ACTIONS)}, not {on_failure!r}",
            data.loc("on_verify_failure"), "on_verify_failure",
        )
    return Play(
        name=name or hosts,
        hosts=hosts,
        where=data.loc(),
        steps=steps,
        handlers=handlers,
        vars=MappingProxyType(schema.get_vars(data, "vars")),
        defaults=MappingProxyType(schema.get_vars(data, "defaults")),
        tags=schema.get_str_list(data, "tags"),
        path=path,
        on_verify_failure=on_failure,
        secret_vars=schema.get_str_list(data, "secret_vars"),
        become=schema.get_flag(data, "become"),
        become_user=_become_user(data),
    )


def _load_step(data: Any, at: Location, kinds: Kinds) -> StepSpec:
    data = schema.require_map(data, "a step", at)
    named = [k for k in data if k not in STEP_KEYS]
    if not named:
        raise InputError(f"step has no kind; known kinds: {', '.join(sorted(kinds))}", data.loc(), "kind")
    if len(named) > 1:
        unknown = [k for k in named if k not in kinds]
        bad = unknown[0] if unknown else named[1]
        hint = schema.suggest(bad, [*kinds, *STEP_KEYS])
        raise InputError(f"unknown key {bad!r} in step (one kind per step){hint}", data.loc(bad), bad)
    kind = named[0]
    if kind not in kinds:
        raise InputError(f"unknown step kind {kind!r}{schema.suggest(kind, kinds)}", data.loc(kind), kind)
    name = schema.get_str(data, "name", "a step", default=kind) or kind
    args = data[kind]
    if args is None:
        args = YMap()
        args.where, args.key_lines = data.loc(kind), {}
    args = schema.require_map(args, f"arguments of {kind}", data.loc(kind))
    kinds[kind].check_args(args, f"step {name!r} ({kind})")
    where = data.loc()
    for key in ("when", "until", "changed_when", "failed_when"):
        value = data.get(key)
        if value is not None and not isinstance(value, (str, bool)):
            raise InputError(f"{key!r} must be an expression string", data.loc(key), key)
        if isinstance(value, str):
            problem = templating.syntax_error(value, is_expression=True)
            if problem:
                raise InputError(f"step {name!r}: {key}: {problem}", data.loc(key), key)
    problem = templating.syntax_error(dict(args))
    if problem:
        raise InputError(f"step {name!r}: {problem}", data.loc(kind), kind)
    register = schema.get_str(data, "register", "a step")
    if register is not None and not register.isidentifier():
        raise InputError(f"register name {register!r} is not an identifier", data.loc("register"), "register")
    delay = data.get("delay", 5)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise InputError(f"'delay' must be a number of seconds >= 0, not {delay!r}", data.loc("delay"), "delay")
    ignore = _flag(data, "ignore_errors")
    return StepSpec(
        name=name,
        kind=kind,
        args=MappingProxyType(dict(args)),
        where=where,
        when=_expr(data.get("when")),
        register=register,
        notify=schema.get_str_list(data, "notify"),
        listen=schema.get_str_list(data, "listen"),
        tags=schema.get_str_list(data, "tags"),
        until=_expr(data.get("until")),
        retries=schema.get_int(data, "retries", 3),
        delay=float(delay),
        changed_when=_expr(data.get("changed_when")),
        failed_when=_expr(data.get("failed_when")),
        ignore_errors=ignore,
        loop=_loop(data),
        verify=_flag(data, "verify"),
        become=schema.get_flag(data, "become"),
        become_user=_become_user(data),
    )


def _become_user(data: YMap) -> str | None:
    """A user name, or a template rendered when the step runs (and checked then)."""
    value = schema.get_str(data, "become_user", "become_user")
    if value is not None and templating.is_template(value):
        problem = templating.syntax_error(value)
        if problem:
            raise InputError(f"become_user: {problem}", data.loc("become_user"), "become_user")
        return value
    return schema.get_user(data, "become_user", "become_user")


def _flag(data: YMap, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"{key!r} must be true or false", data.loc(key), key)
    return value


def _loop(data: YMap) -> Any:
    """`loop:` is a list, or a template string that renders to one."""
    value = data.get("loop")
    if value is None or isinstance(value, (str, list)):
        return value
    raise InputError("'loop' must be a list or a template that renders to a list", data.loc("loop"), "loop")


def _expr(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
