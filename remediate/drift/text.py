"""Drift as a person reads it and as one JSON document (with --fix: before, the apply run, after)."""
from __future__ import annotations

import json
from datetime import timezone
from typing import Any

from ..core import report as run_report
from .model import DriftReport, FixOutcome, to_doc


def render_json(outcome: FixOutcome, notification: str = "") -> str:
    """The one JSON document of a drift run (with --fix: before, the apply run, after)."""
    doc: dict[str, Any] = to_doc(outcome.before)
    if outcome.applied is not None:
        doc = {"before": doc, "fix": json.loads(run_report.to_json(outcome.applied)),
               "after": to_doc(outcome.after) if outcome.after else None}
    doc["exit_code"] = int(outcome.exit_code())
    if notification:
        doc["notification"] = notification
    return json.dumps(doc, indent=2, default=str)


def render_text(outcome: FixOutcome, notification: str = "") -> str:
    """What a person reads: per host, each check; then tasks, warnings, and the verdict."""
    parts = [_text(outcome.before)]
    if outcome.applied is not None:
        parts.append(f"FIX applied to {', '.join(outcome.before.drifted_hosts())}")
        parts.append(run_report.recap(outcome.applied))
        if outcome.after is not None:
            parts.append("AFTER FIX")
            parts.append(_text(outcome.after))
    if notification:
        parts.append(f"notify: {notification}")
    code = int(outcome.exit_code())
    parts.append({0: "clean", 1: "errors", 2: "drift found", 130: "interrupted"}.get(code, "exit") + f"; exit {code}")
    return "\n".join(parts)


def _text(report: DriftReport) -> str:
    lines = [f"DRIFT {report.env} run {report.run_id} at {report.started_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%SZ}"]
    for host in report.hosts:
        lines.append(f"== {host}")
        for c in (c for c in report.checks if c.host == host):
            lines.append(f"  {c.status.value.upper():7} {c.name}")
            lines += [f"          {d}" for d in c.details]
            lines += [f"          warning: {w}" for w in c.warnings]
            if c.diff:
                lines += [f"          {line}" for line in c.diff.rstrip("\n").splitlines()]
        for t in (t for t in report.tasks if t.host == host):
            due = f"due {t.last_due}" if t.last_due else f"next due {t.next_due or 'never'}"
            lines.append(f"  task {t.name!r} ({t.task}): {t.status.replace('_', '-')}, {due}, "
                         f"last run {t.last_run_at or 'never'}")
    return "\n".join(lines)
