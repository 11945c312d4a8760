"""Where backups go and when prune may remove them: the pure parts, table-driven."""
from __future__ import annotations

import calendar
import time
from typing import Any

import pytest

from remediate.backups import TrailView, decide

from remediate.facts.backups import BackupFile, RunBackups, parse_listing, run_started
from remediate.core.errors import StepError
from remediate.facts.files import FileFact, backup_path
from remediate.steps.base import PlanContext
from remediate.steps.files import LineInFile, check_backup_root

ROOT = "/var/lib/remediate/backups"
DAY = 86400.0


@pytest.mark.parametrize("root, run, path, expected", [
    (ROOT, "r1", "/srv/edms/backend/edms/settings/base.py", f"{ROOT}/r1/srv/edms/backend/edms/settings/base.py"),
    ("/home/deploy/.local/state/remediate/backups", "r1", "/srv/a.py", "/home/deploy/.local/state/remediate/backups/r1/srv/a.py"),
    (ROOT, "r1", "/srv/x/../y/./a.py", f"{ROOT}/r1/srv/y/a.py"),  # never outside the run's directory
    (ROOT, "r1", "//srv//a.py", f"{ROOT}/r1/srv/a.py"),
    (ROOT, "r1", "relative/a.py", "needs an absolute path"),
    ("", "r1", "/srv/a.py", "no backup directory is known"),
    (ROOT, "../r1", "/srv/a.py", "cannot name a backup directory"),
    (ROOT, ".staging", "/srv/a.py", "cannot name a backup directory"),
])
def test_backup_path_mirrors_the_absolute_path_under_the_run(root: str, run: str, path: str, expected: str) -> None:
    if expected.startswith("/"):
        assert backup_path(root, run, path) == expected
    else:
        with pytest.raises(StepError, match=expected):
            backup_path(root, run, path)


@pytest.mark.parametrize("root, path, compose_dir, refused", [
    (ROOT, "/srv/edms/backend/edms/settings/base.py", "/srv/edms", None),
    ("/srv/edms/.backups", "/srv/edms/backend/edms/settings/base.py", "/srv/edms", "is inside /srv/edms"),
    ("/srv/edms", "/srv/edms/backend/base.py", "/srv/edms", "is inside /srv/edms"),
    ("/srv/edms/backend/edms/settings/bak", "/srv/edms/backend/edms/settings/base.py", None,
     "is inside /srv/edms/backend/edms/settings"),  # beside the file, without compose_dir known
    ("/srv/edms-backups", "/srv/edms/backend/base.py", "/srv/edms", None),  # a prefix of the name is not inside
    (ROOT, "/f", None, None),
])
def test_backups_inside_the_project_are_refused(root: str, path: str, compose_dir: str | None, refused: str | None) -> None:
    fact = FileFact(path, True, b"x\n", "644", 0, 0, root)
    ctx = PlanContext("h", "r1", {"compose_dir": compose_dir} if compose_dir else {})
    if refused is None:
        check_backup_root(fact, ctx)
    else:
        with pytest.raises(StepError, match=refused):
            check_backup_root(fact, ctx)


def test_the_backup_dir_host_variable_reaches_the_files_probe() -> None:
    step = LineInFile.build({**LineInFile.var_defaults({"backup_dir": "/data/bk"}), "path": "/srv/a", "line": "x"},
                            LineInFile.where, "step")
    assert step.probes()[0] == step.probe("/srv/a") and step.probe("/srv/a").backup_dir == "/data/bk"
    assert LineInFile.var_defaults({}) == {}


def test_listing_parses_runs_files_and_staging() -> None:
    data = (b"ROOT\0/b/\0R\0" b"20261124T101500Z-1a2b3c\0" b"1700000000\0F\0srv/a.py\0" b"12\0F\0srv/b c.py\0" b"3\0"
            b"R\0odd-name\0" b"1700000100\0S\0/b/.staging/w.abc\0stale\0")
    found = parse_listing("h", data)
    assert found.root == "/b"
    first, second = found.runs
    assert first.run_id == "20261124T101500Z-1a2b3c" and first.size == 15
    assert first.files == (BackupFile("/srv/a.py", 12), BackupFile("/srv/b c.py", 3))
    assert first.started == calendar.timegm((2026, 11, 24, 10, 15, 0, 0, 0, 0))
    assert (second.run_id, second.started, second.files) == ("odd-name", 1700000100.0, ())
    assert found.staging == (("/b/.staging/w.abc", "stale"),)
    with pytest.raises(StepError, match="unexpected output"):
        parse_listing("h", b"ROOT\0/b\0X\0")


