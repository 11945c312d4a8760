"""Jinja2 in a sandbox with StrictUndefined; errors carry the template (or step) and line."""
from __future__ import annotations

import functools
from contextlib import contextmanager
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..celery import state_faults
from ..celery.beat import OUTCOMES, beat_verdicts
from ..core.errors import InputError, Location


class TemplateError(InputError):
    """A template could not be rendered."""


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


def is_template(text: str) -> bool:
    """Whether a string has Jinja2 syntax at all (plain strings skip rendering)."""
    return "{{" in text or "{%" in text or "{#" in text


# Every host renders the same step arguments and conditions: compile each text once per run, not per host
# and attempt (compiling is most of the controller's CPU per step). Compiled templates are thread-safe.
@functools.lru_cache(maxsize=1024)
def _expression(text: str) -> Any:
    return environment().compile_expression(text, undefined_to_none=False)


@functools.lru_cache(maxsize=1024)
def _template(text: str) -> jinja2.Template:
    return environment().from_string(text)


def render_string(text: str, variables: Mapping[str, Any], where: Location, what: str) -> Any:
    """Render one string; a string that is a single expression keeps its native type."""
    if not is_template(text):
        return text
    stripped = text.strip()
    with _translated(what, where, "template"):
        if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
            return _defined(_call(_expression(stripped[2:-2].strip()), variables))
        return _render(_template(text), variables)


def render_value(value: Any, variables: Mapping[str, Any], where: Location, what: str) -> Any:
    """Render every string inside a YAML value (lists and maps recursively)."""
    if isinstance(value, str):
        return render_string(value, variables, where, what)
    if isinstance(value, list):
        return [render_value(v, variables, where, what) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, variables, where, f"{what}.{k}") for k, v in value.items()}
    return value


def evaluate(expression: str, variables: Mapping[str, Any], where: Location, what: str) -> Any:
    """Evaluate a bare expression such as a `when:` or `until:` condition."""
    text = expression.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    with _translated(what, where, "expression"):
        return _defined(_call(_expression(text), variables))


@contextmanager
def _translated(what: str, where: Location, kind: str) -> Iterator[None]:
    """Jinja2's errors, and any error a value raises inside it, as one TemplateError naming `what` and `where`."""
    try:
        yield
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{what}: undefined variable: {exc.message}", where) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{what}: {kind} syntax error: {exc.message}", where) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{what}: {exc}", where) from None
    except Exception as exc:  # TypeError, OverflowError, MemoryError... raised inside Jinja2 by a value
        raise TemplateError(f"{what}: {type(exc).__name__}: {exc}", where) from None


class _Scope(Mapping[str, Any]):
    """A template's variables with the environment's globals behind them, each looked up only when a name is used
    (what Jinja2's shared context allows; `render(**variables)` would read, and so render, every variable)."""

    def __init__(self, variables: Mapping[str, Any], fallback: Mapping[str, Any]) -> None:
        self.variables = variables
        self.fallback = fallback

    def __getitem__(self, name: str) -> Any:
        if name in self.variables:
            return self.variables[name]
        return self.fallback[name]

    def __contains__(self, name: object) -> bool:
        return name in self.variables or name in self.fallback

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.fallback), **dict.fromkeys(self.variables)})

    def __len__(self) -> int:
        return len(set(self.variables) | set(self.fallback))


def _call(expression: Any, variables: Mapping[str, Any]) -> Any:
    """A compiled expression's value; lazily looked-up variables when they are not a plain dict."""
    if type(variables) is dict:
        return expression(**variables)
    template: jinja2.Template = expression._template
    ctx = template.new_context(_Scope(variables, template.globals), shared=True)  # type: ignore[arg-type]
    # no handle_exception(): its traceback rewriting copies the context's variables (all of them, rendered)
    for _ in template.root_render_func(ctx):
        pass
    return ctx.vars["result"]


class Lazy(Mapping[str, Any]):
    """Variables as Ansible has them: a value given as a template is rendered when it is used, with these same
    variables (so recursively), once; a cycle is an error naming it. `plain` values (registered results, -e, magic
    variables) win over the templates and are used as they are."""

    def __init__(self, raw: Mapping[str, Any], plain: Mapping[str, Any], where: Mapping[str, Location],
                 default_where: Location = Location("<vars>")) -> None:
        self._raw = raw
        self._plain = plain
        self._where = where
        self._default = default_where
        self._cache: dict[str, Any] = {}
        self._resolving: list[str] = []

    def __getitem__(self, name: str) -> Any:
        if name in self._plain:
            return self._plain[name]
        if name in self._cache:
            return self._cache[name]
        raw = self._raw[name]  # KeyError: not a variable (Jinja2 then looks at its globals)
        if name in self._resolving:
            chain = [*self._resolving[self._resolving.index(name):], name]
            raise TemplateError(f"variable cycle: {' -> '.join(chain)}", self._where.get(chain[0], self._default))
        self._resolving.append(name)
        try:
            value = render_value(raw, self, self._where.get(name, self._default), f"variable {name!r}")
        finally:
            self._resolving.pop()
        self._cache[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._plain or name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._raw), **dict.fromkeys(self._plain)})

    def __len__(self) -> int:
        return len(set(self._raw) | set(self._plain))


