"""Renderings of a run: live text lines, the recap, and the JSON document."""
from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

from .redact import NO_SECRETS, Redactor
from .results import HostResult, Mode, RunReport, Status, StepResult

_COLORS = {
    Status.OK: "32", Status.CHANGED: "33", Status.WOULD_CHANGE: "33", Status.FAILED: "31",
    Status.UNREACHABLE: "31", Status.SKIPPED: "36", Status.PENDING: "35",
}


_DIFF_COLORS = (("+++", "1"), ("---", "1"), ("+", "32"), ("-", "31"), ("@@", "36"))


class TextEvents:
    """Prints each step as it finishes, and progress of long waits; safe across host threads.

    The stream may be a console (cli/output.py) with `started(host, step, line)` / `finished(host, step)`: it then
    shows steps that run long. verbosity 1 adds step durations, 2 a command's stdout and stderr."""

    def __init__(
        self, stream: TextIO = sys.stdout, diff: bool = False, color: bool | None = None, redactor: Redactor = NO_SECRETS,
        verbosity: int = 0,
    ) -> None:
        self.stream = stream
        self.redactor = redactor
        self.diff = diff
        self.color = stream.isatty() if color is None else color
        self.verbosity = verbosity
        self.lock = threading.Lock()

    def _paint(self, status: Status, text: str) -> str:
        return f"\033[{_COLORS[status]}m{text}\033[0m" if self.color else text

    def _diff(self, diff: str) -> str:
        if not self.color:
            return diff
        out = []
        for line in diff.splitlines():
            code = next((c for prefix, c in _DIFF_COLORS if line.startswith(prefix)), "")
            out.append(f"\033[{code}m{line}\033[0m" if code else line)
        return "\n".join(out)

    def step_started(self, host: str, step: str, where: str) -> None:
        """A console shows a step that runs long (a start line in a pipe, a live line on a terminal)."""
        started = getattr(self.stream, "started", None)
        if started is not None:
            started(host, step, self.redactor.text(f"{host} | {'running':<12} | {step}  [{where}]"))

    def step_done(self, host: str, result: StepResult) -> None:
        """One block per finished step."""
        label = self._paint(result.status, f"{result.status.value:<12}")
        name = f"{'handler: ' if result.handler else ''}{result.name}"
        took = f" ({result.duration:.2f} s)" if self.verbosity >= 1 else ""
        lines = [f"{host} | {label} | {name}  [{result.where}]{took}"]
        lines += [f"    {a}" for a in result.actions]
        if result.message:
            lines += [f"    {line}" for line in result.message.splitlines()]
        if self.verbosity >= 2 and result.output is not None:
            for what, text in (("stdout", result.output.stdout), ("stderr", result.output.stderr)):
                if text:
                    lines += [f"    {what}:", *(f"      {line}" for line in text.splitlines())]
        if self.diff and result.diff:
            lines += [self._diff(result.diff.rstrip("\n"))]
        with self.lock:
            finished = getattr(self.stream, "finished", None)
            if finished is not None:
                finished(host, name)
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


SCHEMA_VERSION = 1  # of the JSON document: a field removed or changed in meaning raises it; fields are added freely


def step_json(step: StepResult, verbosity: int = 0) -> dict[str, Any]:
    """A step as the JSON document shows it (with verbosity >= 1 a command's stdout and stderr too)."""
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
        if verbosity >= 1:
            doc["stdout"], doc["stderr"] = step.output.stdout, step.output.stderr
    if step.data:
        doc["data"] = dict(step.data)
    return doc


def host_json(host: HostResult, verbosity: int = 0) -> dict[str, Any]:
    """A host as the JSON document shows it."""
    return {
        "status": host.status.value,
        "message": host.message,
        "notices": list(host.notices),
        "verified_s": None if host.verified_s is None else round(host.verified_s, 1),
        "steps": [step_json(s, verbosity) for s in host.steps],
    }


def _utc(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if when is not None else None


def to_json(report: RunReport, verbosity: int = 0) -> str:
    """The one JSON document of a run (README "The JSON report")."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": report.run_id,
        "mode": report.mode.value,
        "started": _utc(report.started),
        "ended": _utc(report.ended),
        "hosts": {h.host: host_json(h, verbosity) for h in report.hosts},
        "summary": report.summary(),
        "exit_code": int(report.exit_code()),
        "interrupted": report.interrupted,
    }
    if report.audit_error:
        doc["audit_error"] = report.audit_error
    return json.dumps(report.redactor.data(doc), indent=2, default=str)
