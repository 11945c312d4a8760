"""pyedit: module-level assignments and statements in functions, found by parsing and edited in place."""
from __future__ import annotations

import ast
from typing import Any

import pytest

from remediate.edits.pyedit import ensure_assignment, ensure_statement, render_literal
from remediate.edits.textpatch import EditError, decode, encode

SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

SETTINGS = """\
\"\"\"Django settings.\"\"\"
import os

# Celery
CELERY_TIMEZONE = "UTC"  # keep beat and the database in one zone
CELERY_BEAT_SCHEDULE_FILENAME = '/tmp/celerybeat-schedule'

TIME_ZONE = "UTC"
"""

APPS = """\
from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = 'apps.audit'

    def ready(self):
        \"\"\"Import signals when the app is ready.\"\"\"
        import apps.audit.signals  # noqa
"""


# ---------------------------------------------------------------- render_literal

@pytest.mark.parametrize("value, source", [
    ("a", "'a'"),
    ("it's", '"it\'s"'),
    ("é", "'é'"),
    ("", "''"),
    (0, "0"),
    (-3, "-3"),
    (1.5, "1.5"),
    (True, "True"),
    (False, "False"),
    (None, "None"),
    ([], "[]"),
    ([1, "a", None], "[1, 'a', None]"),
    ({}, "{}"),
    ({"a": [1, {"b": False}], 2: 3.0}, "{'a': [1, {'b': False}], 2: 3.0}"),
])
def test_render_literal(value: object, source: str) -> None:
    assert render_literal(value) == source
    assert ast.literal_eval(source) == value


class Label(str):
    def __repr__(self) -> str:
        return f"Label({str(self)!r})"


def test_render_literal_ignores_subclass_reprs() -> None:
    assert render_literal(Label("x")) == "'x'"


def recursive() -> list[object]:
    value: list[object] = []
    value.append(value)
    return value


@pytest.mark.parametrize("value, message", [
    ({1, 2}, "set has no Python literal"),
    ((1, 2), "tuple has no Python literal"),
    (object(), "object has no Python literal"),
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    ({(1,): 2}, "dict key of type tuple"),
    (recursive(), "contains itself"),
])
def test_render_literal_refuses(value: object, message: str) -> None:
    with pytest.raises(EditError, match=message):
        render_literal(value)


# ---------------------------------------------------------------- ensure_assignment

