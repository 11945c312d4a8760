"""File actions: the atomic, backed-up, compare-and-swap write and removal, each with its diff."""
from __future__ import annotations

import difflib
import functools
import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, replace
from typing import Any

from ..facts.files import FileFact, backup_path, file_subject, remove_file, write_file
from .base import Action, ExecContext, Outcome


@functools.lru_cache(maxsize=64)  # an edit's diff is shown, audited and reported: computed once
def unified_diff(host: str, path: str, before: str, after: str) -> str:
    """A diff headed --- HOST:PATH / +++ HOST:PATH."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"{host}:{path}", f"{host}:{path}"
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


@dataclass(frozen=True)
class WriteFile(Action):
    """Replace a file's content atomically, if it still is what was read; the original kept in the backup root.

    `mode` (and `owner`, uid:gid) apply to a file that is created; an existing file keeps its own.
    """

    path: str
    before: FileFact
    content: bytes
    before_text: str
    after_text: str
    mode: str = "644"
    owner: str = ""

    def describe(self) -> str:
        via = f" (through the link {self.before.via})" if self.before.via else ""
        return f"{'edit' if self.before.exists else 'create'} {self.path}{via}"

    def diff(self, host: str) -> str:
        return unified_diff(host, self.path, self.before_text, self.after_text)

    def paths(self) -> tuple[str, ...]:
        return (self.path,)

    interruptible = False

    def backup(self, run_id: str) -> str:
        """Where this run keeps the original (ROOT/RUN_ID/PATH)."""
        return backup_path(self.before.backup_root, run_id, self.path)

    def predict(self) -> tuple[tuple[Hashable, Any], ...]:
        return ((file_subject(self.path), replace(self.before, exists=True, data=self.content)),)

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        return {
            "action": self.describe(), "type": "write", "path": self.path,
            "before_sha256": self.before.sha256, "after_sha256": hashlib.sha256(self.content).hexdigest(),
            "backup": self.backup(run_id) if self.before.exists else None,
            "backup_dir": self.before.backup_root, "created": not self.before.exists,
            **_original_mode(self.before), **({"link": self.before.via} if self.before.via else {}),
        }

    def execute(self, ctx: ExecContext) -> Outcome:
        backup = self.backup(ctx.run_id)
        swept = write_file(ctx.transport, self.path, self.content, self.before.sha256, backup, self.mode,
                           root=self.before.backup_root, owner=self.owner)
        kept = f" (backup {backup})" if self.before.exists else ""
        return Outcome(message=f"wrote {self.path}{kept}{_swept_note(swept)}")


@dataclass(frozen=True)
class RemoveFile(Action):
    """Remove a file, if it still is what was read, keeping it in the backup root: undoes a creation."""

    path: str
    before: FileFact
    before_text: str = ""

    interruptible = False

    def describe(self) -> str:
        return f"remove {self.path}"

    def diff(self, host: str) -> str:
        return unified_diff(host, self.path, self.before_text, "")

    def paths(self) -> tuple[str, ...]:
        return (self.path,)

    def predict(self) -> tuple[tuple[Hashable, Any], ...]:
        return ((file_subject(self.path), replace(self.before, exists=False, data=b"")),)

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        return {
            "action": self.describe(), "type": "remove", "path": self.path, "before_sha256": self.before.sha256,
            "after_sha256": "absent", "backup": backup_path(self.before.backup_root, run_id, self.path),
            "backup_dir": self.before.backup_root, "created": False, **_original_mode(self.before),
        }

    def execute(self, ctx: ExecContext) -> Outcome:
        backup = backup_path(self.before.backup_root, ctx.run_id, self.path)
        swept = remove_file(ctx.transport, self.path, self.before.sha256, backup, root=self.before.backup_root)
        return Outcome(message=f"removed {self.path} (kept as {backup}){_swept_note(swept)}")


def _original_mode(fact: FileFact) -> dict[str, str]:
    """The mode and owner a restore gives the file back when it has to create it (backups are 0600)."""
    return {"before_mode": fact.mode, "before_owner": fact.owner} if fact.exists else {}


def _swept_note(swept: tuple[str, ...]) -> str:
    if not swept:
        return ""
    return "; removed what a killed run left: " + ", ".join(swept)