def test_run_started_comes_from_the_run_id_else_the_mtime() -> None:
    assert run_started("20261124T101500Z-1a2b3c", 5.0) == calendar.timegm((2026, 11, 24, 10, 15, 0, 0, 0, 0))
    assert run_started("manual", 5.0) == 5.0


def _write(run: str, host: str, path: str, before: str, after: str, root: str = ROOT, created: bool = False) -> dict[str, Any]:
    return {"run_id": run, "event": "result", "outcome": "ok", "type": "write", "host": host, "path": path,
            "backup": None if created else f"{root}/{run}{path}", "before_sha256": before, "after_sha256": after,
            "created": created, "notify": [], "playbook": "/p.yml", "play": "p"}


def _start(run: str, command: str = "apply", **fields: Any) -> dict[str, Any]:
    return {"run_id": run, "event": "run_start", "command": command, **fields}


RECORDS = [
    _start("r1"), _write("r1", "h", "/srv/a.py", "a0", "a1"), _write("r1", "h", "/srv/b.py", "b0", "b1"),
    _start("r2"), _write("r2", "h", "/srv/a.py", "a1", "a2"),
    _start("rb", "rollback", rollback_of="r2", options={"check": False}),
    {"run_id": "rb", "event": "host_end", "host": "h", "status": "changed"},
    _start("rbc", "rollback", rollback_of="r1", options={"check": True}),  # a --check rollback undoes nothing
    {"run_id": "rbc", "event": "host_end", "host": "h", "status": "ok"},
    _start("r3"), {"run_id": "r3", "event": "result", "outcome": "failed", "type": "write", "host": "h", "path": "/srv/c.py"},
    _start("r4"), _write("r4", "h", "/srv/new.py", "absent", "n1", created=True),
]
OLD = time.time() - 40 * DAY

# run, host, current sha256 of its files, older_than, force -> remove?, reason
CASES: dict[str, tuple[str, str, dict[str, str], float, bool, bool, str]] = {
    "needed: a file still as the run left it": ("r1", "h", {"/srv/a.py": "a2", "/srv/b.py": "b1"}, 30 * DAY, False,
                                                False, "`remediate rollback r1` would restore /srv/b.py"),
    "needed, forced": ("r1", "h", {"/srv/b.py": "b1"}, 30 * DAY, True, True, "--force: `remediate rollback r1`"),
    "every file changed since": ("r1", "h", {"/srv/a.py": "a2", "/srv/b.py": "bX"}, 30 * DAY, False, True,
                                 "every file it backed up changed since (/srv/a.py and 1 more)"),
    "a file deleted since": ("r1", "h", {"/srv/a.py": "absent", "/srv/b.py": "absent"}, 30 * DAY, False, True, "changed since"),
    "rolled back": ("r2", "h", {"/srv/a.py": "a2"}, 30 * DAY, False, True, "rolled back by run rb"),
    "a --check rollback rolls nothing back": ("r1", "h", {"/srv/a.py": "a1"}, 30 * DAY, False, False, "would restore /srv/a.py"),
    "young": ("r1", "h", {"/srv/a.py": "a1"}, 60 * DAY, True, False, "younger than 60d (40d old)"),
    "unknown to this trail": ("r9", "h", {}, 30 * DAY, False, False, "not in this controller's audit trail"),
    "unknown, forced": ("r9", "h", {}, 30 * DAY, True, True, "--force: not in this controller's audit trail"),
    "its writes failed": ("r3", "h", {}, 30 * DAY, False, True, "no file it changed on this host can be restored"),
    "it only created files": ("r4", "h", {"/srv/new.py": "n1"}, 30 * DAY, False, True, "no file it changed"),
    "another host's changes do not count": ("r1", "other", {"/srv/a.py": "a1"}, 30 * DAY, False, True, "no file it changed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_prune_decides_what_a_rollback_still_needs(case: str) -> None:
    run_id, host, shas, older_than, force, remove, reason = CASES[case]
    files = tuple(BackupFile(p, 10) for p in ("/srv/a.py", "/srv/b.py"))
    d = decide(host, ROOT, RunBackups(run_id, OLD, files), TrailView.of(RECORDS), shas, time.time(), older_than, force)
    assert d.remove is remove and reason in d.reason, d


def test_backups_in_a_former_backup_dir_are_not_what_the_run_recorded() -> None:
    """A run whose trail names backups under another root does not keep this root's directory."""
    trail = TrailView.of([_start("r1"), _write("r1", "h", "/srv/a.py", "a0", "a1", root="/old")])
    d = decide("h", ROOT, RunBackups("r1", OLD), trail, {"/srv/a.py": "a1"}, time.time(), DAY, False)
    assert d.remove and "no file it changed" in d.reason
