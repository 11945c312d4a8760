"""Drift notifications: a JSON POST (Slack-compatible `text`) only when drift appears or clears."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import CheckStatus, DriftReport
from ..core.errors import InputError


@dataclass(frozen=True)
class Transition:
    """How the drifted host/check set moved since it was last announced."""

    appeared: frozenset[str]
    cleared: frozenset[str]
    current: frozenset[str]


ENV_VAR = "REMEDIATE_NOTIFY_URL"


def check_url(url: str) -> str:
    """An http(s) URL with a host, or InputError (exit 3; the message shows the URL masked)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--notify expects an http:// or https:// URL, not {masked(url)!r}")
    return url


def masked(url: str) -> str:
    """A webhook URL as output shows it: its credential (user info, path, query: a Slack URL keeps its key in the
    path) replaced by ********."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "********"
    port = f":{parts.port}" if parts.port else ""
    secret = parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{parts.hostname}{port}/{'********' if secret else ''}"


def key(url: str) -> str:
    """What the drift database keys announcements by: a hash, never the URL."""
    return "sha256:" + hashlib.sha256(url.encode()).hexdigest()


def read_url(value: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """--notify URL, --notify @FILE (a file only its owner may read: it holds a credential), else the environment's
    REMEDIATE_NOTIFY_URL; None when none is given."""
    if value is None:
        from_env = environ.get(ENV_VAR, "").strip()
        return check_url(from_env) if from_env else None
    if not value.startswith("@"):
        return check_url(value)
    path = Path(value[1:]).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"--notify {value}: cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise InputError(f"--notify {value}: {path} holds a credential but others may read it "
                         f"(mode {stat.S_IMODE(mode):o}); chmod 600 {path}")
    return check_url(text)


def store_url(url: str, path: Path) -> str:
    """Write the URL to a file only its owner can read (atomically: a job never reads half a URL): written, updated
    or unchanged."""
    try:
        if path.read_text(encoding="utf-8").strip() == url and not path.stat().st_mode & 0o077:
            return "unchanged"
        action = "updated"
    except OSError:
        action = "written"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, url.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return action


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
        return f"POST {masked(url)} answered HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"POST {masked(url)} failed: {reason}"
    if not 200 <= status < 300:
        return f"POST {masked(url)} answered HTTP {status}"
    return None