# (source, name, value, after, expected)
ASSIGNMENTS: list[tuple[str, str, Any, str | None, str]] = [
    # the seed: inserted right after the anchor
    (SETTINGS, "CELERY_BEAT_SCHEDULER", SCHEDULER, "CELERY_BEAT_SCHEDULE_FILENAME", SETTINGS.replace(
        "celerybeat-schedule'\n", f"celerybeat-schedule'\nCELERY_BEAT_SCHEDULER = '{SCHEDULER}'\n")),
    # appended at the end, with or without a final newline
    ("A = 1\n", "B", "x", None, "A = 1\nB = 'x'\n"),
    ("A = 1", "B", "x", None, "A = 1\nB = 'x'\n"),
    ("", "B", None, None, "B = None\n"),
    ("# only a comment\n", "B", [], None, "# only a comment\nB = []\n"),
    # replaced in place, keeping a trailing comment and everything else
    (SETTINGS, "CELERY_TIMEZONE", "Europe/Paris", None,
     SETTINGS.replace('"UTC"  # keep', "'Europe/Paris'  # keep")),
    ("A = 1  # why\nB = 2\n", "A", 2, None, "A = 2  # why\nB = 2\n"),
    ("A: int = 1  # typed\n", "A", 2, None, "A: int = 2  # typed\n"),
    ("A = 1; B = 2  # both\n", "B", 3, None, "A = 1; B = 3  # both\n"),
    # the last assignment is the effective one
    ("A = 1\nA = 2\n", "A", 3, None, "A = 1\nA = 3\n"),
    # non-ASCII text before the value on the same line (ast columns are UTF-8 bytes)
    ("X = 'é'; A = 'ü'  # ß\n", "A", "ok", None, "X = 'é'; A = 'ok'  # ß\n"),
    ("A = {'Zürich': 1, 'k': 'ä'}  # c\n", "A", {"k": "v"}, None, "A = {'k': 'v'}  # c\n"),
    # multi-line values are replaced whole
    ("A = [\n    'a',  # first\n    'b',\n]  # end\nB = 1\n", "A", ["c"], None, "A = ['c']  # end\nB = 1\n"),
    ("A = (\n    'a'\n    'b'\n)\n", "A", "c", None, "A = (\n    'c'\n)\n"),
    ("A = 'a' \\\n    'b'\n", "A", "c", None, "A = 'c'\n"),
    # type differences are changes
    ("DEBUG = 1\n", "DEBUG", True, None, "DEBUG = True\n"),
    ("DEBUG = True\n", "DEBUG", 1, None, "DEBUG = 1\n"),
    ("N = 1.0\n", "N", 1, None, "N = 1\n"),
    ("L = ('a',)\n", "L", ["a"], None, "L = ['a']\n"),
    ("D = {'a': 1}\n", "D", {"a": True}, None, "D = {'a': True}\n"),
    ("N = None\n", "N", "None", None, "N = 'None'\n"),
    # a value that is not a literal is replaced
    ("A = os.environ.get('A', 'x')  # env\n", "A", "x", None, "A = 'x'  # env\n"),
    # lists, dicts, bools, ints, None
    ("A = 0\n", "A", [1, [2, None]], None, "A = [1, [2, None]]\n"),
    ("A = 0\n", "A", {"x": {"y": [False]}}, None, "A = {'x': {'y': [False]}}\n"),
    ("A = 0\n", "A", None, None, "A = None\n"),
    ("A = 0\n", "A", -7, None, "A = -7\n"),
    # a multi-line anchor: inserted after its last line
    ("A = [\n    1,\n]  # done\nZ = 0\n", "B", 2, "A", "A = [\n    1,\n]  # done\nB = 2\nZ = 0\n"),
    ("A = dict(\n    x=1,\n)", "B", 2, "A", "A = dict(\n    x=1,\n)\nB = 2\n"),
    # the last assignment to the anchor, annotated and augmented ones included
    ("A = 1\nx = 0\nA += 1\ny = 0\n", "B", 2, "A", "A = 1\nx = 0\nA += 1\nB = 2\ny = 0\n"),
    ("A: int = 1\n", "B", 2, "A", "A: int = 1\nB = 2\n"),
    # after is only for insertion: an existing assignment is edited where it is
    ("B = 1\nA = 0\n", "B", 2, "A", "B = 2\nA = 0\n"),
    # assignments only inside if/try are not module-level: a plain one is appended and takes effect
    ("if DEBUG:\n    A = 1\n", "A", 2, None, "if DEBUG:\n    A = 1\nA = 2\n"),
    ("try:\n    A = 1\nexcept Exception:\n    pass\n", "A", 1, None,
     "try:\n    A = 1\nexcept Exception:\n    pass\nA = 1\n"),
    # a later non-plain binding wins over the plain one: a new plain assignment goes last
    ("A = [1]\nA += [2]\n", "A", [1, 2], None, "A = [1]\nA += [2]\nA = [1, 2]\n"),
    ("from base import A\n", "A", 1, None, "from base import A\nA = 1\n"),
    # comments elsewhere are kept
    ("# head\nA = 1  # a\n# tail\n", "B", 2, "A", "# head\nA = 1  # a\nB = 2\n# tail\n"),
]


@pytest.mark.parametrize("source, name, value, after, expected", ASSIGNMENTS)
def test_ensure_assignment_changes(source: str, name: str, value: Any, after: str | None, expected: str) -> None:
    assert ensure_assignment(source, name, value, after=after) == expected


@pytest.mark.parametrize("source, name, value, after, expected", ASSIGNMENTS)
def test_ensure_assignment_is_idempotent(
    source: str, name: str, value: Any, after: str | None, expected: str
) -> None:
    once = ensure_assignment(source, name, value, after=after)
    assert ensure_assignment(once, name, value, after=after) == once


