"""Python-aware edits found by parsing (ast), applied as minimal text splices, and checked by re-parsing.

Only statements directly in the module body count as module-level assignments: an assignment that exists
only inside a module-level `if`/`try`/`with` block is not considered, so `ensure_assignment` adds a plain
one instead (appended at the end it takes effect, since it runs last).

`ensure_statement(..., module=...)` resolves relative imports against the file's dotted module name, whose
last part is the module itself: for a package's `__init__.py` pass `pkg.__init__`, not `pkg`.
"""
from __future__ import annotations

import ast
import functools
import keyword
import math
import textwrap
import threading
from collections.abc import Iterator, Sequence

from .textpatch import EditError

__all__ = ["ensure_assignment", "ensure_statement", "parse", "render_literal"]

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_MISSING = object()
# CPython 3.11 can raise "SystemError: AST constructor recursion depth mismatch" when threads build ASTs at
# the same time (python/cpython#106905); hosts run in threads, so every parse takes this lock.
_PARSE_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    """ast.parse, safe to call from several host threads at once."""
    with _PARSE_LOCK:
        return ast.parse(source)


class _Text:
    """Source split into '\\n' lines, mapping ast positions (UTF-8 byte columns) to str offsets."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines = source.split("\n")
        self.starts: list[int] = []
        at = 0
        for line in self.lines:
            self.starts.append(at)
            at += len(line) + 1

    def offset(self, lineno: int, byte_col: int) -> int:
        line = self.lines[lineno - 1]
        # ast columns count UTF-8 bytes, so a non-ASCII character earlier on the line shifts them.
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:byte_col].decode("utf-8"))

    def indent(self, lineno: int) -> str:
        line = self.lines[lineno - 1]
        return line[: len(line) - len(line.lstrip(" \t\f"))]

    def starts_line(self, node: ast.stmt) -> bool:
        """Whether only indentation precedes `node` on its first line."""
        start = self.offset(node.lineno, node.col_offset) - self.starts[node.lineno - 1]
        return not self.lines[node.lineno - 1][:start].strip()

    def insert_after_line(self, lineno: int, block: str) -> str:
        if lineno < len(self.lines):
            at = self.starts[lineno]
            return self.source[:at] + block + self.source[at:]
        # The line is the last one and has no '\n' of its own.
        return self.source + "\n" + block


def _end(node: ast.stmt | ast.expr) -> tuple[int, int]:
    if node.end_lineno is None or node.end_col_offset is None:
        raise EditError("internal error: the parser gave no end position", node.lineno)
    return node.end_lineno, node.end_col_offset


def _parse(source: str) -> ast.Module:
    if "\r" in source:
        # Python treats '\r' as a line break but our line arithmetic would not: positions would be wrong.
        raise EditError("text has '\\r' line endings (decode it first)", source.count("\n", 0, source.index("\r")) + 1)
    try:
        return parse(source)
    except SyntaxError as exc:
        raise EditError(f"does not parse as Python: {exc.msg}", exc.lineno) from None
    except ValueError as exc:
        raise EditError(f"does not parse as Python: {exc}") from None


def _reparse(result: str) -> ast.Module:
    try:
        return parse(result)
    except (SyntaxError, ValueError) as exc:
        line = exc.lineno if isinstance(exc, SyntaxError) else None
        raise EditError(f"internal error: the edited text would not parse ({exc}); nothing changed", line) from None


def _is_name(word: str) -> bool:
    return word.isidentifier() and not keyword.iskeyword(word)


def _check_name(word: str, what: str) -> None:
    if not _is_name(word):
        raise EditError(f"{what} {word!r} is not a Python name")


def render_literal(value: object) -> str:
    """Python literal source for a YAML-ish value (str, int, float, bool, None, list, dict), strings as repr."""
    return _render(value, frozenset())


def _render(value: object, seen: frozenset[int]) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    # The base-class reprs: a str/int subclass (a template engine's markup string, an enum) may repr itself
    # as a call, which is not a literal.
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EditError(f"{value!r} has no Python literal")
        return float.__repr__(value)
    if isinstance(value, str):
        return str.__repr__(value)
    if isinstance(value, (list, dict)):
        # YAML aliases can build a structure that contains itself.
        if id(value) in seen:
            raise EditError("the value contains itself")
        inner = seen | {id(value)}
        if isinstance(value, list):
            return "[" + ", ".join(_render(item, inner) for item in value) + "]"
        items = []
        for key, item in value.items():
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise EditError(f"a dict key of type {type(key).__name__} has no Python literal")
            items.append(f"{_render(key, inner)}: {_render(item, inner)}")
        return "{" + ", ".join(items) + "}"
    raise EditError(f"a {type(value).__name__} has no Python literal (use str, int, float, bool, None, list, dict)")


def _kind(value: object) -> type:
    # bool before int: True == 1 must not count as equal.
    for kind in (bool, int, float, str, bytes, list, tuple, dict):
        if isinstance(value, kind):
            return kind
    return type(value)


def _same(a: object, b: object) -> bool:
    """Equality that also requires the same kinds, recursively (True is not 1, 1 is not 1.0, () is not [])."""
    if _kind(a) is not _kind(b):
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(
            any(_same(ka, kb) and _same(va, vb) for kb, vb in b.items()) for ka, va in a.items()
        )
    return a is b or a == b


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _names(element)
    elif isinstance(target, ast.Starred):
        yield from _names(target.value)


def _assigns(stmt: ast.stmt, name: str) -> bool:
    if isinstance(stmt, ast.Assign):
        return any(name in _names(target) for target in stmt.targets)
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        has_value = not isinstance(stmt, ast.AnnAssign) or stmt.value is not None
        return has_value and isinstance(stmt.target, ast.Name) and stmt.target.id == name
    return False


def _binds(stmt: ast.stmt, name: str) -> bool:
    """Whether a module-level statement (re)binds `name` in the module namespace."""
    if _assigns(stmt, name):
        return True
    if isinstance(stmt, ast.Import):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in stmt.names)
    if isinstance(stmt, ast.ImportFrom):
        return any((alias.asname or alias.name) == name for alias in stmt.names)
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name == name
    return False


def _plain_value(stmt: ast.stmt, name: str) -> ast.expr | None:
    """The value of `name = value` or `name: T = value`; None for any other kind of binding."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
        if isinstance(target, ast.Name) and target.id == name:
            return stmt.value
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
        return stmt.value
    return None


