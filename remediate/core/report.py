"""Renderings of a run: live text lines, the recap, and the JSON document."""
from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

from .redact import NO_SECRETS, Redactor
from .results import HostResult, Mode, RunReport, Status, StepResult

_COLORS = {
    Status.OK: "32", Status.CHANGED: "33", Status.WOULD_CHANGE: "33", Status.FAILED: "31",
    Status.UNREACHABLE: "31", Status.SKIPPED: "36", Status.PENDING: "35",
}


class TextEvents:
    """Prints each step as it finishes, and progress of long waits; safe across host threads."""

    def __init__(
        self, stream: TextIO = sys.stdout, diff: bool = False, color: bool | None = None, redactor: Redactor = NO_SECRETS
    ) -> None:
        self.stream = stream
        self.redactor = redactor
        self.diff = diff
        self.color = stream.isatty() if color is None else color
        self.lock = threading.Lock()

    def _paint(self, status: Status, text: str) -> str:
        return f"\033[{_COLORS[status]}m{text}\033[0m" if self.color else text

    def step_done(self, host: str, result: StepResult) -> None:
        """One block per finished step."""
        label = self._paint(result.status, f"{result.status.value:<12}")
        lines = [f"{host} | {label} | {'handler: ' if result.handler else ''}{result.name}  [{result.where}]"]
        lines += [f"    {a}" for a in result.actions]
        if result.message:
            lines += [f"    {line}" for line in result.message.splitlines()]
        if self.diff and result.diff:
            lines += [result.diff.rstrip("\n")]
        with self.lock:
            print(self.redactor.text("\n".join(lines)), file=self.stream, flush=True)

    def progress(self, host: str, step: str, message: str) -> None:
        """A progress line for a long wait."""
        with self.lock:
            print(self.redactor.text(f"{host} | {'...':<12} | {step}: {message}"), file=self.stream, flush=True)


def recap(report: RunReport) -> str:
    """The per-host recap that ends a text run."""
    mode = {Mode.CHECK: " (check mode: nothing was changed)", Mode.APPLY: ""}.get(report.mode, f" ({report.mode.value})")
    lines = [f"RECAP run {report.run_id}{mode}"]
    width = max((len(h.host) for h in report.hosts), default=4)
    for host in report.hosts:
        counts = " ".join(
            f"{s.value}={host.count(s)}"
            for s in (Status.OK, Status.CHANGED, Status.WOULD_CHANGE, Status.FAILED, Status.SKIPPED, Status.PENDING)
        )
        verified = f"  verified {host.verified_s:.1f} s after start" if host.verified_s is not None else ""
        lines.append(f"{host.host:<{width}}  {host.status.value:<12} {counts}{verified}")
        for notice in host.notices:
            lines.append(f"{'':<{width}}  note: {notice}")
        if host.message:
            lines += [f"{'':<{width}}  {line}" for line in host.message.splitlines()]
    summary = report.summary()
    lines.append("hosts: " + ", ".join(f"{k}={v}" for k, v in summary.items()) + f"; exit {int(report.exit_code())}")
    if report.interrupted:
        lines.append("interrupted")
    if report.audit_error:
        lines.append(f"the audit trail is incomplete: {report.audit_error}; this recap is the run's only full account")
    return report.redactor.text("\n".join(lines))


def step_json(step: StepResult) -> dict[str, Any]:
    """A step as the JSON document shows it."""
    doc: dict[str, Any] = {
        "name": step.name,
        "kind": step.kind,
        "status": step.status.value,
        "changed": step.changed,
        "diff": step.diff,
        "actions": list(step.actions),
        "message": step.message,
        "where": str(step.where),
        "handler": step.handler,
        "duration": round(step.duration, 3),
    }
    if step.output is not None:
        doc["rc"] = step.output.rc
    if step.data:
        doc["data"] = dict(step.data)
    return doc


def host_json(host: HostResult) -> dict[str, Any]:
    """A host as the JSON document shows it."""
    return {
        "status": host.status.value,
        "message": host.message,
        "notices": list(host.notices),
        "verified_s": None if host.verified_s is None else round(host.verified_s, 1),
        "steps": [step_json(s) for s in host.steps],
    }


def to_json(report: RunReport) -> str:
    """The one JSON document of a run."""
    doc: dict[str, Any] = {
        "run_id": report.run_id,
        "mode": report.mode.value,
        "hosts": {h.host: host_json(h) for h in report.hosts},
        "summary": report.summary(),
        "exit_code": int(report.exit_code()),
        "interrupted": report.interrupted,
    }
    if report.audit_error:
        doc["audit_error"] = report.audit_error
    return json.dumps(report.redactor.data(doc), indent=2, default=str)
