"""Django model rows: a planned, diffed, audited and reversible update of fields of the rows a filter selects.

Rows are read and written by templates/django_rows.py.j2 in a service's container (`manage.py shell`, values
as environment variables); writes are compare-and-swap on the values read at planning time and go through the
model's save(), so its signals run (django-celery-beat bumps PeriodicTasks there, which tells beat).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..actions.base import Action
from ..actions.rows import UpdateRows
from ..core.changes import RowChange, words
from ..core.errors import StepError
from ..facts.base import Facts, Probe
from ..facts.django import RowsProbe
from .base import PlanContext
from .compose import ComposeStep

def _json_arg(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StepError(f"{what}: not JSON: {exc}") from None


@dataclass(frozen=True)
class DjangoRows(ComposeStep):
    """Set fields of the Django model rows a filter selects: planned from the rows as they are, shown as a diff,
    audited (before/after per row), undone by `remediate rollback` (compare-and-swap). Rows are saved one by one
    through the model's save(), so its signals run; the filter is Django lookups (`name__in: [...]`).

    ```yaml
    - name: the 31-February row is disabled (beat dies on it)
      django_rows:
        service: backend
        model: django_celery_beat.PeriodicTask
        filter: {name: Send Test Email}
        set: {enabled: false}
        label: name                        # the field that names a row in diffs and the audit trail
        reason: "celery 5.4.0's beat dies on it"
    ```
    """

    kind = "django_rows"
    service: str
    model: str
    filter: Mapping[str, Any]
    set: Mapping[str, Any]
    label: str = "pk"
    reason: str = ""
    manage: str = "manage.py"

    def _probe(self) -> RowsProbe:
        if "." not in self.model:
            raise StepError(f"model must be app_label.Model, not {self.model!r}")
        if not self.set:
            raise StepError("set: no field to set")
        return RowsProbe(self.project(), self.service, self.model, _json_arg(dict(self.filter), "filter"), "[]",
                         _json_arg(dict(self.set), "set"), self.label, self.manage)

    def probes(self) -> tuple[Probe, ...]:
        return (*super().probes(), self._probe())

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        doc = facts[self._probe()]
        wanted = doc.get("set") or {}
        changes = tuple(
            RowChange(row["pk"], str(row["label"]), {k: row["values"][k] for k in row["differs"]},
                      {k: wanted[k] for k in row["differs"]})
            for row in doc.get("rows") or () if row.get("differs")
        )
        if not changes:
            return ()
        return (UpdateRows(f.compose, self.project(), self.service, self.model, changes, self.reason,
                           manage=self.manage),)


@dataclass(frozen=True)
class RestoreRows(ComposeStep):
    """Put rows back as they were before a run (`remediate rollback` writes these from the audit trail): each row
    that still holds what the run left gets its `before` values; a row someone changed since is refused and
    left alone unless `force`; a row already as it was is left alone.

    ```yaml
    - name: rows as they were before run 20261124T101500Z-1a2b3c
      restore_rows:
        service: backend
        model: django_celery_beat.PeriodicTask
        changes: [{pk: 10, label: Send Test Email, before: {enabled: true}, after: {enabled: false}}]
    ```
    """

    kind = "restore_rows"
    service: str
    model: str
    changes: tuple[Mapping[str, Any], ...]
    force: bool = False
    manage: str = "manage.py"

    def _changes(self) -> tuple[RowChange, ...]:
        try:
            return tuple(RowChange.from_json(c) for c in self.changes)
        except (KeyError, TypeError) as exc:
            raise StepError(f"changes: each needs pk, before and after ({exc})") from None

    def _probe(self) -> RowsProbe:
        changes = self._changes()
        names = sorted({k for c in changes for k in (*c.before, *c.after)})
        return RowsProbe(self.project(), self.service, self.model,
                         _json_arg({"pk__in": [c.pk for c in changes]}, "changes"), _json_arg(names, "changes"),
                         manage=self.manage)

    def probes(self) -> tuple[Probe, ...]:
        return (*super().probes(), self._probe())

    def plan(self, facts: Facts, ctx: PlanContext) -> tuple[Action, ...]:
        f = self.facts_of(facts)
        f.model.service(self.service)
        now = {str(row["pk"]): row["values"] for row in facts[self._probe()].get("rows") or ()}
        todo = restore_plan(self.model, self._changes(), now, self.force)
        if not todo:
            return ()
        return (UpdateRows(f.compose, self.project(), self.service, self.model, todo,
                           "as before the run rolled back", self.force, self.manage),)


def restore_plan(model: str, changes: Sequence[RowChange], now: Mapping[str, Mapping[str, Any]],
                 force: bool) -> tuple[RowChange, ...]:
    """The updates that put rows back (pure): from what each holds `now` (by str(pk)) to its `before`.

    A row as it was is left alone; a row holding anything but what the run left is refused (StepError) unless
    `force`; a row that is gone cannot be restored.
    """
    todo = []
    for c in changes:
        values = now.get(str(c.pk))
        name = f"{model} {c.label!r} (pk {c.pk})"
        if values is None:
            raise StepError(f"{name} is gone; nothing to restore")
        if all(values.get(k) == v for k, v in c.before.items()):
            continue
        if any(values.get(k) != v for k, v in c.after.items()) and not force:
            seen = ", ".join(f"{k} {words(values.get(k))}" for k in c.after)
            raise StepError(f"{name} changed since that run ({seen}; the run left {c.fields_words()}); "
                            "left as it is (--force restores it anyway)")
        fields = list(dict.fromkeys([*c.after, *c.before]))
        todo.append(RowChange(c.pk, c.label, {k: values.get(k) for k in fields}, {k: c.before.get(k) for k in fields}))
    return tuple(todo)

