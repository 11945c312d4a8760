"""Which tasks a source tree defines, which modules nobody imports when the app loads, which the worker lacks."""
from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..edits import pyedit


def unregistered(expected: Iterable[str], registered: Iterable[str], builtins: Iterable[str] | None = None) -> list[str]:
    """Expected task names the worker does not list.

    `celery inspect registered` leaves out Celery's built-ins (celery.*: its worker's `registered` command
    has builtins=False in celery 5.4.0 through 5.7.0), so those are checked against `builtins`, the celery.*
    names beat's own app registers (the beat probe's `builtin_tasks`); without it they count as registered.
    django-celery-beat adds a `celery.backend_cleanup` row of its own once the DatabaseScheduler runs.
    """
    have = set(registered)
    known = set(builtins) if builtins is not None else None
    return [t for t in dict.fromkeys(expected) if t not in have
            and not (t.startswith("celery.") and (known is None or t in known))]


@dataclass(frozen=True)
class TaskModule:
    """A module of a Django app that defines Celery tasks but is not imported when the app loads."""

    module: str
    path: str
    app_config_file: str
    app_config_class: str
    tasks: tuple[str, ...]


def _task_names(tree: ast.Module, module: str, celery_names: set[str]) -> list[str]:
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call else deco
            is_task = (isinstance(target, ast.Name) and target.id == "shared_task") or (
                isinstance(target, ast.Attribute) and (
                    target.attr == "shared_task"
                    or (target.attr == "task" and isinstance(target.value, ast.Name) and target.value.id in celery_names)
                )
            )
            if not is_task:
                continue
            explicit = next((kw.value.value for kw in (call.keywords if call else [])
                             if kw.arg == "name" and isinstance(kw.value, ast.Constant)), None)
            names.append(str(explicit) if explicit else f"{module}.{node.name}")
    return names


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Modules imported anywhere in a tree (absolute names; relative ones resolved against `module`)."""
    package = module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join([*parts, base] if base else parts)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def find_unimported_task_modules(files: Mapping[str, str], celery_names: Iterable[str] = ("app", "celery_app")) -> tuple[TaskModule, ...]:
    """Modules defining tasks that neither autodiscovery (tasks.py) nor the app's load imports.

    `files` maps paths relative to the Django project root (e.g. apps/audit/integrity_tasks.py) to source.
    An app is a package with an apps.py defining an AppConfig subclass; loading it imports its __init__,
    models and tasks modules and whatever AppConfig.ready() imports.
    """
    names = set(celery_names)
    trees: dict[str, ast.Module] = {}
    for path, source in files.items():
        try:
            trees[path] = pyedit.parse(source)
        except SyntaxError:
            continue
    out = []
    for apps_path, tree in sorted(trees.items()):
        if posixpath.basename(apps_path) != "apps.py":
            continue
        package_dir = posixpath.dirname(apps_path)
        package = package_dir.replace("/", ".")
        config = next((n for n in tree.body if isinstance(n, ast.ClassDef)
                       and any("AppConfig" in ast.unparse(b) for b in n.bases)), None)
        if config is None:
            continue
        loaded: set[str] = set()
        ready = next((n for n in config.body if isinstance(n, ast.FunctionDef) and n.name == "ready"), None)
        if ready is not None:
            loaded |= _imports(ready, f"{package}.apps")
        for name in ("__init__", "models", "tasks"):
            path = posixpath.join(package_dir, f"{name}.py")
            if path in trees:
                module = package if name == "__init__" else f"{package}.{name}"
                loaded.add(module)
                loaded |= _imports(trees[path], f"{package}.{name}" if name != "__init__" else f"{package}.__init__")
        for path, mod_tree in sorted(trees.items()):
            if posixpath.dirname(path) != package_dir or path == apps_path:
                continue
            module = f"{package}.{posixpath.basename(path)[:-3]}"
            if module in loaded or posixpath.basename(path) in ("tasks.py", "__init__.py", "models.py"):
                continue
            tasks = _task_names(mod_tree, module, names)
            if tasks:
                out.append(TaskModule(module, path, apps_path, config.name, tuple(tasks)))
    return tuple(out)


def defined_tasks(files: Mapping[str, str], celery_names: Iterable[str] = ("app", "celery_app")) -> tuple[str, ...]:
    """Every task name the source tree defines."""
    names = set(celery_names)
    out = []
    for path, source in sorted(files.items()):
        try:
            tree = pyedit.parse(source)
        except SyntaxError:
            continue
        module = path[:-3].replace("/", ".")
        out += _task_names(tree, module, names)
    return tuple(out)
