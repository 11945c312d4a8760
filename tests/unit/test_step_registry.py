"""The lazy step registry: its table names every step class of the package under the class's own kind, and a
lookup imports only that kind's module."""
from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import remediate.steps as steps
from remediate.steps import KINDS, REGISTRY
from remediate.steps.base import Step

ROOT = Path(__file__).resolve().parents[2]


def test_every_entry_is_the_class_of_that_kind() -> None:
    for kind in KINDS:
        assert REGISTRY[kind].kind == kind
    assert sorted(REGISTRY) == sorted(KINDS) and len(REGISTRY) == len(KINDS) and "command" in REGISTRY


def test_every_step_class_of_the_package_is_registered() -> None:
    found = {}
    for info in pkgutil.iter_modules(steps.__path__):
        module = importlib.import_module(f"remediate.steps.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Step) and cls.kind and cls.__module__ == module.__name__:
                found[cls.kind] = cls
    assert {kind: REGISTRY[kind] for kind in KINDS} == found


def test_a_lookup_imports_only_its_family() -> None:
    code = ("import json, sys; from remediate.steps import REGISTRY; REGISTRY['command']; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('remediate.steps.'))))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["remediate.steps.base", "remediate.steps.command"]