@pytest.mark.parametrize("source, name, value", [
    ('A = "x"\n', "A", "x"),                      # quotes are formatting, not meaning
    ("A = 'x'  # c\n", "A", "x"),
    ("A = [\n    'a',\n    'b',\n]\n", "A", ["a", "b"]),
    ("A = {'b': 2, 'a': 1}\n", "A", {"a": 1, "b": 2}),
    ("A = True\n", "A", True),
    ("A = 1\n", "A", 1),
    ("A = None\n", "A", None),
    ("A = -2.5\n", "A", -2.5),
    ("A: str = 'x'\n", "A", "x"),
    ("A = 0\nA = 'x'\n", "A", "x"),
    ("A = 'é'  # ü\n", "A", "é"),
    ("if X:\n    pass\nA = 1\n", "A", 1),
])
def test_ensure_assignment_leaves_equal_values_alone(source: str, name: str, value: Any) -> None:
    assert ensure_assignment(source, name, value) == source
    assert ensure_assignment(source, name, value, after="MISSING") == source


@pytest.mark.parametrize("source, name, value, after, message, line", [
    ("A = 1\n", "B", 2, "C", "anchor assignment C not found", None),
    ("if X:\n    C = 1\n", "B", 2, "C", "anchor assignment C not found", None),
    ("def C():\n    pass\n", "B", 2, "C", "anchor assignment C not found", None),
    ("C = 1\nB = 1\nB += 1\n", "B", 2, "C", "B is bound again at line 3, after anchor C", 3),
    ("C = 1\nfrom x import B\n", "B", 2, "C", "bound again at line 2", 2),
    ("A = 1\nB = (\n", "B", 2, None, "does not parse as Python", 2),
    ("A = 1\n\ndef f(:\n    pass\n", "B", 2, None, "does not parse as Python", 3),
    ("A = 1\r\nB = 2\r\n", "B", 3, None, "'\\r' line endings", 1),
    ("A = 1\n", "not a name", 2, None, "is not a Python name", None),
    ("A = 1\n", "class", 2, None, "is not a Python name", None),
    ("A = 1\n", "B", 2, "A.b", "is not a Python name", None),
    ("A = 1\n", "B", {1, 2}, None, "no Python literal", None),
])
def test_ensure_assignment_refuses(
    source: str, name: str, value: Any, after: str | None, message: str, line: int | None
) -> None:
    with pytest.raises(EditError) as info:
        ensure_assignment(source, name, value, after=after)
    assert message in info.value.message
    assert info.value.line == line


@pytest.mark.parametrize("data, after, expected", [
    (b"A = 1\r\nB = 'x'  # c\r\nC = 3\r\n", None, b"A = 1\r\nB = 'new'  # c\r\nC = 3\r\n"),
    (b"A = 1\r\nB = 'x'", None, b"A = 1\r\nB = 'new'"),
    (b"\xef\xbb\xbfA = 1\nC = 2\n", "A", b"\xef\xbb\xbfA = 1\nB = 'new'\nC = 2\n"),
    (b"\xef\xbb\xbfA = 1\r\nC = 2", "C", b"\xef\xbb\xbfA = 1\r\nC = 2\r\nB = 'new'"),
    (b"\xef\xbb\xbfA = 1\r\nB = [\r\n    1,\r\n]\r\n", None, b"\xef\xbb\xbfA = 1\r\nB = 'new'\r\n"),
    ("T = 'é'\r\nA = 1".encode(), None, "T = 'é'\r\nA = 1\r\nB = 'new'".encode()),
    ("X = 'ü'; B = 1  # é\r\n".encode(), None, "X = 'ü'; B = 'new'  # é\r\n".encode()),
])
def test_assignment_through_decode_and_encode_keeps_the_format(data: bytes, after: str | None, expected: bytes) -> None:
    text, fmt = decode(data)
    result = encode(ensure_assignment(text, "B", "new", after=after), fmt)
    assert result == expected
    assert encode(ensure_assignment(decode(result)[0], "B", "new", after=after), fmt) == result


def test_seed_settings_second_run_is_unchanged() -> None:
    once = ensure_assignment(SETTINGS, "CELERY_BEAT_SCHEDULER", SCHEDULER, after="CELERY_BEAT_SCHEDULE_FILENAME")
    assert once.count("CELERY_BEAT_SCHEDULER =") == 1
    assert once.splitlines()[6] == f"CELERY_BEAT_SCHEDULER = '{SCHEDULER}'"
    assert ensure_assignment(once, "CELERY_BEAT_SCHEDULER", SCHEDULER, after="CELERY_BEAT_SCHEDULE_FILENAME") == once


