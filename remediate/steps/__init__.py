"""The explicit registry of step kinds: each kind's module is imported when a playbook first uses the kind, so a run
loads only the families its playbooks have (tests/unit/test_step_registry.py pins the table to the classes)."""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from .base import Step

# kind -> (module of this package, class)
KINDS: dict[str, tuple[str, str]] = {
    "python_assignment": ("files", "PythonAssignment"),
    "python_statement": ("files", "PythonStatement"),
    "lineinfile": ("files", "LineInFile"),
    "template": ("files", "Template"),
    "restore_backup": ("files", "RestoreBackup"),
    "command": ("command", "Command"),
    "assert": ("checks", "Assert"),
    "compose_restart": ("compose", "ComposeRestart"),
    "compose_recreate": ("compose", "ComposeRecreate"),
    "compose_rebuild": ("compose", "ComposeRebuild"),
    "compose_reload": ("compose", "ComposeReload"),
    "compose_exec": ("compose", "ComposeExec"),
    "compose_logs": ("compose", "ComposeLogs"),
    "compose_service": ("compose", "ComposeService"),
    "django_query": ("compose", "DjangoQuery"),
    "django_rows": ("rows", "DjangoRows"),
    "restore_rows": ("rows", "RestoreRows"),
    "celery_task_modules": ("celery", "CeleryTaskModules"),
    "celery_registered": ("celery", "CeleryRegistered"),
    "celery_tasks_run": ("celery", "CeleryTasksRun"),
    "compose_command": ("composefile", "ComposeCommand"),
    "celery_queues": ("queues", "CeleryQueues"),
}


class Registry(Mapping[str, type[Step]]):
    """Step kinds by name, each class imported at its first lookup (imports are thread-safe and cached)."""

    def __init__(self, kinds: Mapping[str, tuple[str, str]]) -> None:
        self._kinds = kinds

    def __getitem__(self, kind: str) -> type[Step]:
        module, name = self._kinds[kind]
        cls: type[Step] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        return cls

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


REGISTRY = Registry(KINDS)
