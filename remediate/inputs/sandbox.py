"""The Jinja2 side of templating: the sandboxed environment (values sized before they are built) and the filters and
tests playbooks use. Imported only when a value is a template (inputs/templating.py): a run whose playbooks and
inventory have no `{{`, `{%` or `{#` never loads Jinja2."""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..celery import state_faults
from ..celery.beat import OUTCOMES, beat_verdicts


def _to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# The largest value or rendered result a template may make (characters, items): a template is text for a
# config file or a command, and `'a' * 4000000000` would otherwise take the controller's memory
MAX_RENDER = 16 << 20
# the largest integer a power may make, in bits (10 ** 1000000000 is minutes of CPU and a GiB)
MAX_POWER_BITS = 1 << 22
_PERCENT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?[a-zA-Z%]")
_PADDING = {"center", "ljust", "rjust", "zfill", "expandtabs"}


class Refused(jinja2.TemplateRuntimeError):
    """A template would build a value larger than the limit."""


def _refuse(size: float) -> None:
    if size > MAX_RENDER:
        raise Refused(f"refused: the result would be {int(size)} characters or items, more than the limit of "
                      f"{MAX_RENDER >> 20} MiB")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _percent(fmt: str) -> int:
    """What `fmt % args` may add beyond fmt itself: every field's width and precision."""
    return sum(int(w) if w and w != "*" else 0 for m in _PERCENT_WIDTH.finditer(fmt) for w in m.groups())


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with the operators and methods that can make huge values sized before they run."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int) and not isinstance(times, bool):
                    _refuse(_size(seq) * times)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * left.bit_length() > MAX_POWER_BITS:
                    raise Refused(f"refused: {left} ** {right} would have about {right * left.bit_length()} bits, "
                                  f"more than the limit of {MAX_POWER_BITS}")
        elif operator == "%" and isinstance(left, str):
            _refuse(len(left) + _percent(left))
        elif operator == "+":
            _refuse(_size(left) + _size(right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name in _PADDING and args and isinstance(args[0], int):
                _refuse(args[0] * (8 if name == "expandtabs" else 1) + len(owner))
            elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
                if len(args[1]) > len(args[0]):
                    _refuse(len(owner) + (owner.count(args[0]) if args[0] else len(owner) + 1)
                            * (len(args[1]) - len(args[0])))
        return super().call(__context, __obj, *args, **kwargs)


def _bounded_filter(name: str, size: Callable[..., float]) -> Callable[..., Any]:
    inner = jinja2.filters.FILTERS[name]

    @functools.wraps(inner)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _refuse(size(*args, **kwargs))
        return inner(*args, **kwargs)

    return bounded


def _width(value: Any, width: Any = 80, *_: Any, **__: Any) -> float:
    return len(str(value)) + (width if isinstance(width, int) else len(str(width)))


def _indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> float:
    text = str(value)
    return len(text) + (text.count("\n") + 1) * (width if isinstance(width, int) else len(str(width)))


def _format(value: Any, *args: Any, **kwargs: Any) -> float:
    return len(str(value)) + _percent(str(value)) + sum(len(str(a)) for a in args)


@functools.lru_cache(maxsize=8)
def environment(search_path: tuple[str, ...] = ()) -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment for a search path of template directories."""
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        loader=jinja2.FileSystemLoader(list(search_path)) if search_path else None,
    )
    env.filters["center"] = _bounded_filter("center", _width)
    env.filters["indent"] = _bounded_filter("indent", _indent)
    env.filters["format"] = _bounded_filter("format", _format)
    env.filters["to_json"] = _to_json
    env.filters["quote"] = _shell_quote
    env.filters["celery_beat_verdicts"] = _celery_beat_verdicts
    # the catalogue's faults read from the state query (celery/state_faults.py): what the playbooks act on
    env.filters["celery_unseen_rows"] = state_faults.unseen_rows_doc
    env.filters["celery_timezone_rewrites"] = state_faults.timezone_rewrites
    env.filters["celery_timezone_unexplained"] = state_faults.timezone_unexplained
    env.tests["celery_timezone_misread"] = state_faults.timezone_misread
    env.filters["celery_crontab_zones_differ"] = state_faults.crontab_zones_differ
    # Ansible's regex tests, which playbook authors expect: `x is match('^-S')`, `select('search', 'beat')`
    env.tests["match"] = _regex_test(re.match)
    env.tests["search"] = _regex_test(re.search)
    return env


def _celery_beat_verdicts(probe: Any, outcome: str | None = None) -> list[dict[str, Any]]:
    """Filter: what beat's own container says it does with each enabled row (celery_beat_probe.py.j2's JSON):
    the verdicts of one outcome, or every one but ok."""
    if outcome is not None and outcome not in OUTCOMES:
        raise jinja2.TemplateRuntimeError(f"celery_beat_verdicts: outcome must be one of {', '.join(OUTCOMES)}, "
                                          f"not {outcome!r}")
    return beat_verdicts(probe or {}, outcome)


def _regex_test(how: Callable[..., Any]) -> Callable[[Any, str], bool]:
    def test(value: Any, pattern: str) -> bool:
        try:
            return how(pattern, str(value)) is not None
        except re.error as exc:
            raise jinja2.TemplateRuntimeError(f"invalid regular expression {pattern!r}: {exc}") from None

    return test


def _shell_quote(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))
