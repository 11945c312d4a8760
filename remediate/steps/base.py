"""What every step kind is: a frozen dataclass of rendered arguments that reads facts and plans actions (pure)."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..actions.base import Action
from ..core.errors import InputError, Location
from ..facts.base import Facts, Probe
from ..inputs import schema
from ..inputs.yamlio import YMap


@dataclass(frozen=True)
class PlanContext:
    """What planning may know besides facts: host, run id, variables, files changed by notifiers."""

    host: str
    run_id: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    notified_paths: tuple[str, ...] = ()
    template_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """Base of step kinds. Subclasses are frozen dataclasses whose fields are the step's arguments."""

    kind: ClassVar[str] = ""
    where: Location = field(default=Location("<step>"), kw_only=True)

    @classmethod
    def arg_fields(cls) -> dict[str, dataclasses.Field[Any]]:
        """The step's argument fields (every field but `where`)."""
        return {f.name: f for f in dataclasses.fields(cls) if f.name != "where"}

    @classmethod
    def check_args(cls, args: YMap, what: str) -> None:
        """Unknown or missing argument names are input errors (types are checked after rendering)."""
        fields = cls.arg_fields()
        required = [
            n for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        schema.check_keys(args, fields, what, required=required)

    @classmethod
    def build(cls, args: Mapping[str, Any], where: Location, what: str) -> Step:
        """A step from rendered arguments, with each value checked against its field's type."""
        hints = _hints(cls)
        values = {}
        for name, value in args.items():
            values[name] = _coerce(value, hints[name], f"{what}: {name}", where)
        return cls(**values, where=where)

    @classmethod
    def var_defaults(cls, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Argument defaults taken from host variables (e.g. a compose step's project from `compose_dir`)."""
        return {}

    def probes(self) -> tuple[Probe, ...]:
        """The facts planning needs."""
        return ()

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        """Actions that bring the host to the desired state; () when it already is."""
        raise NotImplementedError


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A step class's resolved field types (resolving them is slow and a step is built per host and attempt)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _coerce(value: Any, hint: Any, what: str, where: Location) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, what, where)
            except InputError:
                continue
        raise InputError(f"{what}: {value!r} is not of the expected type", where)
    if hint is str:
        if value is None:
            # a template whose value is none (e.g. a check-mode result that never ran) renders as ""
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"{what}: expected a string, got {type(value).__name__}", where)
        return str(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{what}: expected true or false, got {value!r}", where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{what}: expected an integer, got {value!r}", where)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{what}: expected a number, got {value!r}", where)
        return float(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise InputError(f"{what}: expected a list, got {type(value).__name__}", where)
        return tuple(_coerce(v, args[0], what, where) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, dict):
            raise InputError(f"{what}: expected a mapping, got {type(value).__name__}", where)
        return {str(k): _coerce(v, args[1], what, where) if args else v for k, v in value.items()}
    return value
