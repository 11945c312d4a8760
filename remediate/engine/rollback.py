"""Rollback, planned from the audit trail (pure): restore each file a run changed, reload, re-verify."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from ..core.changes import FileChange, RowsChange, per_path, run_changes
from ..core.errors import InputError, Location
from ..inputs.playbook import Play, StepSpec


@dataclass(frozen=True)
class RollbackPlan:
    """What a run changed, and what it ran with."""

    run_id: str
    inventory: str
    playbooks: tuple[tuple[str, str], ...]
    changes: tuple[FileChange, ...]
    row_changes: tuple[RowsChange, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        """Hosts with something to restore, in order of first change."""
        return tuple(dict.fromkeys([*(c.host for c in self.changes), *(r.host for r in self.row_changes)]))


def plan_from_records(records: Sequence[Mapping[str, Any]], run_id: str, trail: str) -> RollbackPlan:
    """The files a run wrote (ok results of writes), per host; InputError when the run is unknown or changed none."""
    start = next((r for r in records if r.get("run_id") == run_id and r.get("event") == "run_start"), None)
    if start is None:
        raise InputError(f"no run {run_id!r} in the audit trail {trail} (see `remediate audit show`)")
    if start.get("command") == "prune":
        raise InputError(f"run {run_id} pruned backups: what it removed cannot be put back")
    if start.get("command") not in ("apply", "rollback"):
        raise InputError(f"run {run_id} was a {start.get('command')} run: it changed nothing")
    made = run_changes(records, run_id, Location(trail))
    files = [c for c in made if isinstance(c, FileChange)]
    changes = tuple(c for host in dict.fromkeys(c.host for c in files) for c in per_path([f for f in files if f.host == host]))
    rows = tuple(c for c in made if isinstance(c, RowsChange))
    if not changes and not rows:
        raise InputError(f"run {run_id} changed no file: nothing to roll back")
    playbooks = tuple((str(p["path"]), str(p["sha256"])) for p in start.get("playbooks") or ())
    inventory = (start.get("inventory") or {}).get("path")
    if not inventory:
        raise InputError(f"run {run_id}: its run_start record names no inventory")
    return RollbackPlan(run_id, str(inventory), playbooks, changes, rows)


def restore_spec(change: FileChange, force: bool, rollback_of: str) -> StepSpec:
    """A restore_backup step for one change, notifying the handlers its original change notified."""
    args: dict[str, Any] = {
        "path": change.path, "backup": change.backup, "expected_sha256": change.after_sha256, "force": force,
        "original_sha256": change.original_sha256 if change.backup else None,
        "mode": change.mode or None, "owner": change.owner or None,
    }
    return StepSpec(
        name=f"restore {change.path} as it was before run {rollback_of}",
        kind="restore_backup",
        args=MappingProxyType({k: _literal(v) for k, v in args.items()}),
        where=change.where,
        notify=change.notify,
        # as whom the change was made, whatever the play or the inventory says now
        become=change.become is not None,
        become_user=change.become,
    )


def _literal(value: Any) -> Any:
    # arguments are rendered as templates: a path containing "{{" must stay a path
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return "{% raw %}" + value + "{% endraw %}"
    return value


def restore_play(play: Play, changes: Sequence[FileChange], host: str, force: bool, rollback_of: str) -> Play:
    """The play restoring changes on one host, with the original play's variables and handlers."""
    names = {h.name for h in play.handlers} | {n for h in play.handlers for n in h.listen}
    steps = tuple(
        replace(restore_spec(c, force, rollback_of), notify=tuple(n for n in c.notify if n in names)) for c in changes
    )
    return replace(play, hosts=host, steps=steps, tags=(), on_verify_failure="fail")


def restore_rows_spec(change: RowsChange, force: bool, rollback_of: str) -> StepSpec:
    """A restore_rows step putting back the rows one step of the run changed (in the project it changed them in)."""
    args: dict[str, Any] = {
        "service": change.service, "model": change.model, "changes": [r.as_json() for r in change.rows], "force": force,
        "manage": change.manage, "project_dir": change.project_dir, "files": list(change.files),
        "project_name": change.project_name,
    }
    labels = ", ".join(repr(r.label) for r in change.rows)
    return StepSpec(
        name=f"restore {change.model} {labels} as before run {rollback_of}",
        kind="restore_rows",
        args=MappingProxyType({k: _literal_deep(v) for k, v in args.items()}),
        where=change.where,
        become=change.become is not None,
        become_user=change.become,
    )


def _literal_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _literal_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal_deep(v) for v in value]
    return _literal(value)


def restore_rows_play(play: Play, changes: Sequence[RowsChange], host: str, force: bool, rollback_of: str) -> Play:
    """The play restoring rows on one host, after its files were restored and reloaded: the shipped fix changes
    rows before the change that needs them (beat must not see a row it dies on again before it is reloaded)."""
    steps = tuple(restore_rows_spec(c, force, rollback_of) for c in reversed(changes))
    return replace(play, hosts=host, steps=steps, handlers=(), tags=(), on_verify_failure="fail")


def verify_play(play: Play, host: str) -> Play | None:
    """The original play's verifications for one host, or None when it has none."""
    steps = tuple(s for s in play.steps if s.verify)
    if not steps:
        return None
    return replace(play, hosts=host, steps=steps, handlers=(), tags=(), on_verify_failure="fail")


def rollback_plays(plan: RollbackPlan, plays: Sequence[Play], force: bool, verify: bool = True) -> tuple[Play, ...]:
    """Per host and play: restore (then the handlers that run), then that play's verifications (unless not verify)."""
    out: list[Play] = []
    for host in plan.hosts:
        changes = [c for c in plan.changes if c.host == host]
        rows = [r for r in plan.row_changes if r.host == host]
        keys = list(dict.fromkeys([*((c.playbook, c.play) for c in changes), *((r.playbook, r.play) for r in rows)]))
        for playbook, name in keys:
            play = next((p for p in plays if os.path.abspath(p.path) == playbook and p.name == name), None)
            if play is None:
                raise InputError(f"run {plan.run_id} changed files through play {name!r} of {playbook}, "
                                 "which that playbook no longer has")
            mine = [c for c in changes if (c.playbook, c.play) == (playbook, name)]
            if mine:
                out.append(restore_play(play, mine, host, force, plan.run_id))
            my_rows = [r for r in rows if (r.playbook, r.play) == (playbook, name)]
            if my_rows:
                out.append(restore_rows_play(play, my_rows, host, force, plan.run_id))
            verification = verify_play(play, host) if verify else None
            if verification is not None:
                out.append(verification)
    return tuple(out)