# ---------------------------------------------------------------- ensure_statement

INTEGRITY = "import apps.audit.integrity_tasks  # noqa"

# (source, function, statement, module, expected)
STATEMENTS: list[tuple[str, str, str, str | None, str]] = [
    # the seed: after the signals import, comment kept
    (APPS, "AuditConfig.ready", INTEGRITY, None, APPS + "        import apps.audit.integrity_tasks  # noqa\n"),
    # a method is created at the end of the class, after a blank line
    ("class C(AppConfig):\n    name = 'x'\n", "C.ready", "import a.b", None,
     "class C(AppConfig):\n    name = 'x'\n\n    def ready(self):\n        import a.b\n"),
    ("class C:\n  x = 1\n  def f(self):\n    pass\nZ = 1\n", "C.g", "y = 2", None,
     "class C:\n  x = 1\n  def f(self):\n    pass\n\n  def g(self):\n    y = 2\nZ = 1\n"),
    ("class C:\n\tx = 1\n", "C.ready", "if a:\n    b()", None,
     "class C:\n\tx = 1\n\n\tdef ready(self):\n\t\tif a:\n\t\t    b()\n"),
    ("class C: x = 1\n", "C.ready", "y()", None, "class C:\n    x = 1\n\n    def ready(self):\n        y()\n"),
    # a body of only pass (and a docstring) has the pass replaced
    ("class C:\n    def ready(self):\n        pass\n", "C.ready", "x()", None,
     "class C:\n    def ready(self):\n        x()\n"),
    ("def f():\n    \"\"\"Doc.\"\"\"\n    pass  # later\n", "f", "x()", None,
     "def f():\n    \"\"\"Doc.\"\"\"\n    x()  # later\n"),
    ("def f():\n    ...\n", "f", "x()", None, "def f():\n    x()\n"),
    ("def f(): pass\n", "f", "x()", None, "def f():\n    x()\n"),
    ("def f(): a()  # c\n", "f", "x()", None, "def f():\n    a()  # c\n    x()\n"),
    ("def f():\n    \"\"\"Doc only.\"\"\"\n", "f", "x()", None, "def f():\n    \"\"\"Doc only.\"\"\"\n    x()\n"),
    # a multi-line statement is re-indented line by line (a multi-line string keeps its content)
    ("def f():\n    a()\n", "f", "try:\n    import x\nexcept ImportError:\n    pass", None,
     "def f():\n    a()\n    try:\n        import x\n    except ImportError:\n        pass\n"),
    ("def f():\n    a()\n", "f", "    if a:\n        b()\n", None, "def f():\n    a()\n    if a:\n        b()\n"),
    ("def f():\n    a()\n", "f", "s = '''x\n  y'''", None, "def f():\n    a()\n    s = '''x\n  y'''\n"),
    ("def f():\n    pass\n", "f", "s = (\n    1,\n)", None, "def f():\n    s = (\n        1,\n    )\n"),
    # the body's last statement is compound: insertion goes after all of it, at the body's indentation
    ("def f():\n    if a:\n        b()\n    # tail\n\nZ = 1\n", "f", "c()", None,
     "def f():\n    if a:\n        b()\n    c()\n    # tail\n\nZ = 1\n"),
    # async functions, decorators, non-ASCII on the lines around
    ("@dec\nasync def f():\n    a = 'é'  # ü\n", "f", "await g()", None,
     "@dec\nasync def f():\n    a = 'é'  # ü\n    await g()\n"),
    # different meaning is not a match: other module, other alias target, other call
    ("def f():\n    import a.b\n", "f", "import a.c", None, "def f():\n    import a.b\n    import a.c\n"),
    ("def f():\n    from a import b\n", "f", "import a", None, "def f():\n    from a import b\n    import a\n"),
    ("def f():\n    from . import c\n", "f", "import p.c", None, "def f():\n    from . import c\n    import p.c\n"),
    ("def f():\n    x(1)\n", "f", "x(2)", None, "def f():\n    x(1)\n    x(2)\n"),
    # a nested function's statements are not the function's own
    ("def f():\n    def g():\n        x()\n", "f", "x()", None, "def f():\n    def g():\n        x()\n    x()\n"),
    # the last definition is the effective one
    ("def f():\n    x()\n\ndef f():\n    y()\n", "f", "x()", None, "def f():\n    x()\n\ndef f():\n    y()\n    x()\n"),
]


