"""Drift history: every assessment in an embedded SQLite database in the state directory."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .drift import DriftReport, from_doc, to_doc
from .state import state_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    env TEXT NOT NULL,
    run_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    started_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    hosts INTEGER NOT NULL,
    drifted TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_env ON runs (env, id);
CREATE TABLE IF NOT EXISTS checks (
    run INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS announced (
    env TEXT NOT NULL,
    url TEXT NOT NULL,
    drifted TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (env, url)
);
"""


@dataclass(frozen=True)
class StoredRun:
    """One recorded assessment."""

    id: int
    recorded_at: datetime
    report: DriftReport


def default_path() -> Path:
    """drift.sqlite3 in the state directory."""
    return state_dir() / "drift.sqlite3"


@contextmanager
def connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    """The history database, created on first use; one transaction per `with`."""
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # a cron job and a person may write at the same moment: wait for the lock rather than fail
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.executescript(SCHEMA)
        with conn:
            yield conn
    finally:
        conn.close()


def record(report: DriftReport, path: Path | None = None, now: datetime | None = None) -> int:
    """Store one assessment; returns its row id."""
    recorded = (now or datetime.now(timezone.utc)).isoformat()
    with connect(path) as conn:
        cur = conn.execute(
            "INSERT INTO runs (env, run_id, phase, started_at, recorded_at, exit_code, hosts, drifted, doc)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (report.env, report.run_id, report.phase, report.started_at.isoformat(), recorded,
             int(report.exit_code()), len(report.hosts), json.dumps([c.key for c in report.drifted()]),
             json.dumps(to_doc(report))),
        )
        run = int(cur.lastrowid or 0)
        conn.executemany("INSERT INTO checks (run, host, name, status) VALUES (?, ?, ?, ?)",
                         [(run, c.host, c.name, c.status.value) for c in report.checks])
    return run


def runs(env: str, last: int | None = None, path: Path | None = None) -> tuple[StoredRun, ...]:
    """An environment's runs, oldest first (the newest `last` when given)."""
    with connect(path) as conn:
        rows = conn.execute(
            "SELECT id, recorded_at, doc FROM runs WHERE env = ? ORDER BY id DESC LIMIT ?",
            (env, last if last is not None else -1),
        ).fetchall()
    return tuple(StoredRun(int(i), datetime.fromisoformat(at), from_doc(json.loads(doc))) for i, at, doc in reversed(rows))


def announced(env: str, url: str, path: Path | None = None) -> frozenset[str]:
    """The drifted host/check keys last announced successfully to `url` (empty when never)."""
    with connect(path) as conn:
        row = conn.execute("SELECT drifted FROM announced WHERE env = ? AND url = ?", (env, url)).fetchone()
    return frozenset(json.loads(row[0])) if row else frozenset()


def set_announced(env: str, url: str, drifted: frozenset[str], path: Path | None = None,
                  now: datetime | None = None) -> None:
    """Remember what `url` was last told."""
    at = (now or datetime.now(timezone.utc)).isoformat()
    with connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO announced (env, url, drifted, at) VALUES (?, ?, ?, ?)",
                     (env, url, json.dumps(sorted(drifted)), at))


def render_text(stored: tuple[StoredRun, ...], env: str) -> str:
    """`remediate drift history ENV`: one line per run: when, hosts, clean/drift, what."""
    if not stored:
        return f"no drift runs recorded for {env} (history: {default_path()})"
    lines = []
    for s in stored:
        r = s.report
        verdict = {0: "clean", 1: "error", 2: "drift"}[int(r.exit_code())]
        when = r.started_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        what = ", ".join(c.key for c in r.checks if c.status.value in ("drift", "error"))
        phase = " (after fix)" if r.phase == "after-fix" else ""
        lines.append(f"{when}  {r.run_id}  hosts={len(r.hosts)}  {verdict:<5}{phase}" + (f"  {what}" if what else ""))
    return "\n".join(lines)


def render_json(stored: tuple[StoredRun, ...]) -> str:
    """History as one JSON document."""
    return json.dumps([{"id": s.id, "recorded_at": s.recorded_at.isoformat(), **to_doc(s.report)} for s in stored],
                      indent=2, default=str)
