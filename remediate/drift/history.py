"""Drift history: every assessment in an embedded SQLite database in the state directory.

Runs are kept apart by what they checked (`CheckSet`: the playbook checks, with or without health checks), so
a report never compares a run of one playbook with a run of another cell by cell.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .model import PLAYBOOK_PREFIX, DriftReport, from_doc, to_doc

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
CREATE INDEX IF NOT EXISTS checks_run ON checks (run);
CREATE TABLE IF NOT EXISTS announced (
    env TEXT NOT NULL,
    url TEXT NOT NULL,
    drifted TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (env, url)
);
"""


# schema versions (PRAGMA user_version): 1 added what each run checked (playbook_set, health), the playbook
# files it ran and its duration; rows recorded before have their set filled in from their checks
SCHEMA_VERSION = 1


@dataclass(frozen=True, order=True)
class CheckSet:
    """What a run checked: its playbook checks (names without `playbook:`) and whether health checks ran."""

    playbooks: tuple[str, ...]
    health: bool

    @classmethod
    def of(cls, report: DriftReport) -> CheckSet:
        """The set of a recorded or fresh report, from the checks it holds."""
        names = {c.name for c in report.checks}
        playbooks = tuple(sorted(n[len(PLAYBOOK_PREFIX):] for n in names if n.startswith(PLAYBOOK_PREFIX)))
        return cls(playbooks, any(not n.startswith(PLAYBOOK_PREFIX) for n in names))

    def label(self) -> str:
        """For people: `a + b, with health checks`."""
        names = " + ".join(self.playbooks) or "no playbooks"
        return f"{names}, {'with' if self.health else 'without'} health checks"

    def column(self) -> str:
        """The playbook_set column's value."""
        return json.dumps(list(self.playbooks))


@dataclass(frozen=True)
class SetSummary:
    """One check set's runs in a window: how many, the first and the latest, and the playbook files last used."""

    check_set: CheckSet
    runs: int
    first: datetime
    latest: datetime
    playbooks: tuple[str, ...]


@dataclass(frozen=True)
class StoredRun:
    """One recorded assessment."""

    id: int
    recorded_at: datetime
    report: DriftReport


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """The history database (StateDir.history), created on first use; one transaction per `with`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a cron job and a person may write at the same moment: wait for the lock rather than fail
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.executescript(SCHEMA)
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _migrate(conn)
        with conn:
            yield conn
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    """Version 0 -> 1 in one transaction; a second process waiting on the lock finds it done and does nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < 1:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for name, kind in (("playbook_set", "TEXT"), ("health", "INTEGER"), ("playbooks", "TEXT"),
                               ("duration", "REAL")):
                if name not in columns:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            # an old row's set is exactly what its checks say; its playbook files and duration were not kept
            names: dict[int, set[str]] = {}
            for run, name in conn.execute("SELECT r.id, c.name FROM runs r LEFT JOIN checks c ON c.run = r.id"
                                          " WHERE r.playbook_set IS NULL"):
                names.setdefault(int(run), set()).update([name] if name else [])
            conn.executemany("UPDATE runs SET playbook_set = ?, health = ? WHERE id = ?", [
                (json.dumps(sorted(n[len(PLAYBOOK_PREFIX):] for n in found if n.startswith(PLAYBOOK_PREFIX))),
                 int(any(not n.startswith(PLAYBOOK_PREFIX) for n in found)), run)
                for run, found in names.items()
            ])
            conn.execute("CREATE INDEX IF NOT EXISTS runs_set ON runs (env, playbook_set, health, id)")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def record(report: DriftReport, path: Path, now: datetime | None = None) -> int:
    """Store one assessment; returns its row id."""
    recorded = (now or datetime.now(timezone.utc)).isoformat()
    checked = CheckSet.of(report)
    with connect(path) as conn:
        cur = conn.execute(
            "INSERT INTO runs (env, run_id, phase, started_at, recorded_at, exit_code, hosts, drifted, doc,"
            " playbook_set, health, playbooks, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (report.env, report.run_id, report.phase, _utc(report.started_at), recorded,
             int(report.exit_code()), len(report.hosts), json.dumps([c.key for c in report.drifted()]),
             json.dumps(to_doc(report)), checked.column(), int(checked.health), json.dumps(list(report.playbooks)),
             report.duration),
        )
        run = int(cur.lastrowid or 0)
        conn.executemany("INSERT INTO checks (run, host, name, status) VALUES (?, ?, ?, ?)",
                         [(run, c.host, c.name, c.status.value) for c in report.checks])
    return run