def _effective(tree: ast.Module, name: str) -> tuple[ast.stmt | None, ast.expr | None]:
    """The last module-level statement binding `name`, and its value when it is a plain assignment."""
    bindings = [stmt for stmt in tree.body if _binds(stmt, name)]
    if not bindings:
        return None, None
    return bindings[-1], _plain_value(bindings[-1], name)


# A fleet's hosts mostly hold the same settings file: the edit of one (source, name, value, anchor) is computed once
# per run, not once per host (a pure function; errors are not kept, so each host still raises its own). Only small
# sources and scalar values are kept, by their type too (1, 1.0 and True differ here), a few at a time.
_CACHED_SOURCE = 256 << 10
_SCALARS = (str, int, float, bool, type(None))


def ensure_assignment(source: str, name: str, value: object, *, after: str | None = None) -> str:
    """Make the last module-level `name = ...` have `value`: its value replaced in place, or a new line inserted."""
    if type(value) in _SCALARS and len(source) <= _CACHED_SOURCE:
        return _ensure_assignment_once(source, name, type(value).__name__, value, after)
    return _ensure_assignment(source, name, value, after)


@functools.lru_cache(maxsize=16)
def _ensure_assignment_once(source: str, name: str, kind: str, value: object, after: str | None) -> str:
    return _ensure_assignment(source, name, value, after)


