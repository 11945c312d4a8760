"""Assertions on variables and registered results (Ansible's assert)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..actions.base import Action
from ..actions.commands import Warning_
from ..core.errors import StepError
from ..facts.base import Facts
from ..inputs import templating
from .base import PlanContext, Step


@dataclass(frozen=True)
class Assert(Step):
    """Every expression in `that` must be true; with `warn: true` a false one is a warning.

    ```yaml
    - name: beat is not forced to another scheduler on its command line
      assert:
        that: ["'-S' not in beat.command and '--scheduler' not in beat.command"]
        fail_msg: "celery_beat's command forces a scheduler: {{ beat.command | join(' ') }}"
    ```
    """

    kind = "assert"
    that: tuple[str, ...]
    fail_msg: str = ""
    warn: bool = False

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        for expression in self.that:
            value: Any = templating.evaluate(expression, ctx.vars, self.where, f"assert {expression!r}")
            if not value:
                text = self.fail_msg or f"assertion failed: {expression}"
                if self.warn:
                    return (Warning_(text),)
                raise StepError(text)
        return ()
