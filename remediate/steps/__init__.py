"""The explicit registry of step kinds."""
from __future__ import annotations

from .base import Step
from .celery import CeleryRegistered, CeleryTaskModules, CeleryTasksRun
from .checks import Assert
from .command import Command
from .composefile import ComposeCommand
from .compose import ComposeExec, ComposeLogs, ComposeRebuild, ComposeRecreate, ComposeReload, ComposeRestart, ComposeService, DjangoQuery
from .queues import CeleryQueues
from .files import LineInFile, PythonAssignment, PythonStatement, RestoreBackup, Template
from .rows import DjangoRows, RestoreRows

REGISTRY: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (
        PythonAssignment, PythonStatement, LineInFile, Template, RestoreBackup, Command, Assert,
        ComposeRestart, ComposeRecreate, ComposeRebuild, ComposeReload, ComposeExec, ComposeLogs, ComposeService,
        DjangoQuery, DjangoRows, RestoreRows, CeleryTaskModules, CeleryRegistered, CeleryTasksRun,
        ComposeCommand, CeleryQueues,
    )
}
