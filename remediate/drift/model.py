"""What a drift assessment is: hosts x checks, each ok, drifted or not made, with the tasks worth naming; a
`--fix` run's before, apply and after; and the JSON-able document history stores."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.results import ExitCode, RunReport


PLAYBOOK_PREFIX = "playbook:"


class CheckStatus(enum.Enum):
    """Outcome of one check on one host."""

    OK = "ok"
    DRIFT = "drift"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One check on one host: its status, what drifted, warnings that do not count as drift, diffs."""

    host: str
    name: str
    status: CheckStatus
    details: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    diff: str = ""
    # seconds it took: a playbook check's steps; a health check, its host's one diagnosis (shared by all four)
    duration: float | None = None
    file: str = ""  # a playbook check's playbook file

    @property
    def key(self) -> str:
        """host/check, the identity of a check across runs."""
        return f"{self.host}/{self.name}"


@dataclass(frozen=True)
class TaskState:
    """A PeriodicTask that is not simply fine: never run, overdue, pending or never firing."""

    host: str
    name: str
    task: str
    status: str
    schedule: str
    last_due: str | None
    last_run_at: str | None
    next_due: str | None
    detail: str


@dataclass(frozen=True)
class DriftReport:
    """One drift assessment of an environment."""

    env: str
    run_id: str
    started_at: datetime
    hosts: tuple[str, ...]
    checks: tuple[Check, ...]
    tasks: tuple[TaskState, ...] = ()
    phase: str = "check"  # check | after-fix
    duration: float | None = None  # seconds, the whole assessment
    playbooks: tuple[str, ...] = ()  # the playbook files it ran (-p), as given to the check

    def exit_code(self) -> ExitCode:
        """1 when any check could not be made, else 2 when anything drifted, else 0; warnings never count."""
        statuses = {c.status for c in self.checks}
        if CheckStatus.ERROR in statuses:
            return ExitCode.ERROR
        return ExitCode.DRIFT if CheckStatus.DRIFT in statuses else ExitCode.CLEAN

    def drifted(self) -> tuple[Check, ...]:
        """Checks that drifted."""
        return tuple(c for c in self.checks if c.status == CheckStatus.DRIFT)

    def drifted_hosts(self) -> tuple[str, ...]:
        """Hosts with at least one drifted check, in inventory order."""
        names = {c.host for c in self.drifted()}
        return tuple(h for h in self.hosts if h in names)

    def check_names(self) -> tuple[str, ...]:
        """Every check name, in first-seen order."""
        return tuple(dict.fromkeys(c.name for c in self.checks))

    def warnings(self) -> tuple[tuple[str, str], ...]:
        """(host/check, warning) pairs."""
        return tuple((c.key, w) for c in self.checks for w in c.warnings)


@dataclass(frozen=True)
class FixOutcome:
    """What `drift --fix` did: the check before, the apply run on drifted hosts, the check after."""

    before: DriftReport
    applied: RunReport | None
    after: DriftReport | None

    def exit_code(self) -> ExitCode:
        """An interrupted (130) or failed (1) apply decides; otherwise the check after the fix does."""
        if self.applied is not None and self.applied.exit_code() in (ExitCode.FAILED, ExitCode.INTERRUPTED):
            return self.applied.exit_code()
        final = self.after or self.before
        return final.exit_code()


def playbook_check_name(path: str) -> str:
    """The check a playbook file's steps report under."""
    return PLAYBOOK_PREFIX + Path(path).stem


def shown_path(path: str) -> str:
    """A playbook path as reports show it: relative to the working directory when under it (CI links it)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def to_doc(report: DriftReport) -> dict[str, Any]:
    """The JSON-able document of a report (also what history stores)."""
    return {
        "env": report.env,
        "run_id": report.run_id,
        "phase": report.phase,
        "started_at": report.started_at.isoformat(),
        "hosts": list(report.hosts),
        "checks": [
            {"host": c.host, "check": c.name, "status": c.status.value, "details": list(c.details),
             "warnings": list(c.warnings), "diff": c.diff, "duration": c.duration, "file": c.file}
            for c in report.checks
        ],
        "tasks": [t.__dict__ for t in report.tasks],
        "drifted": [c.key for c in report.drifted()],
        "exit_code": int(report.exit_code()),
        "duration": report.duration,
        "playbooks": list(report.playbooks),
    }


def from_doc(doc: Mapping[str, Any]) -> DriftReport:
    """A report back from its document."""
    return DriftReport(
        env=str(doc["env"]), run_id=str(doc["run_id"]),
        started_at=datetime.fromisoformat(doc["started_at"]),
        hosts=tuple(doc["hosts"]),
        checks=tuple(Check(c["host"], c["check"], CheckStatus(c["status"]), tuple(c["details"]), tuple(c["warnings"]),
                           c.get("diff", ""), c.get("duration"), c.get("file", "")) for c in doc["checks"]),
        tasks=tuple(TaskState(**t) for t in doc.get("tasks", ())),
        phase=str(doc.get("phase", "check")),
        # documents recorded before durations and playbook sets were kept have neither
        duration=doc.get("duration"),
        playbooks=tuple(doc.get("playbooks", ())),
    )