@pytest.mark.parametrize("source, function, statement, module, expected", STATEMENTS)
def test_ensure_statement_changes(
    source: str, function: str, statement: str, module: str | None, expected: str
) -> None:
    assert ensure_statement(source, function, statement, module=module) == expected


@pytest.mark.parametrize("source, function, statement, module, expected", STATEMENTS)
def test_ensure_statement_is_idempotent(
    source: str, function: str, statement: str, module: str | None, expected: str
) -> None:
    once = ensure_statement(source, function, statement, module=module)
    assert ensure_statement(once, function, statement, module=module) == once


def in_ready(*body: str) -> str:
    return "class AuditConfig(AppConfig):\n    def ready(self):\n" + "".join(f"        {b}\n" for b in body)


@pytest.mark.parametrize("source, statement, module", [
    (APPS, "import apps.audit.signals", None),
    (APPS, "import apps.audit.signals  # noqa: F401", None),
    (APPS, "import   apps.audit.signals", None),
    (in_ready("import apps.audit.integrity_tasks"), INTEGRITY, None),
    (in_ready("import apps.audit.integrity_tasks as tasks  # noqa"), INTEGRITY, None),
    (in_ready("from apps.audit import integrity_tasks"), INTEGRITY, None),
    (in_ready("from apps.audit import signals, integrity_tasks"), INTEGRITY, None),
    (in_ready("import os, apps.audit.integrity_tasks"), INTEGRITY, None),
    (in_ready("from . import integrity_tasks  # noqa"), INTEGRITY, "apps.audit.apps"),
    (in_ready("from .. import audit"), "import apps.audit", "apps.audit.apps"),
    (in_ready("from .sub import x"), "from apps.audit.sub import x", "apps.audit.apps"),
    (in_ready("from . import integrity_tasks"), "from . import integrity_tasks", None),
    (in_ready("import apps.audit.integrity_tasks"), "from . import integrity_tasks", "apps.audit.apps"),
    (in_ready("try:", "    import apps.audit.integrity_tasks", "except ImportError:", "    pass"), INTEGRITY, None),
    (in_ready("try:", "    pass", "except ImportError:", "    from apps.audit import integrity_tasks"),
     INTEGRITY, None),
    (in_ready("if True:", "    x = 1", "else:", "    with lock:", "        import apps.audit.integrity_tasks"),
     INTEGRITY, None),
    (in_ready("try:", "    import a", "except ImportError:", "    pass"),
     "try:\n    import a\nexcept ImportError:  # x\n    pass", None),
    (in_ready("register(tasks, retries=3)  # why"), "register(tasks, retries=3)", None),
    (in_ready("x = {'a': 1}"), 'x = {"a": 1}', None),
    (in_ready("from x import a, b"), "from x import b, a", None),
])
def test_ensure_statement_finds_equivalents(source: str, statement: str, module: str | None) -> None:
    assert ensure_statement(source, "AuditConfig.ready", statement, module=module) == source


@pytest.mark.parametrize("source, function, statement, module, message, line", [
    (APPS, "Missing.ready", INTEGRITY, None, "class Missing not found", None),
    ("if X:\n    class C:\n        pass\n", "C.ready", "x()", None, "class C not found", None),
    (APPS, "ready", INTEGRITY, None, "function ready not found", None),
    ("class C:\n    def f(self):\n        pass\n", "f", "x()", None, "function f not found", None),
    (APPS, "a.b.c", INTEGRITY, None, "'name' or 'Class.method'", None),
    (APPS, "AuditConfig.", INTEGRITY, None, "'name' or 'Class.method'", None),
    (APPS, "AuditConfig.ready", INTEGRITY, "apps..audit", "not a dotted Python name", None),
    (APPS, "AuditConfig.ready", "import (", None, "does not parse", None),
    (APPS, "AuditConfig.ready", "import a\nimport b", None, "exactly one statement, not 2", None),
    (APPS, "AuditConfig.ready", "  # only a comment\n", None, "exactly one statement, not 0", None),
    (APPS, "AuditConfig.ready", "   \n", None, "empty", None),
    ("class C:\n    def ready(self):\n        x = (\n", "C.ready", "y()", None, "does not parse as Python", 3),
    ("import os\n\n\nclass C:\n  def f(self):\n        pass\n   x = 1\n", "C.f", "y()", None,
     "does not parse as Python", 7),
])
def test_ensure_statement_refuses(
    source: str, function: str, statement: str, module: str | None, message: str, line: int | None
) -> None:
    with pytest.raises(EditError) as info:
        ensure_statement(source, function, statement, module=module)
    assert message in info.value.message
    assert info.value.line == line