def _ensure_assignment(source: str, name: str, value: object, after: str | None) -> str:
    _check_name(name, "name")
    if after is not None:
        _check_name(after, "anchor")
    literal = render_literal(value)
    tree = _parse(source)
    text = _Text(source)
    last, node = _effective(tree, name)

    if node is not None:
        current = _literal(node)
        if current is not _MISSING and _same(current, value):
            return source
        start = text.offset(node.lineno, node.col_offset)
        end = text.offset(*_end(node))
        result = source[:start] + literal + source[end:]
    elif after is None:
        result = source + ("\n" if source and not source.endswith("\n") else "") + f"{name} = {literal}\n"
    else:
        anchors = [stmt for stmt in tree.body if _assigns(stmt, after)]
        if not anchors:
            raise EditError(f"anchor assignment {after} not found")
        anchor_end = _end(anchors[-1])[0]
        if last is not None and last.lineno > anchor_end:
            raise EditError(
                f"{name} is bound again at line {last.lineno}, after anchor {after}: "
                "an assignment inserted after the anchor would not take effect",
                last.lineno,
            )
        result = text.insert_after_line(anchor_end, f"{name} = {literal}\n")

    _, written = _effective(_reparse(result), name)
    if written is None or not _same(_literal(written), value):
        raise EditError(f"internal error: {name} would not be {literal} after the edit; nothing changed")
    return result


def _statement_text(statement: str) -> str:
    text = textwrap.dedent(statement.replace("\r\n", "\n").replace("\r", "\n")).strip("\n").rstrip()
    if not text:
        raise EditError("the statement is empty")
    return text


def _parse_statement(text: str) -> ast.stmt:
    try:
        body = parse(text).body
    except SyntaxError as exc:
        raise EditError(f"statement {text!r} does not parse: {exc.msg}") from None
    except ValueError as exc:
        raise EditError(f"statement {text!r} does not parse: {exc}") from None
    if len(body) != 1:
        raise EditError(f"statement {text!r} must be exactly one statement, not {len(body)}")
    return body[0]


def _indented(text: str, stmt: ast.stmt, indent: str, *, first: bool = True) -> str:
    """`text` (which parses to `stmt`) with `indent` before each line, except lines inside multi-line strings."""
    verbatim: set[int] = set()
    for node in ast.walk(stmt):
        is_string = isinstance(node, ast.JoinedStr) or (
            isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))
        )
        if is_string and isinstance(node, ast.expr) and node.end_lineno is not None:
            # Indenting these would change the string; every such line is inside brackets, a string or a
            # backslash continuation, where indentation does not matter to the parser.
            verbatim.update(range(node.lineno + 1, node.end_lineno + 1))
    lines = text.split("\n")
    out = []
    for number, line in enumerate(lines, 1):
        if number in verbatim or not line.strip() or (number == 1 and not first):
            out.append(line)
        else:
            out.append(indent + line)
    return "\n".join(out)


