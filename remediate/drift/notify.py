"""Drift notifications: a JSON POST (Slack-compatible `text`) only when drift appears or clears."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from .model import CheckStatus, DriftReport
from ..core.errors import InputError


@dataclass(frozen=True)
class Transition:
    """How the drifted host/check set moved since it was last announced."""

    appeared: frozenset[str]
    cleared: frozenset[str]
    current: frozenset[str]


def check_url(url: str) -> str:
    """An http(s) URL with a host, or InputError (exit 3)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--notify expects an http:// or https:// URL, not {url!r}")
    return url


def current_drift(report: DriftReport, previous: frozenset[str]) -> frozenset[str]:
    """The drifted keys now; a check that errored keeps what was announced, since nothing is known about it."""
    drifted = {c.key for c in report.checks if c.status == CheckStatus.DRIFT}
    unknown = {c.key for c in report.checks if c.status == CheckStatus.ERROR}
    return frozenset(drifted | (previous & unknown))


def transition(previous: frozenset[str], report: DriftReport) -> Transition | None:
    """None when nothing appeared or cleared since the last announcement."""
    current = current_drift(report, previous)
    appeared, cleared = current - previous, previous - current
    if not appeared and not cleared:
        return None
    return Transition(frozenset(appeared), frozenset(cleared), current)


def payload(report: DriftReport, change: Transition) -> dict[str, Any]:
    """The JSON body: Slack reads `text`; other receivers get the structured fields too."""
    if change.current:
        head = f"remediate drift {report.env}: drift on {len(change.current)} check(s)"
    else:
        head = f"remediate drift {report.env}: drift cleared, all checks clean"
    lines = [head]
    details = {c.key: c.details for c in report.checks}
    lines += [f"• new: {k}" + (f" ({details[k][0]})" if details.get(k) else "") for k in sorted(change.appeared)]
    lines += [f"• cleared: {k}" for k in sorted(change.cleared)]
    overdue = [t for t in report.tasks if t.status in ("never_run", "overdue")]
    lines += [f"• task {t.host}/{t.name}: {t.status.replace('_', '-')}, due {t.last_due}" for t in overdue]
    return {
        "text": "\n".join(lines),
        "env": report.env,
        "run_id": report.run_id,
        "status": "drift" if change.current else "clean",
        "appeared": sorted(change.appeared),
        "cleared": sorted(change.cleared),
        "drifted": sorted(change.current),
    }


def post(url: str, body: dict[str, Any], timeout: float = 10.0) -> str | None:
    """POST the body; None on success, else what went wrong (the caller reports it, the check goes on)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked by check_url)
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"POST {url} answered HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"POST {url} failed: {reason}"
    if not 200 <= status < 300:
        return f"POST {url} answered HTTP {status}"
    return None
