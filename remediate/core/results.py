"""Frozen results of a run: per step, per host, and the whole run with its exit code."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import Location
from .redact import NO_SECRETS, Redactor


class Status(enum.Enum):
    """Outcome of a step or a host."""

    OK = "ok"
    CHANGED = "changed"
    WOULD_CHANGE = "would_change"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"
    PENDING = "pending"


class Mode(enum.Enum):
    """What a run does: change hosts, only plan (check mode), or undo an earlier run."""

    APPLY = "apply"
    CHECK = "check"
    ROLLBACK = "rollback"


class ExitCode(enum.IntEnum):
    """The one table of exit codes, for every command (README "Exit codes"); each report maps itself onto it.

    The aliases are the same codes in the words of the commands that use them.
    """

    OK = 0  # in sync, or changed and verified; diagnose: healthy; drift: clean; audit verify: intact
    FAILED = 1  # a step, verification or host failed; a check could not be made; the trail is unwritable or tampered
    PENDING_CHANGES = 2  # --check found changes; diagnose: problems; drift: drift; backups prune --check: would remove
    INVALID_INPUT = 3  # arguments (usage errors too), inventory, playbook, template, run id; before any host is contacted
    VERIFY_PENDING = 4  # changed, but a verification can only be confirmed after --verify-timeout
    INTERRUPTED = 130  # SIGINT or SIGTERM
    CLEAN = 0
    ERROR = 1
    DRIFT = 2
    PROBLEMS = 2


@dataclass(frozen=True)
class CommandOutput:
    """What a command step saw, for `register:` and reports."""

    argv: tuple[str, ...]
    rc: int | None
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class StepResult:
    """One step on one host."""

    name: str
    kind: str
    status: Status
    where: Location
    diff: str = ""
    actions: tuple[str, ...] = ()
    message: str = ""
    output: CommandOutput | None = None
    changed_paths: tuple[str, ...] = ()
    handler: bool = False
    data: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 0.0  # seconds the engine spent on the step (all attempts and loop items)
    ignored: bool = False  # failed, with ignore_errors: the host goes on and its status does not count it

    @property
    def changed(self) -> bool:
        """Changed, or would change in check mode."""
        return self.status in (Status.CHANGED, Status.WOULD_CHANGE)

    def as_vars(self) -> dict[str, Any]:
        """The view of this result that `register:` exposes to templates."""
        out = self.output
        values: dict[str, Any] = {
            "status": self.status.value,
            "changed": self.changed,
            "failed": self.status == Status.FAILED,
            "skipped": self.status == Status.SKIPPED,
            "message": self.message,
            "rc": out.rc if out else None,
            "stdout": out.stdout if out else "",
            "stderr": out.stderr if out else "",
            "stdout_lines": out.stdout.splitlines() if out else [],
        }
        values.update(self.data)
        if self.ignored:
            values["ignored"] = True
        return values


@dataclass(frozen=True)
class HostResult:
    """Everything that happened on one host."""

    host: str
    status: Status
    steps: tuple[StepResult, ...] = ()
    message: str = ""
    notices: tuple[str, ...] = ()
    verified_s: float | None = None  # from the host's start to the end of its last verification (all passed)

    def count(self, status: Status) -> int:
        """How many steps ended with that status."""
        return sum(1 for s in self.steps if s.status == status)


@dataclass(frozen=True)
class RunReport:
    """A whole run; it owns the exit code."""

    run_id: str
    mode: Mode
    hosts: tuple[HostResult, ...]
    interrupted: bool = False
    # every rendering of the report (text, JSON, HTML, JUnit) masks secrets through it
    redactor: Redactor = field(default=NO_SECRETS, repr=False, compare=False)
    # the audit trail could not be written at the run's end (or earlier): the recap is the run's only full account
    audit_error: str = ""

    def summary(self) -> dict[str, int]:
        """Counts of hosts by outcome."""
        counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "pending": 0}
        for host in self.hosts:
            if host.status == Status.UNREACHABLE:
                counts["unreachable"] += 1
            elif host.status == Status.FAILED:
                counts["failed"] += 1
            elif host.status == Status.PENDING:
                counts["pending"] += 1
            elif host.status in (Status.CHANGED, Status.WOULD_CHANGE):
                counts["changed"] += 1
            else:
                counts["ok"] += 1
        return counts

    def exit_code(self) -> ExitCode:
        """0 in sync, 1 failure/unreachable, 2 check found changes, 4 verification pending, 130 interrupted."""
        if self.interrupted:
            return ExitCode.INTERRUPTED
        statuses = {h.status for h in self.hosts}
        if self.audit_error or statuses & {Status.FAILED, Status.UNREACHABLE}:
            return ExitCode.FAILED
        if Status.PENDING in statuses:
            return ExitCode.VERIFY_PENDING
        if self.mode is Mode.CHECK and Status.WOULD_CHANGE in statuses:
            return ExitCode.PENDING_CHANGES
        return ExitCode.OK


def host_status(steps: tuple[StepResult, ...]) -> Status:
    """A host's status from its steps: failed beats pending beats changed beats ok."""
    statuses = {s.status for s in steps}
    for status in (Status.UNREACHABLE, Status.FAILED, Status.PENDING, Status.WOULD_CHANGE, Status.CHANGED):
        if status in statuses:
            return status
    return Status.OK
