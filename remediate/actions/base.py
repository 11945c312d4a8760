"""Typed side effects. Each describes itself, shows its diff, and knows how to execute."""
from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..facts.files import FileFact, backup_path, remove_file, write_file
from ..core.results import CommandOutput
from ..transport.base import Transport


@dataclass(frozen=True)
class ExecContext:
    """What executing an action may use: the host's one transport, the run id, a clock and a sleep."""

    host: str
    transport: Transport
    run_id: str
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    progress: Callable[[str], None] = lambda message: None
    verify_timeout: float = 900.0


@dataclass(frozen=True)
class Outcome:
    """What executing an action produced."""

    output: CommandOutput | None = None
    message: str = ""
    failed: bool = False
    pending: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    # what the audit trail's `result` record adds about a change once it is made (e.g. the rows' real before/after)
    audit: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """Base action. `runs_in_check`: read-only, so it runs in check mode too; `is_change`: counts as a change.

    `interruptible`: an interrupt may kill it mid-way (a file write is always let finish).
    """

    runs_in_check = False
    is_change = True
    interruptible = True

    def describe(self) -> str:
        """One line saying what it does."""
        raise NotImplementedError

    def diff(self, host: str) -> str:
        """A unified diff, when the action edits a file."""
        return ""

    def paths(self) -> tuple[str, ...]:
        """Files this action changes."""
        return ()

    def execute(self, ctx: ExecContext) -> Outcome:
        """Do it."""
        raise NotImplementedError

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        """What the audit trail records before this action runs (rollback reads files' fields back)."""
        return {"action": self.describe()}


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
        return f"{'edit' if self.before.exists else 'create'} {self.path}"

    def diff(self, host: str) -> str:
        return unified_diff(host, self.path, self.before_text, self.after_text)

    def paths(self) -> tuple[str, ...]:
        return (self.path,)

    interruptible = False

    def backup(self, run_id: str) -> str:
        """Where this run keeps the original (ROOT/RUN_ID/PATH)."""
        return backup_path(self.before.backup_root, run_id, self.path)

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        import hashlib

        return {
            "action": self.describe(), "type": "write", "path": self.path,
            "before_sha256": self.before.sha256, "after_sha256": hashlib.sha256(self.content).hexdigest(),
            "backup": self.backup(run_id) if self.before.exists else None,
            "backup_dir": self.before.backup_root, "created": not self.before.exists,
            **_original_mode(self.before),
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


@dataclass(frozen=True)
class RunCommand(Action):
    """Run argv on the host; read-only commands run in check mode too and never count as a change."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    cwd: str | None = None
    read_only: bool = False
    timeout: float | None = None

    @property
    def runs_in_check(self) -> bool:  # type: ignore[override]
        return self.read_only

    @property
    def is_change(self) -> bool:  # type: ignore[override]
        return not self.read_only

    def describe(self) -> str:
        import shlex

        return ("run " if not self.read_only else "query ") + shlex.join(self.argv)

    def audit_fields(self, run_id: str) -> dict[str, Any]:
        return {"action": self.describe(), "type": "command", "argv": list(self.argv), "cwd": self.cwd}

    def execute(self, ctx: ExecContext) -> Outcome:
        result = ctx.transport.run(
            self.argv,
            stdin=self.stdin.encode() if self.stdin is not None else None,
            env=self.env or None,
            cwd=self.cwd,
            timeout=self.timeout,
        )
        output = CommandOutput(self.argv, result.rc, result.out, result.err)
        # no message on failure: the executor reports a failed command by its argv, exit code and output tail
        return Outcome(output=output, failed=result.rc != 0)
