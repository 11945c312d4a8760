"""Secret masking: the one function every rendering of output, diffs, errors and the audit trail goes through."""
from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "********"
SECRET_NAME = re.compile(r"password|passwd|secret|token|key", re.IGNORECASE)
# A value this short (a port, a flag) would mask unrelated text everywhere (run ids, line numbers):
# a name-matched one is left alone, a listed one is an input error (see api.secrets_of).
MIN_SECRET_LENGTH = 4


class ShortSecret(ValueError):
    """A listed secret too short to mask without masking unrelated text."""


def is_secret_name(name: str, listed: Iterable[str] = ()) -> bool:
    """A variable is secret when listed under `secret_vars:` or its name contains password, secret, token or key."""
    return name in set(listed) or bool(SECRET_NAME.search(name))


@dataclass(frozen=True)
class Redactor:
    """Masks known secret values in text and in JSON-like data; its repr never shows them."""

    values: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Redactor({len(self.values)} secret value(s))"

    def text(self, text: str) -> str:
        """text with every secret value, in every form it may be printed in, replaced by ********; one pass
        over the text, whatever the number of secrets."""
        if not self.values or not text:
            return text
        return self._pattern.sub(MASK, text)

    @functools.cached_property
    def _pattern(self) -> re.Pattern[str]:
        # longest first: a form that contains another is masked whole
        found = sorted({f for v in self.values for f in forms(v)}, key=lambda f: (-len(f), f))
        return re.compile("|".join(re.escape(f) for f in found))

    def data(self, value: Any) -> Any:
        """A copy of JSON-like data (dicts, lists, tuples, strings) with secrets masked in keys and values."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def merged(self, other: Redactor) -> Redactor:
        """A redactor masking both sets of values."""
        return Redactor(_ordered((*self.values, *other.values)))


NO_SECRETS = Redactor()


def forms(value: str) -> set[str]:
    """Every way a secret may be printed: raw; inside single quotes as a shell quotes it; as the body of a
    Python string literal in either quote (a repr, a settings file's value); as a JSON string's body (ASCII or
    not); URL-encoded (a path, a query, a form); HTML-escaped."""
    out = {value, value.replace("'", "'\"'\"'"), repr(value)[1:-1],
           json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
           quote(value), quote(value, safe=""), quote_plus(value), quote_plus(value, safe="/"),
           html.escape(value), html.escape(value, quote=False)}
    for q in "'\"":
        out.add(value.replace("\\", "\\\\").replace(q, "\\" + q).replace("\n", "\\n").replace("\t", "\\t")
                .replace("\r", "\\r"))
    return {f for f in out if len(f) >= MIN_SECRET_LENGTH}


def redactor_for(scopes: Iterable[Mapping[str, Any]], listed: Iterable[str] = ()) -> Redactor:
    """The redactor for variable mappings: values of listed or secret-named variables, at any nesting depth."""
    names = frozenset(listed)
    found: list[str] = []
    for scope in scopes:
        _collect(scope, names, False, found)
    return Redactor(_ordered(found))


def _collect(
    value: Any, names: frozenset[str], secret: bool, found: list[str], listed: bool = False, name: str = ""
) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            key = str(key)
            _collect(item, names, secret or is_secret_name(key, names), found, listed or key in names, name or key)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, names, secret, found, listed, name)
    elif secret and value is not None and not isinstance(value, bool):
        text = str(value)
        if len(text) >= MIN_SECRET_LENGTH:
            found.append(text)
        elif listed and text:
            raise ShortSecret(name)


def _ordered(values: Iterable[str]) -> tuple[str, ...]:
    # longest first, so a secret that contains another is masked whole
    return tuple(sorted(set(values), key=lambda v: (-len(v), v)))