def _utc(when: datetime) -> str:
    """started_at as stored: ISO 8601 in UTC, so that text order is time order."""
    return when.astimezone(timezone.utc).isoformat()


def runs(env: str, last: int | None = None, path: Path | None = None, since: datetime | None = None,
         check_set: CheckSet | None = None) -> tuple[StoredRun, ...]:
    """An environment's runs, oldest first: started at or after `since`, of one check set, the newest `last`.

    `path` is the history database (StateDir.history); it has no default, only a place after `last`.
    """
    if path is None:
        raise ValueError("history.runs needs the history database's path")
    where, params = _window(env, since)
    if check_set is not None:
        where += " AND playbook_set = ? AND health = ?"
        params += [check_set.column(), int(check_set.health)]
    with connect(path) as conn:
        rows = conn.execute(f"SELECT id, recorded_at, doc FROM runs WHERE {where} ORDER BY id DESC LIMIT ?",
                            (*params, last if last is not None else -1)).fetchall()
    return tuple(StoredRun(int(i), datetime.fromisoformat(at), from_doc(json.loads(doc))) for i, at, doc in reversed(rows))


def _window(env: str, since: datetime | None) -> tuple[str, list[Any]]:
    if since is None:
        return "env = ?", [env]
    return "env = ? AND started_at >= ?", [env, _utc(since)]


def check_sets(env: str, path: Path, since: datetime | None = None) -> tuple[SetSummary, ...]:
    """The check sets an environment's runs used (in the window), the most recently used first."""
    where, params = _window(env, since)
    with connect(path) as conn:
        rows = conn.execute(
            f"SELECT playbook_set, health, COUNT(*), MIN(started_at), MAX(started_at), MAX(id) FROM runs WHERE {where}"
            " GROUP BY playbook_set, health ORDER BY MAX(id) DESC", params).fetchall()
        out = []
        for names, health, count, first, latest, newest in rows:
            used = conn.execute("SELECT playbooks FROM runs WHERE id = ?", (newest,)).fetchone()[0]
            out.append(SetSummary(CheckSet(tuple(json.loads(names)), bool(health)), int(count),
                                  datetime.fromisoformat(first), datetime.fromisoformat(latest),
                                  tuple(json.loads(used)) if used else ()))
    return tuple(out)


def announced(env: str, url: str, path: Path) -> frozenset[str]:
    """The drifted host/check keys last announced successfully to `url` (empty when never)."""
    with connect(path) as conn:
        row = conn.execute("SELECT drifted FROM announced WHERE env = ? AND url = ?", (env, url)).fetchone()
    return frozenset(json.loads(row[0])) if row else frozenset()


def set_announced(env: str, url: str, drifted: frozenset[str], path: Path,
                  now: datetime | None = None) -> None:
    """Remember what `url` was last told."""
    at = (now or datetime.now(timezone.utc)).isoformat()
    with connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO announced (env, url, drifted, at) VALUES (?, ?, ?, ?)",
                     (env, url, json.dumps(sorted(drifted)), at))


def render_text(stored: tuple[StoredRun, ...], env: str, path: Path | None = None) -> str:
    """`remediate drift history ENV`: one line per run: when, hosts, clean/drift, what."""
    if not stored:
        return f"no drift runs recorded for {env}" + (f" (history: {path})" if path else "")
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
