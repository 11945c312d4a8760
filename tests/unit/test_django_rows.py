"""django_rows / restore_rows against a fake host: planned from the rows as they are, diffed, audited, undone with CAS.

The fake answers the contract of templates/django_rows.py.j2 (read: values and differing fields; write: compare-
and-swap, then the fields that changed) from an in-memory table; the template itself runs against the real lab.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from remediate.core.audit import AuditLog, read_records
from remediate.core.errors import StepError
from remediate.core.options import RunOptions
from remediate.engine.host import HostRunner
from remediate.inputs.inventory import Host
from remediate.api import load_playbook
from remediate.core.results import Status
from remediate.engine.rollback import plan_from_records, rollback_plays
from remediate.core.changes import RowChange
from remediate.steps.rows import restore_plan
from remediate.transport.base import CommandResult
from tests.fakes import FakeFiles, FakeTransport, ok

CONFIG = json.dumps({"name": "edms", "services": {
    "backend": {"image": "edms", "build": {"context": "/srv/edms/backend"}},
    "celery_beat": {"image": "edms", "command": ["celery", "-A", "edms", "beat"]},
}}).encode()

PLAYBOOK = """\
- hosts: all
  name: rows
  vars: {compose_dir: /srv/edms}
  steps:
    - name: disable the 31-February row
      django_rows:
        service: backend
        model: django_celery_beat.PeriodicTask
        filter: {name: Send Test Email}
        set: {enabled: false}
        label: name
        reason: "celery 5.4.0's beat dies on it"
    - name: edit
      lineinfile: {path: /srv/edms/app.conf, line: "A=1"}
      notify: reload
  handlers:
    - name: reload
      command: {argv: [reload-beat]}
"""


class Table:
    """PeriodicTask rows as the row script sees them: pk -> field values; save() clears last_run_at when disabling."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {
            10: {"name": "Send Test Email", "enabled": True, "last_run_at": "2026-11-30T10:00:00+00:00"},
            11: {"name": "lab-heartbeat", "enabled": True, "last_run_at": None},
        }
        self.saves = 0

    def answer(self, env: Mapping[str, str]) -> dict[str, Any]:
        if env["REMEDIATE_MODE"] == "read":
            lookups = json.loads(env["REMEDIATE_FILTER"])
            want = json.loads(env["REMEDIATE_SET"])
            fields = list(dict.fromkeys([*json.loads(env["REMEDIATE_FIELDS"]), *want]))
            pks = lookups.get("pk__in")
            out = []
            for pk, row in sorted(self.rows.items()):
                if (pks is not None and pk not in pks) or (pks is None and row["name"] != lookups["name"]):
                    continue
                values = {f: row[f] for f in fields}
                label = row["name"] if env["REMEDIATE_LABEL"] == "name" else str(pk)
                out.append({"pk": pk, "label": label, "values": values,
                            "differs": [f for f, v in want.items() if values[f] != v]})
            return {"ok": True, "rows": out, "set": want}
        changes = json.loads(env["REMEDIATE_CHANGES"])
        conflicts = [f"{c['label']}: {k} is {json.dumps(self.rows[c['pk']][k])} now, not {json.dumps(v)}"
                     for c in changes for k, v in c["before"].items() if self.rows[c["pk"]][k] != v]
        if conflicts and env.get("REMEDIATE_FORCE") != "1":
            return {"ok": False, "conflicts": conflicts}
        done = []
        for c in changes:
            row = self.rows[c["pk"]]
            before = dict(row)
            row.update(c["after"])
            if not row["enabled"]:
                row["last_run_at"] = None  # what django-celery-beat's PeriodicTask.save() does
            self.saves += 1
            changed = [k for k in row if row[k] != before[k]]
            done.append({"pk": c["pk"], "label": c["label"], "before": {k: before[k] for k in changed},
                         "after": {k: row[k] for k in changed}})
        return {"ok": True, "changes": done, "forced": conflicts}