@pytest.mark.parametrize("data, expected", [
    (APPS.replace("\n", "\r\n").encode(), (APPS + "        " + INTEGRITY + "\n").replace("\n", "\r\n").encode()),
    (b"\xef\xbb\xbf" + APPS.encode(), b"\xef\xbb\xbf" + (APPS + "        " + INTEGRITY + "\n").encode()),
    (APPS.rstrip("\n").replace("\n", "\r\n").encode(),
     (APPS + "        " + INTEGRITY).replace("\n", "\r\n").encode()),
    (("# é\n" + APPS.replace("signals", "señales")).encode(),
     ("# é\n" + APPS.replace("signals", "señales") + "        " + INTEGRITY + "\n").encode()),
])
def test_statement_through_decode_and_encode_keeps_the_format(data: bytes, expected: bytes) -> None:
    text, fmt = decode(data)
    result = encode(ensure_statement(text, "AuditConfig.ready", INTEGRITY), fmt)
    assert result == expected
    assert encode(ensure_statement(decode(result)[0], "AuditConfig.ready", INTEGRITY), fmt) == result


def test_seed_apps_only_the_new_line_differs() -> None:
    once = ensure_statement(APPS, "AuditConfig.ready", INTEGRITY)
    assert once.splitlines()[:-1] == APPS.splitlines()
    assert once.splitlines()[-1] == "        import apps.audit.integrity_tasks  # noqa"
    assert ensure_statement(once, "AuditConfig.ready", INTEGRITY) == once
    assert ensure_statement(once, "AuditConfig.ready", "from apps.audit import integrity_tasks") == once


def test_edits_from_many_threads_at_once() -> None:
    """Hosts run in threads: CPython 3.11's AST construction is not thread-safe (python/cpython#106905)."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    class Garbage:
        """Cyclic garbage whose finalizer runs Python code, so a collection inside the parser can switch threads."""

        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            sum(range(50))

    source = "A = 1\nB = 2\n" + "".join(f"X{i} = {{'k': [{i}, ({i},)]}}\n" for i in range(200))

    def edit(_: int) -> str:
        for _ in range(50):
            Garbage()
        return ensure_assignment(source, "C", "x", after="B")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(edit, range(96)))
    finally:
        sys.setswitchinterval(interval)
    assert set(results) == {source.replace("B = 2\n", "B = 2\nC = 'x'\n")}


def test_the_same_edit_of_the_same_source_is_computed_once_and_keeps_the_value_type() -> None:
    """Hosts holding the same file share one computation; 1, 1.0 and True stay three edits; errors repeat."""
    from remediate.edits import pyedit

    pyedit._ensure_assignment_once.cache_clear()
    source = "A = 0\nB = 'x'\n"
    results = [pyedit.ensure_assignment(source, "A", v) for v in (1, 1, 1.0, True, "1", None)]
    assert results == ["A = 1\nB = 'x'\n", "A = 1\nB = 'x'\n", "A = 1.0\nB = 'x'\n", "A = True\nB = 'x'\n",
                       "A = '1'\nB = 'x'\n", "A = None\nB = 'x'\n"]
    assert pyedit._ensure_assignment_once.cache_info().hits == 1
    for _ in range(2):
        with pytest.raises(EditError, match="anchor assignment C not found"):
            pyedit.ensure_assignment(source, "D", 1, after="C")
    assert pyedit.ensure_assignment(source, "A", [1]) == "A = [1]\nB = 'x'\n"  # not a scalar: not kept