def _nested(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a body and of the if/try/with blocks in it (not of nested functions or classes)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _nested(stmt.body)
            yield from _nested(stmt.orelse)
        elif isinstance(stmt, (ast.Try, ast.TryStar)):
            yield from _nested(stmt.body)
            for handler in stmt.handlers:
                yield from _nested(handler.body)
            yield from _nested(stmt.orelse)
            yield from _nested(stmt.finalbody)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            yield from _nested(stmt.body)


def _imported(stmt: ast.stmt, module: str | None) -> set[str]:
    """Dotted names of the modules an import statement imports (relative ones resolved against `module`)."""
    if isinstance(stmt, ast.Import):
        return {alias.name for alias in stmt.names}
    if not isinstance(stmt, ast.ImportFrom):
        return set()
    base = stmt.module or ""
    if stmt.level:
        parts = module.split(".") if module else []
        if len(parts) > stmt.level:
            base = ".".join(parts[: -stmt.level] + ([base] if base else []))
        else:
            # Unresolvable: kept relative, so it still matches the same relative import written elsewhere.
            base = "." * stmt.level + base
    joiner = "" if not base or base.endswith(".") else "."
    return {base + joiner + alias.name for alias in stmt.names if alias.name != "*"}


def _dump(stmt: ast.stmt) -> str:
    return ast.dump(stmt, include_attributes=False)


def _contains(body: Sequence[ast.stmt], wanted: ast.stmt, module: str | None) -> bool:
    """Whether `wanted` is in `body` by meaning: the same parsed statement, or imports of the same modules."""
    stmts = list(_nested(body))
    dump = _dump(wanted)
    if any(_dump(stmt) == dump for stmt in stmts):
        return True
    needed = _imported(wanted, module)
    if not needed:
        return False
    have: set[str] = set()
    for stmt in stmts:
        have |= _imported(stmt, module)
    return needed <= have


def _locate(tree: ast.Module, path: list[str]) -> tuple[ast.ClassDef | None, _Function | None]:
    """The class (for "Class.method") and the function; the last definition wins, as it does at run time."""
    if len(path) == 1:
        functions = [
            s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == path[0]
        ]
        if not functions:
            raise EditError(f"function {path[0]} not found at module level")
        return None, functions[-1]
    classes = [s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == path[0]]
    if not classes:
        raise EditError(f"class {path[0]} not found")
    methods = [
        s for s in classes[-1].body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == path[1]
    ]
    return classes[-1], (methods[-1] if methods else None)


def _unit(indent: str) -> str:
    return "\t" if indent.startswith("\t") else "    "


def _placeholder(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Pass) or (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis
    )


def _docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def ensure_statement(source: str, function: str, statement: str, *, module: str | None = None) -> str:
    """Ensure `statement` is in the body of `function` ("func" or "Class.method"), matched by meaning."""
    path = function.split(".")
    if len(path) > 2 or not all(_is_name(part) for part in path):
        raise EditError(f"function must be 'name' or 'Class.method', not {function!r}")
    if module is not None and not all(_is_name(part) for part in module.split(".")):
        raise EditError(f"module {module!r} is not a dotted Python name")
    stmt_text = _statement_text(statement)
    wanted = _parse_statement(stmt_text)

    tree = _parse(source)
    text = _Text(source)
    cls, func = _locate(tree, path)
    owner: ast.ClassDef | _Function | None = func if func is not None else cls
    if owner is not None and not text.starts_line(owner.body[0]):
        # `def f(): pass`: move the body to its own line first, so there is an indentation to insert at.
        first = owner.body[0]
        at = text.offset(first.lineno, first.col_offset)
        indent = text.indent(owner.lineno)
        source = source[:at].rstrip(" \t") + "\n" + indent + _unit(indent) + source[at:]
        tree = _reparse(source)
        text = _Text(source)
        cls, func = _locate(tree, path)

    if func is not None:
        if _contains(func.body, wanted, module):
            return source
        indent = text.indent(func.body[0].lineno)
        placeholders = [s for s in func.body if _placeholder(s)]
        only_placeholders = all(_placeholder(s) or (i == 0 and _docstring(s)) for i, s in enumerate(func.body))
        if placeholders and only_placeholders and text.starts_line(placeholders[-1]):
            spot = placeholders[-1]
            start = text.offset(spot.lineno, spot.col_offset)
            end = text.offset(*_end(spot))
            result = source[:start] + _indented(stmt_text, wanted, indent, first=False) + source[end:]
        else:
            block = _indented(stmt_text, wanted, indent) + "\n"
            result = text.insert_after_line(_end(func.body[-1])[0], block)
    elif cls is not None:
        member_indent = text.indent(cls.body[0].lineno)
        unit = member_indent[len(text.indent(cls.lineno)):] or "    "
        body = _indented(stmt_text, wanted, member_indent + unit)
        block = f"\n{member_indent}def {path[1]}(self):\n{body}\n"
        result = text.insert_after_line(_end(cls.body[-1])[0], block)
    else:
        raise EditError(f"internal error: {function} not located")

    _, written = _locate(_reparse(result), path)
    if written is None or not _contains(written.body, wanted, module):
        raise EditError(f"internal error: the statement would not be in {function} after the edit; nothing changed")
    return result