def resolve(raw: Mapping[str, Any], plain: Mapping[str, Any], where: Mapping[str, Location],
            default_where: Location = Location("<vars>")) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every variable rendered (templates lazily, in the order they use each other): (values, deferred). A template
    that cannot be rendered yet (it uses a result registered later) is deferred: left out of the values, so a step
    using it too early fails naming it; `resolve(deferred, values)` again once more is registered."""
    lazy = Lazy(raw, plain, where, default_where)
    values = dict(plain)
    deferred: dict[str, Any] = {}
    for name in raw:
        if name in plain:
            continue
        try:
            values[name] = lazy[name]
        except TemplateError:
            deferred[name] = raw[name]
    return values, deferred


def references(raw: Mapping[str, Any], used: set[str], known: set[str]) -> tuple[str, str] | list[str] | None:
    """Following the variables `used` through their templates in `raw`: the first (variable, undefined name) it
    needs that neither `raw` nor `known` has, or the first cycle as a list of names (a -> b -> a); None when sound."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(name: str) -> tuple[str, str] | list[str] | None:
        if name in known or name not in raw:
            return None
        if state.get(name) == 2:
            return None
        if state.get(name) == 1:
            return [*path[path.index(name):], name]
        state[name] = 1
        path.append(name)
        for inner in sorted(undeclared(raw[name])):
            if inner not in raw and inner not in known:
                return (name, inner)
            found = visit(inner)
            if found is not None:
                return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(used):
        found = visit(name)
        if found is not None:
            return found
    return None


def _defined(value: Any) -> Any:
    # compile_expression hands back an Undefined instead of raising; raise like a rendered template would
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return value


def undeclared(value: Any, is_expression: bool = False) -> set[str]:
    """Variable names a YAML value's templates use (for checking before any host is contacted)."""
    names: set[str] = set()
    for text in _strings(value):
        if not is_expression and not is_template(text):
            continue
        source = text
        if is_expression:
            inner = text.strip()
            if inner.startswith("{{") and inner.endswith("}}"):
                inner = inner[2:-2]
            source = "{{ " + inner + " }}"
        names |= _names(source)
    return names


@functools.lru_cache(maxsize=1024)
def _names(source: str) -> frozenset[str]:
    # asked once per host for the same step texts
    try:
        return frozenset(meta.find_undeclared_variables(environment().parse(source)))
    except jinja2.TemplateSyntaxError:
        return frozenset()


def syntax_error(value: Any, is_expression: bool = False) -> str | None:
    """The first Jinja2 syntax error in a value's templates, if any."""
    env = environment()
    for text in _strings(value):
        source = text
        if is_expression:
            inner = text.strip()
            if inner.startswith("{{") and inner.endswith("}}"):
                inner = inner[2:-2]
            source = "{{ " + inner + " }}"
        elif not is_template(text):
            continue
        try:
            env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            return f"template syntax error: {exc.message}"
    return None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def render_file(name: str, search_path: tuple[str, ...], variables: Mapping[str, Any]) -> str:
    """Render a template file found on the search path; errors name template:line."""
    env = environment(search_path)
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name!r} not found in {', '.join(search_path) or '(no path)'}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}", Location(exc.filename or name, exc.lineno)) from None
    try:
        return _render(template, variables)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"undefined variable: {exc.message}", _template_location(exc, template)) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(str(exc), _template_location(exc, template)) from None
    except Exception as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}", Location(template.filename or template.name or "<template>")) from None


def _render(template: jinja2.Template, variables: Mapping[str, Any]) -> str:
    """Render, refusing a result beyond MAX_RENDER as it grows (never built whole first)."""
    parts = []
    size = 0
    if type(variables) is dict:
        generated: Iterable[str] = template.generate(**variables)
    else:  # lazily looked-up variables (a Lazy mapping): a shared context, nothing read before it is used
        generated = template.root_render_func(template.new_context(_Scope(variables, template.globals), shared=True))  # type: ignore[arg-type]
    for part in generated:
        size += len(part)
        if size > MAX_RENDER:
            raise Refused(f"refused: the rendered text is more than the limit of {MAX_RENDER >> 20} MiB")
        parts.append(part)
    return "".join(parts)


def _template_location(exc: BaseException, template: jinja2.Template) -> Location:
    filename = template.filename or template.name or "<template>"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return Location(str(Path(filename)), line)
