"""What a run changed on a host, as typed values: the files it wrote and the rows it updated.

The audit trail's `result` records are their one source: `from_record` reads them back for `remediate rollback`
and `backups`, and the engine keeps the same values as it makes each change (on_verify_failure: rollback).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import Location

AUDIT = Location("<audit>")


def words(value: Any) -> str:
    """A field's value as the row script prints it (JSON)."""
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
        return ", ".join(f"{k} {words(self.before.get(k))} -> {words(v)}" for k, v in self.after.items())


@dataclass(frozen=True)
class FileChange:
    """A file a run changed on a host: its original (in `backup`, or absent) and what the run left."""

    host: str
    path: str
    backup: str | None
    original_sha256: str
    after_sha256: str
    notify: tuple[str, ...]
    playbook: str
    play: str
    where: Location = AUDIT
    mode: str = ""  # the original's mode and owner (uid:gid), for a restore that creates the file again
    owner: str = ""
    become: str | None = None  # the user it was changed as through sudo (None: the SSH user): restored as them


@dataclass(frozen=True)
class RowsChange:
    """Django model rows a run changed through one step (django_rows): each row's fields before and after."""

    host: str
    model: str
    service: str
    project_dir: str
    files: tuple[str, ...]
    project_name: str | None
    manage: str
    rows: tuple[RowChange, ...]
    playbook: str
    play: str
    where: Location = AUDIT
    become: str | None = None


Change = FileChange | RowsChange


def from_record(record: Mapping[str, Any], where: Location = AUDIT) -> Change | None:
    """The change an ok `result` record (or the fields the engine records for it) names; None for other records."""
    at = Location(where.path, record["seq"]) if "seq" in record else where
    kind = record.get("type")
    if kind in ("write", "remove"):
        # a file the run created has no backup: rolling back removes it
        return FileChange(str(record["host"]), str(record["path"]), None if record.get("created") else record.get("backup"),
                          str(record.get("before_sha256")), str(record["after_sha256"]), tuple(record.get("notify") or ()),
                          str(record.get("playbook", "")), str(record.get("play", "")), at,
                          str(record.get("before_mode") or ""), str(record.get("before_owner") or ""),
                          _become(record))
    if kind == "rows" and record.get("changes"):
        return RowsChange(
            str(record["host"]), str(record["model"]), str(record["service"]), str(record["project_dir"]),
            tuple(record.get("files") or ()), record.get("project_name"), str(record.get("manage") or "manage.py"),
            tuple(RowChange.from_json(c) for c in record["changes"]), str(record.get("playbook", "")),
            str(record.get("play", "")), at, _become(record),
        )
    return None


def _become(record: Mapping[str, Any]) -> str | None:
    value = record.get("become")
    return str(value) if value else None


def run_changes(records: Iterable[Mapping[str, Any]], run_id: str, where: Location = AUDIT) -> tuple[Change, ...]:
    """Every change a run made, in trail order: its ok `result` records."""
    out = []
    for r in records:
        if r.get("run_id") == run_id and r.get("event") == "result" and r.get("outcome") == "ok":
            change = from_record(r, where)
            if change is not None:
                out.append(change)
    return tuple(out)


def per_path(changes: Sequence[FileChange]) -> tuple[FileChange, ...]:
    """One change per path: the first write's original, the last write's result, every step's notify."""
    by_path: dict[str, FileChange] = {}
    for c in changes:
        first = by_path.get(c.path)
        if first is None:
            by_path[c.path] = c
        else:
            merged = first.notify + tuple(n for n in c.notify if n not in first.notify)
            by_path[c.path] = replace(first, after_sha256=c.after_sha256, notify=merged)
    return tuple(by_path.values())