class Host_(FakeTransport):
    """A fake host whose `compose exec ... manage.py shell` answers from a Table (it needs the command's env)."""

    def __init__(self, table: Table, files: dict[str, bytes]) -> None:
        super().__init__()
        self.table = table
        compose = ("docker", "compose", "--project-directory", "/srv/edms")
        self.fs = FakeFiles(files)
        self.on(("sh", "-c"), self._sh).on(("test", "-d", "/srv/edms"), ok())
        self.on((*compose, "config"), ok(CONFIG)).on(("reload-beat",), ok())
        self.on((*compose, "exec", "-T"), self._exec)
        self._env: Mapping[str, str] = {}

    def _sh(self, argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        if argv[2].startswith("docker compose version"):
            return CommandResult(argv, 0, b"v2\n", b"")
        return self.fs._sh(argv, stdin)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None) -> CommandResult:
        self._env = dict(env or {})
        return super().run(argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout)

    def _exec(self, argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        assert argv[-3:] == ("python", "manage.py", "shell") and b"REMEDIATE_JSON:" in (stdin or b"")
        return CommandResult(argv, 0, b"noise from the shell\nREMEDIATE_JSON:" + json.dumps(self.table.answer(self._env)).encode(), b"")


def run(tmp_path: Path, host: Host_, run_id: str, check: bool = False, plays: Any = None) -> Any:
    if plays is None:
        (tmp_path / "p.yml").write_text(PLAYBOOK)
        plays = load_playbook(tmp_path / "p.yml")
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    return HostRunner(Host("h", "addr"), plays, host, RunOptions(check=check, diff=True), run_id,
                      audit=log.start(run_id, "rollback" if run_id.startswith("rb") else "apply",
                                      inventory={"path": str(tmp_path / "inv.yml")},
                                      playbooks=[{"path": str(tmp_path / "p.yml"), "sha256": "x"}])).run()


@pytest.fixture
def host() -> Host_:
    return Host_(Table(), {"/srv/edms/app.conf": b"# conf\n"})


def test_check_mode_shows_the_row_field_before_after_and_why_and_changes_nothing(tmp_path: Path, host: Host_) -> None:
    result = run(tmp_path, host, "run0", check=True)
    step = result.steps[0]
    assert step.status == Status.WOULD_CHANGE
    assert step.actions == ("would PeriodicTask 'Send Test Email': enabled true -> false (celery 5.4.0's beat dies on it)",)
    assert step.diff == ("--- h:django_celery_beat.PeriodicTask 'Send Test Email' (pk 10)\n"
                         "+++ h:django_celery_beat.PeriodicTask 'Send Test Email' (pk 10)\n"
                         "@@ celery 5.4.0's beat dies on it @@\n-enabled: true\n+enabled: false\n")
    assert host.table.saves == 0 and host.table.rows[10]["enabled"] is True


def test_apply_audits_before_and_after_and_a_second_apply_changes_nothing(tmp_path: Path, host: Host_) -> None:
    first = run(tmp_path, host, "run1")
    assert [s.status for s in first.steps] == [Status.CHANGED, Status.CHANGED, Status.CHANGED]
    assert host.table.rows[10] == {"name": "Send Test Email", "enabled": False, "last_run_at": None}
    records = [r for r in read_records(tmp_path / "state" / "audit.jsonl") if r.get("type") == "rows"]
    intent, result = records
    assert intent["event"] == "intent" and intent["changes"] == [
        {"pk": 10, "label": "Send Test Email", "before": {"enabled": True}, "after": {"enabled": False}}]
    assert "-enabled: true" in intent["diff"] and intent["reason"] == "celery 5.4.0's beat dies on it"
    # the result names what save() changed by itself too, so a rollback can put it back
    assert result["event"] == "result" and result["outcome"] == "ok" and result["changes"] == [
        {"pk": 10, "label": "Send Test Email", "before": {"enabled": True, "last_run_at": "2026-11-30T10:00:00+00:00"},
         "after": {"enabled": False, "last_run_at": None}}]
    again = run(tmp_path, host, "run2")
    assert again.steps[0].status == Status.OK and host.table.saves == 1


def test_rollback_restores_the_rows_after_the_files_and_their_reload(tmp_path: Path, host: Host_) -> None:
    run(tmp_path, host, "run1")
    plan = plan_from_records(read_records(tmp_path / "state" / "audit.jsonl"), "run1", "trail")
    plays = rollback_plays(plan, load_playbook(tmp_path / "p.yml"), force=False)
    assert [[s.kind for s in p.steps] for p in plays] == [["restore_backup"], ["restore_rows"]]
    result = run(tmp_path, host, "rb1", plays=plays)
    assert [s.name for s in result.steps] == [
        "restore /srv/edms/app.conf as it was before run run1", "reload",
        "restore django_celery_beat.PeriodicTask 'Send Test Email' as before run run1"]
    assert host.table.rows[10] == {"name": "Send Test Email", "enabled": True, "last_run_at": "2026-11-30T10:00:00+00:00"}
    assert host.fs.files["/srv/edms/app.conf"] == b"# conf\n"


def test_rollback_refuses_a_row_changed_since_unless_forced(tmp_path: Path, host: Host_) -> None:
    run(tmp_path, host, "run1")
    host.table.rows[10]["enabled"] = True  # someone re-enabled it by hand
    host.table.rows[10]["last_run_at"] = "2026-12-01T00:00:00+00:00"
    plan = plan_from_records(read_records(tmp_path / "state" / "audit.jsonl"), "run1", "trail")
    (rows_play,) = [p for p in rollback_plays(plan, load_playbook(tmp_path / "p.yml"), force=False)
                    if p.steps[0].kind == "restore_rows"]
    refused = run(tmp_path, host, "rb1", plays=(rows_play,))
    assert refused.status == Status.FAILED and "changed since that run" in refused.message
    assert "--force restores it anyway" in refused.message and host.table.rows[10]["last_run_at"].startswith("2026-12-01")


@pytest.mark.parametrize(("now", "force", "expect"), [
    ({"enabled": True, "last_run_at": "T"}, False, ()),                                # as it was: nothing to do
    ({"enabled": False, "last_run_at": None}, False,                                   # as the run left it: restore
     (RowChange(10, "x", {"enabled": False, "last_run_at": None}, {"enabled": True, "last_run_at": "T"}),)),
    ({"enabled": False, "last_run_at": "U"}, True,                                     # changed since, forced
     (RowChange(10, "x", {"enabled": False, "last_run_at": "U"}, {"enabled": True, "last_run_at": "T"}),)),
])
def test_restore_plan(now: dict[str, Any], force: bool, expect: tuple[RowChange, ...]) -> None:
    change = RowChange(10, "x", {"enabled": True, "last_run_at": "T"}, {"enabled": False, "last_run_at": None})
    assert restore_plan("m.M", [change], {"10": now}, force) == expect


def test_restore_plan_refuses_changed_and_gone_rows() -> None:
    change = RowChange(10, "x", {"enabled": True}, {"enabled": False})
    with pytest.raises(StepError, match=r"m\.M 'x' \(pk 10\) changed since that run \(enabled null"):
        restore_plan("m.M", [change], {"10": {"enabled": None}}, False)
    with pytest.raises(StepError, match="is gone"):
        restore_plan("m.M", [change], {}, True)
