"""The package's own import graph against its layer order: no import circle, and no import from a lower layer up
to a higher one (function-level and TYPE_CHECKING imports count too). README "How it is built" draws the same."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "remediate"

# top to bottom: a module may import its own layer and the layers below it, never one above
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),  # argv -> options -> api -> rendered report -> exit code
    ("api",),  # the real entries
    ("drift",),  # check + health, history, notifications, schedules, JUnit, HTML
    ("diagnose", "backups"),  # read-only passes and backup retention
    ("engine",),  # hosts, plays, steps, the one place a change is made
    ("steps",),  # kinds that plan from facts (pure)
    ("actions",),  # typed side effects
    ("facts",),  # read-only probes and their parsers
    ("transport",),  # how commands reach a host
    ("inputs",),  # inventory, playbooks, YAML, schema, templating, finding files
    ("celery",),  # what Celery does (pure)
    ("edits",),  # pure text and Python edits
    ("core",),  # errors, results and exit codes, options, redaction, audit trail, state
)
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path) -> Iterator[str]:
    """The package's modules a module imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "remediate")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "remediate":
                base = node.module
            else:
                continue
            submodules = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            if len(submodules) < len(node.names):  # `from pkg import name`: pkg itself; `from pkg import mod`: mod
                yield base
            yield from submodules


GRAPH = {name: {m for m in imports(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer() -> None:
    assert {layer(m) for m in MODULES if m != "remediate"} <= set(RANK)


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a module to one of a higher layer."""
    return sorted(f"{a} imports {b}" for a, targets in graph.items() if a != "remediate" for b in targets
                  if b != "remediate" and RANK[layer(b)] < RANK[layer(a)])


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every loop of imports a depth-first walk meets."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_runs_up_the_layers() -> None:
    assert upward(GRAPH) == []


def test_nothing_in_the_package_imports_the_cli() -> None:
    assert sorted(a for a, targets in GRAPH.items() for b in targets
                  if layer(b) == "cli" and layer(a) not in ("cli", "__main__")) == []


def test_no_import_circle() -> None:
    assert circles(GRAPH) == []


def test_the_checks_can_fail() -> None:
    """An upward import and a circle are seen when there is one, and the walk resolves relative imports."""
    assert upward({"remediate.core.audit": {"remediate.cli.run"}}) == ["remediate.core.audit imports remediate.cli.run"]
    assert circles({"remediate.a": {"remediate.b"}, "remediate.b": {"remediate.a"}}) == [
        ["remediate.a", "remediate.b", "remediate.a"]]
    assert "remediate.api" in GRAPH["remediate.cli.run"], "the CLI's import of the api is seen"
    assert "remediate.facts.base" in GRAPH["remediate.steps.base"], "a relative `from ..x import y` is resolved"


def test_the_readme_draws_this_house() -> None:
    """README's "How it is built" names every layer, and every module of the folders it lists module by module."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("## How it is built"):readme.index("## Tests")]
    for names in LAYERS[1:]:
        for name in names:
            assert f"`{name}/`" in section or f"`{name}.py`" in section, name
    for folder in ("cli", "engine", "facts", "actions", "drift", "core", "celery", "inputs", "edits"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            if path.name != "__init__.py":
                assert f"`{path.stem}`" in section or f"`{path.name}`" in section, f"{folder}/{path.name}"
