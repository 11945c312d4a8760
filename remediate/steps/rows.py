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

from ..facts import compose as cf
from ..actions.base import Action, ExecContext, Outcome
from ..core.errors import StepError
from .base import Facts, PlanContext, Probe
from .compose import ComposeStep, exec_action, run_query

TEMPLATE = "django_rows.py.j2"


def _script() -> str:
    from ..inputs import resources, templating

    return templating.render_file(TEMPLATE, resources.template_path(), {})


def _words(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class RowChange:
    """One row's fields before and after (JSON values as the row script prints them)."""

    pk: Any
    label: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The change as the row script and the audit trail take it."""
        return {"pk": self.pk, "label": self.label, "before": dict(self.before), "after": dict(self.after)}

    @staticmethod
    def from_json(doc: Mapping[str, Any]) -> RowChange:
        """A change back from its JSON form."""
        return RowChange(doc["pk"], str(doc.get("label", doc["pk"])), dict(doc.get("before") or {}),
                         dict(doc.get("after") or {}))

    def fields_words(self) -> str:
        """`enabled true -> false, last_run_at null -> "..."`."""
        return ", ".join(f"{k} {_words(self.before.get(k))} -> {_words(v)}" for k, v in self.after.items())


@dataclass(frozen=True)
class RowsProbe(Probe):
    """Read-only: the rows of a model a filter selects, the named fields' values, and which differ from `want`."""

    project: cf.Project
    service: str
    model: str
    filter_json: str
    fields_json: str = "[]"
    want_json: str = "{}"
    label: str = "pk"
    manage: str = "manage.py"

    def gather(self, transport: Any) -> dict[str, Any]:
        env = {"REMEDIATE_MODEL": self.model, "REMEDIATE_MODE": "read", "REMEDIATE_FILTER": self.filter_json,
               "REMEDIATE_FIELDS": self.fields_json, "REMEDIATE_SET": self.want_json, "REMEDIATE_LABEL": self.label}
        query = exec_action(cf.detect(transport), self.project, self.service, ("python", self.manage, "shell"),
                            env, _script())
        doc = run_query(transport, query, f"reading {self.model} rows in {self.service}")
        if not doc.get("ok"):
            raise StepError(f"cannot read {self.model} rows in {self.service}: {doc.get('error')}")
        return doc


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
            lines += [f"-{k}: {_words(c.before.get(k))}" for k in c.after]
            lines += [f"+{k}: {_words(v)}" for k, v in c.after.items()]
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
        query = exec_action(self.compose, self.project, self.service, ("python", self.manage, "shell"), env, _script())
        doc = run_query(ctx.transport, query, f"updating {self.model} rows in {self.service}")
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
            seen = ", ".join(f"{k} {_words(values.get(k))}" for k in c.after)
            raise StepError(f"{name} changed since that run ({seen}; the run left {c.fields_words()}); "
                            "left as it is (--force restores it anyway)")
        fields = list(dict.fromkeys([*c.after, *c.before]))
        todo.append(RowChange(c.pk, c.label, {k: values.get(k) for k in fields}, {k: c.before.get(k) for k in fields}))
    return tuple(todo)

