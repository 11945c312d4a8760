"""Run a command (argv, never a shell string)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..actions.base import Action
from ..actions.commands import RunCommand
from ..facts.base import Facts, Probe
from ..facts.files import PathExists
from .base import PlanContext, Step


@dataclass(frozen=True)
class Command(Step):
    """Run argv; skipped when `creates` exists or `removes` does not; `read_only` runs in check mode too.

    ```yaml
    - name: collect static files
      command:
        argv: [python3, manage.py, collectstatic, --noinput]
        chdir: /srv/app
        creates: /srv/app/static/admin
    ```
    """

    kind = "command"
    argv: tuple[str, ...]
    chdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    creates: str | None = None
    removes: str | None = None
    read_only: bool = False
    timeout: float | None = None

    def probes(self) -> tuple[Probe, ...]:
        return tuple(PathExists(p) for p in (self.creates, self.removes) if p)

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        if self.creates and facts[PathExists(self.creates)]:
            return ()
        if self.removes and not facts[PathExists(self.removes)]:
            return ()
        return (RunCommand(self.argv, dict(self.env), self.stdin, self.chdir, self.read_only, self.timeout),)


