"""Compose-file steps: a service's `command:` edited in the file that writes it, structure-aware (comments,
order and every other byte kept: edits/composefile.py); atomic, backed up outside the project, refused if the
file changed since it was read, like every file write."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..actions.base import Action
from ..celery import commands
from ..core.errors import StepError
from ..edits import composefile, textpatch
from ..facts import compose as cf
from ..facts.base import Facts, Probe
from ..facts.files import FileFact
from .base import PlanContext
from .compose import ComposeStep, with_project_defaults
from .files import FileStep, _edit

def _text(fact: FileFact) -> str:
    try:
        return textpatch.decode(fact.data)[0]
    except textpatch.EditError as exc:
        raise StepError(f"{fact.path}: {exc.message}") from None


@dataclass(frozen=True)
class ComposeCommand(ComposeStep, FileStep):
    """Edit a service's `command:` in the compose file that writes it (the last of the project's files that
    does: `files`, else COMPOSE_FILE in the .env, else compose's default file and override): options removed (with
    their values) and options set, as celery's own parser reads the command. Nothing changes when the command
    already is so. Recreate the service afterwards (a handler) for it to take effect.

    ```yaml
    - name: the worker also consumes the queues tasks are sent to
      compose_command:
        service: celery_worker
        set: {"-Q": "celery,monitoring"}
        remove: ["-B", "--beat"]
      notify: recreate the worker
    ```
    """

    kind = "compose_command"
    service: str
    set: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    @classmethod
    def var_defaults(cls, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {**FileStep.var_defaults(variables), **with_project_defaults({}, variables)}

    def _files_probe(self) -> cf.ComposeFilesProbe:
        return cf.ComposeFilesProbe(self.project_dir or "", tuple(self.files or ()), self.backup_dir)

    def probes(self) -> tuple[Probe, ...]:
        return (*super().probes(), self._files_probe())

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        self.facts_of(facts).model.service(self.service)
        files: tuple[FileFact, ...] = facts[self._files_probe()]
        writing = [f for f in files if composefile.defines_command(_text(f), self.service)]
        if not writing:
            raise StepError(f"no compose file of {self.project_dir} writes services.{self.service}.command")
        fact = writing[-1]  # the last file that writes it wins in compose's merge

        def edit(text: str) -> str:
            argv = composefile.read_command(text, self.service) or ()
            new = commands.without(argv, *self.remove)
            for name, value in self.set.items():
                try:
                    new = commands.with_option(new, name, str(value))
                except ValueError as exc:
                    raise textpatch.EditError(f"services.{self.service}.command: {exc}") from None
            return composefile.set_command(text, self.service, new)

        return _edit(fact, edit, ctx)
