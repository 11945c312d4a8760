"""Django model rows: one compare-and-swap update of the fields of the rows a step planned, in one transaction."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..core.changes import RowChange, words
from ..facts import compose as cf
from ..facts.django import ShellQuery, rows_script
from .base import Action, ExecContext, Outcome


@dataclass(frozen=True)
class UpdateRows(Action):
    """Set fields of rows, each only if it still holds the values read at planning time; one transaction."""

    compose: cf.Compose
    project: cf.Project
    service: str
    model: str
    changes: tuple[RowChange, ...]
    reason: str = ""
    force: bool = False
    manage: str = "manage.py"

    interruptible = False  # one transaction: let it commit or roll back, never kill it half-reported

    def _name(self, change: RowChange) -> str:
        return f"{self.model.rsplit('.', 1)[-1]} {change.label!r}"

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return "; ".join(f"{self._name(c)}: {c.fields_words()}" for c in self.changes) + why

    def diff(self, host: str) -> str:
        lines = []
        for c in self.changes:
            where = f"{host}:{self.model} {c.label!r} (pk {c.pk})"
            lines += [f"--- {where}", f"+++ {where}"]
            if self.reason:
                lines.append(f"@@ {self.reason} @@")
            lines += [f"-{k}: {words(c.before.get(k))}" for k in c.after]
            lines += [f"+{k}: {words(v)}" for k, v in c.after.items()]
        return "".join(line + "\n" for line in lines)

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        return {
            "action": self.describe(), "type": "rows", "model": self.model, "service": self.service,
            "project_dir": self.project.dir, "files": list(self.project.files), "project_name": self.project.name,
            "manage": self.manage, "reason": self.reason, "changes": [c.as_json() for c in self.changes],
        }

    def execute(self, ctx: ExecContext) -> Outcome:
        env = {"REMEDIATE_MODEL": self.model, "REMEDIATE_MODE": "write",
               "REMEDIATE_CHANGES": json.dumps([c.as_json() for c in self.changes]),
               "REMEDIATE_FORCE": "1" if self.force else ""}
        query = ShellQuery(self.compose, self.project, self.service, rows_script(), env, self.manage)
        doc = query.ask(ctx.transport, f"updating {self.model} rows in {self.service}")
        if not doc.get("ok"):
            why = "; ".join(doc.get("conflicts") or ()) or str(doc.get("error"))
            changed = " changed since they were read" if doc.get("conflicts") else ""
            return Outcome(failed=True, message=f"{self.model} rows{changed}: {why}; nothing was written")
        done = [RowChange.from_json(c) for c in doc.get("changes") or ()]
        forced = f" (forced over: {'; '.join(doc['forced'])})" if doc.get("forced") else ""
        summary = "; ".join(f"{self._name(c)}: {c.fields_words()}" for c in done) or "no field changed"
        return Outcome(message=f"saved {len(done)} {self.model} row(s): {summary}{forced}",
                       data={"rows": [c.as_json() for c in done]},
                       audit={"changes": [c.as_json() for c in done]})
