"""The pure judgement: a check-mode run and diagnose's findings, as hosts x checks."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..celery.schedules import iso
from ..core.results import HostResult, RunReport, Status
from ..diagnose import FAULTS, Finding, HostDiagnosis, Severity
from .model import Check, CheckStatus, DriftReport, TaskState, playbook_check_name


# Health checks, in display order, and the diagnose finding codes each one owns.
HEALTH_CHECKS: Mapping[str, frozenset[str]] = {
    "containers": frozenset({"container_down", "container_unhealthy"}),
    "beat_scheduler": frozenset({
        "beat_scheduler", "beat_scheduler_setting", "beat_scheduler_code", "beat_scheduler_forced",
        "dual_configuration", "stale_pid_file", "stale_schedule_file", "beat_probe",
    }),
    "tasks_registered": frozenset({"unimported_task_module", "unregistered_tasks", "worker_silent"}),
    "tasks_ran": frozenset({"never_run", "overdue", "never_fires", "beat_row"}),
    # one check per catalogue fault, named by its id (diagnose.FAULTS)
    **{fault.id: frozenset({fault.id}) for fault in FAULTS},
}


OTHER_HEALTH = "celery_health"  # a finding code diagnose learns later still counts, under this check


def playbook_checks(host: HostResult, names: Sequence[str]) -> tuple[Check, ...]:
    """One check per playbook file: drift when a step would change, error when the host failed or was unreachable."""
    by_name: dict[str, list[Any]] = {n: [] for n in names}
    for step in host.steps:
        by_name.setdefault(playbook_check_name(step.where.path), []).append(step)
    out = []
    for name, steps in by_name.items():
        failed = [s for s in steps if s.status == Status.FAILED and not s.ignored]
        changes = [s for s in steps if s.status == Status.WOULD_CHANGE]
        if host.status == Status.UNREACHABLE:
            out.append(Check(host.host, name, CheckStatus.ERROR, (f"unreachable: {host.message}",)))
        elif failed:
            out.append(Check(host.host, name, CheckStatus.ERROR,
                             tuple(f"{s.name} [{s.where}]: {s.message}" for s in failed)))
        elif changes:
            details = tuple(
                f"{s.name} [{s.where}]" + (f": {'; '.join(s.actions)}" if s.actions else "") for s in changes
            )
            diff = "".join(s.diff if s.diff.endswith("\n") or not s.diff else s.diff + "\n" for s in changes)
            out.append(Check(host.host, name, CheckStatus.DRIFT, details, (), diff))
        elif host.status == Status.FAILED and not steps:
            out.append(Check(host.host, name, CheckStatus.ERROR, (host.message or "the host failed before this playbook",)))
        else:
            out.append(Check(host.host, name, CheckStatus.OK))
    return tuple(out)


def _words(f: Finding) -> str:
    return f"{f.code}: {f.message}" + (f" ({'; '.join(f.evidence)})" if f.evidence else "")


def health_checks(diagnosis: HostDiagnosis) -> tuple[Check, ...]:
    """Diagnose's findings sorted into the health checks: problems drift, warnings stay warnings."""
    grouped: dict[str, list[Finding]] = {name: [] for name in HEALTH_CHECKS}
    for finding in diagnosis.findings:
        name = next((n for n, codes in HEALTH_CHECKS.items() if finding.code in codes), OTHER_HEALTH)
        grouped.setdefault(name, []).append(finding)
    out = []
    for name, findings in grouped.items():
        problems = tuple(_words(f) for f in findings if f.severity is Severity.PROBLEM)
        warnings = tuple(_words(f) for f in findings if f.severity is Severity.WARNING)
        if diagnosis.error:
            out.append(Check(diagnosis.host, name, CheckStatus.ERROR, (diagnosis.error, *problems), warnings))
        else:
            out.append(Check(diagnosis.host, name, CheckStatus.DRIFT if problems else CheckStatus.OK, problems, warnings))
    return tuple(out)


def task_states(diagnosis: HostDiagnosis) -> tuple[TaskState, ...]:
    """The PeriodicTasks worth naming: never run, overdue, pending (beat restarted after they were due), never firing."""
    return tuple(
        TaskState(diagnosis.host, h.task.name, h.task.task, h.status, h.task.schedule_words,
                  iso(h.last_due) if h.last_due else None, iso(h.task.last_run_at) if h.task.last_run_at else None,
                  iso(h.next_due) if h.next_due else None, h.detail)
        for h in diagnosis.tasks if h.status in ("never_run", "overdue", "pending", "never_fires")
    )


def assess(
    env: str,
    run_id: str,
    started_at: datetime,
    hosts: Sequence[str],
    playbook_names: Sequence[str],
    check_run: RunReport | None,
    diagnoses: Iterable[HostDiagnosis] = (),
    playbook_files: Mapping[str, str] | None = None,
    diagnosis_seconds: Mapping[str, float] | None = None,
) -> DriftReport:
    """Hosts x checks from a check-mode run (None: no playbooks) and diagnose's results (empty: no health checks).

    `playbook_files` names each playbook check's file; `diagnosis_seconds` how long each host's diagnosis took.
    """
    by_host: dict[str, list[Check]] = {h: [] for h in hosts}
    tasks: list[TaskState] = []
    results = {h.host: h for h in check_run.hosts} if check_run else {}
    for name in hosts:
        if name in results:
            by_host[name] += _timed(results[name], playbook_checks(results[name], playbook_names), playbook_files or {})
    for diagnosis in diagnoses:
        seconds = (diagnosis_seconds or {}).get(diagnosis.host)
        by_host.setdefault(diagnosis.host, []).extend(replace(c, duration=seconds) for c in health_checks(diagnosis))
        tasks += task_states(diagnosis)
    checks = tuple(c for h in by_host.values() for c in h)
    return DriftReport(env, run_id, started_at, tuple(by_host), checks, tuple(tasks))


def _timed(host: HostResult, checks: Iterable[Check], files: Mapping[str, str]) -> list[Check]:
    """Each playbook check with the time its steps took on the host (None when none ran) and its file."""
    seconds: dict[str, float] = {}
    for step in host.steps:
        name = playbook_check_name(step.where.path)
        seconds[name] = seconds.get(name, 0.0) + step.duration
    return [replace(c, duration=seconds.get(c.name), file=files.get(c.name, "")) for c in checks]
