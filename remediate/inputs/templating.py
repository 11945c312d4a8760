"""Jinja2 in a sandbox with StrictUndefined; errors carry the template (or step) and line."""
from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import InputError, Location

if TYPE_CHECKING:  # Jinja2 (inputs/sandbox.py) is imported at the first template: a plain string never needs it
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(InputError):
    """A template could not be rendered."""


def environment(search_path: tuple[str, ...] = ()) -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment for a search path of template directories (Jinja2 imported now)."""
    from . import sandbox

    return sandbox.environment(search_path)


# Jinja2's globals, known without importing it (tests/unit/test_templating_fast.py pins them to the environment's)
GLOBAL_NAMES = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})


def global_names() -> frozenset[str]:
    """The names Jinja2's environment defines for every template (range, dict, ...)."""
    return GLOBAL_NAMES


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


# The commonest template, `{{ name }}` in plain text ("{{ project_dir }}/settings.py"), is rendered without Jinja2
# when every name is a variable: the same str() Jinja2 writes for it. Anything else (filters, attributes, braces
# or a carriage return in the text, Jinja2's literals and keywords, an undefined name) goes to Jinja2.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(r"\{\{[ \t]*(" + _NAME + r")[ \t]*\}\}")
# a comparison of a variable (or its attribute) with a literal or another one, as `until: result.rc == 0`: its
# names and its syntax need no Jinja2 either (it is still evaluated by Jinja2)
_OPERAND = _NAME + r"(?:\." + _NAME + r")*|0|-?[1-9][0-9]*|'[^'\\{}]*'|\"[^\"\\{}]*\""
_COMPARISON = re.compile(r"\{\{[ \t]*(" + _OPERAND + r")[ \t]*(?:(?:==|!=|<=|>=|<|>)[ \t]*(" + _OPERAND
                         + r")[ \t]*)?\}\}")
_SHORT = 1 << 16
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None"})


@functools.lru_cache(maxsize=1024)
def _references(text: str) -> tuple[str, ...] | None:
    """A template of plain text and `{{ name }}`s only: [text, name, text, ..., text]; else None."""
    if "\r" in text:  # Jinja2 writes its own newlines for these
        return None
    parts = tuple(_REFERENCE.split(text))
    if len(parts) == 1:
        return None
    for i, part in enumerate(parts):
        if i % 2:
            if keyword.iskeyword(part) or part in _LITERALS:
                return None
        elif "{" in part or "}" in part:
            return None
    return parts


def _root(operand: str) -> set[str]:
    name = operand.split(".", 1)[0]
    return {name} if name[0].isalpha() or name[0] == "_" else set()


@functools.lru_cache(maxsize=1024)
def _simple_names(source: str) -> frozenset[str] | None:
    """The variables a simple template (plain `{{ name }}`s, or one comparison) uses; None when it is not simple."""
    parts = _references(source)
    if parts is not None:
        return frozenset(parts[1::2])
    match = _COMPARISON.fullmatch(source.strip())
    if match is None:
        return None
    names: set[str] = set()
    for operand in match.groups():
        if operand is None:
            continue
        roots = _root(operand)
        if roots & _LITERALS:
            if operand not in _LITERALS:  # `true.x`
                return None
            continue
        if any(keyword.iskeyword(part) for part in operand.split(".")[:1]):
            return None
        names |= roots
    return frozenset(names)


def _interpolated(text: str, variables: Mapping[str, Any]) -> tuple[bool, Any]:
    """(True, the value) when text is `{{ name }}`s in plain text and every name is a variable."""
    parts = _references(text)
    if parts is None or any(name not in variables for name in parts[1::2]):
        return False, None
    if len(parts) == 3 and not parts[0].strip() and not parts[2].strip():  # one expression: its own type
        return True, variables[parts[1]]
    out = []
    size = 0
    for i, part in enumerate(parts):
        piece = str(variables[part]) if i % 2 else part
        size += len(piece)
        if size > _SHORT:  # a long result goes through Jinja2, which applies the limit (sandbox.MAX_RENDER)
            return False, None
        out.append(piece)
    return True, "".join(out)


def render_string(text: str, variables: Mapping[str, Any], where: Location, what: str) -> Any:
    """Render one string; a string that is a single expression keeps its native type."""
    if not is_template(text):
        return text
    stripped = text.strip()
    with _translated(what, where, "template"):
        done, value = _interpolated(text, variables)
        if done:
            return value
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


# Jinja2's boolean literals, as `changed_when: false` gives them: what they evaluate to needs no Jinja2
_CONSTANTS = {"true": True, "True": True, "false": False, "False": False}


def _constant(source: str) -> bool:
    """Whether a template is one boolean literal (`{{ false }}`): no names, no syntax error."""
    text = source.strip()
    return text.startswith("{{") and text.endswith("}}") and text[2:-2].strip() in _CONSTANTS


def evaluate(expression: str, variables: Mapping[str, Any], where: Location, what: str) -> Any:
    """Evaluate a bare expression such as a `when:` or `until:` condition."""
    text = expression.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    with _translated(what, where, "expression"):
        return _defined(_call(_expression(text), variables))


@contextmanager
def _translated(what: str, where: Location, kind: str) -> Iterator[None]:
    """Jinja2's errors, and any error a value raises inside it, as one TemplateError naming `what` and `where`."""
    try:
        yield
    except Exception as exc:
        import jinja2  # the body compiled or ran a template: imported already

        if isinstance(exc, jinja2.UndefinedError):
            raise TemplateError(f"{what}: undefined variable: {exc.message}", where) from None
        if isinstance(exc, jinja2.TemplateSyntaxError):
            raise TemplateError(f"{what}: {kind} syntax error: {exc.message}", where) from None
        if isinstance(exc, jinja2.TemplateError):
            raise TemplateError(f"{what}: {exc}", where) from None
        # TypeError, OverflowError, MemoryError... raised inside Jinja2 by a value
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
    import jinja2

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
    if _constant(source):
        return frozenset()
    simple = _simple_names(source)
    if simple is not None:
        return simple
    import jinja2
    from jinja2 import meta

    try:
        return frozenset(meta.find_undeclared_variables(environment().parse(source)))
    except jinja2.TemplateSyntaxError:
        return frozenset()


def syntax_error(value: Any, is_expression: bool = False) -> str | None:
    """The first Jinja2 syntax error in a value's templates, if any."""
    for text in _strings(value):
        source = text
        if is_expression:
            inner = text.strip()
            if inner.startswith("{{") and inner.endswith("}}"):
                inner = inner[2:-2]
            source = "{{ " + inner + " }}"
        elif not is_template(text):
            continue
        problem = _syntax_error(source)
        if problem is not None:
            return problem
    return None


@functools.lru_cache(maxsize=1024)
def _syntax_error(source: str) -> str | None:
    if _constant(source) or _simple_names(source) is not None:
        return None
    import jinja2

    try:
        environment().parse(source)
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
    import jinja2

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
    from .sandbox import MAX_RENDER, Refused

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
