"""Checks on loaded YAML mappings: known keys (with suggestions), required keys, value types."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from ..core.errors import InputError, Location
from ..core.options import is_user_name
from .yamlio import YList, YMap


def suggest(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix when a close match exists."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def where(data: Any, key: str | None = None, fallback: Location | None = None) -> Location:
    """Best location for a key of data, or for data itself."""
    if isinstance(data, (YMap, YList)):
        return data.loc(key) if isinstance(data, YMap) else data.loc()
    return fallback or Location("<input>")


def require_map(data: Any, what: str, at: Location) -> YMap:
    """data must be a mapping."""
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a mapping, not {type(data).__name__}", where(data, fallback=at))
    if not isinstance(data, YMap):
        wrapped = YMap(data)
        wrapped.where = at
        wrapped.key_lines = {}
        return wrapped
    return data


def check_keys(data: YMap, allowed: Iterable[str], what: str, required: Iterable[str] = ()) -> None:
    """Refuse unknown keys (suggesting the closest) and missing required ones."""
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            raise InputError(f"unknown key {key!r} in {what}{suggest(key, allowed)}", data.loc(key), key)
    for key in required:
        if key not in data:
            raise InputError(f"{what} needs {key!r}", data.loc(), key)


def get_str(data: YMap, key: str, what: str, default: str | None = None, required: bool = False) -> str | None:
    """A string field (numbers are accepted and turned into text)."""
    if key not in data or data[key] is None:
        if required:
            raise InputError(f"{what} needs {key!r}", data.loc(), key)
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"{key!r} must be a string, not {type(value).__name__}", data.loc(key), key)
    return str(value)


def get_int(data: YMap, key: str, default: int, minimum: int = 0) -> int:
    """An integer field with a lower bound."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{key!r} must be an integer >= {minimum}, not {value!r}", data.loc(key), key)
    return value


def get_flag(data: YMap, key: str) -> bool | None:
    """A true/false field, None when absent."""
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InputError(f"{key!r} must be true or false, not {value!r}", data.loc(key), key)


def get_user(data: YMap, key: str, what: str) -> str | None:
    """A user name field (become_user), None when absent."""
    value = get_str(data, key, what)
    if value is not None and not is_user_name(value):
        raise InputError(f"{key!r} must be a user name, not {value!r}", data.loc(key), key)
    return value


def get_str_list(data: YMap, key: str) -> tuple[str, ...]:
    """A string or a list of strings."""
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError(f"{key!r} must be a string or a list of strings", data.loc(key), key)


def get_vars(data: YMap, key: str) -> dict[str, Any]:
    """A variables mapping (names must be identifiers)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{key!r} must be a mapping of variables", data.loc(key), key)
    for name in value:
        if not str(name).isidentifier():
            loc = value.loc(name) if isinstance(value, YMap) else data.loc(key)
            raise InputError(f"variable name {name!r} is not an identifier", loc, key)
    return dict(value)
