"""on_verify_failure: rollback: when a verification of a play fails, the plays that restore what this run changed in
it, from the changes the engine kept (the same typed values `remediate rollback` reads from the trail)."""
from __future__ import annotations

from collections.abc import Sequence

from ..core.changes import Change, FileChange, RowsChange, per_path
from ..inputs.playbook import Play
from .context import playbook_key
from .rollback import restore_play, restore_rows_play


def restore_plays(play: Play, written: Sequence[Change], host: str, run_id: str) -> tuple[tuple[Play, ...], str]:
    """The restore plays (files first, then their handlers, then rows) and what they restore, in words ("" if nothing)."""
    mine = [c for c in written if c.playbook == playbook_key(play) and c.play == play.name]
    files = per_path([c for c in mine if isinstance(c, FileChange)])
    rows = [c for c in mine if isinstance(c, RowsChange)]
    plays = ((restore_play(play, files, host, force=False, rollback_of=run_id),) if files else ()) + \
        ((restore_rows_play(play, rows, host, force=False, rollback_of=run_id),) if rows else ())
    what = ", ".join(x for x in (f"{len(files)} file(s)" if files else "", f"rows of {len(rows)} step(s)" if rows else "") if x)
    return plays, what
