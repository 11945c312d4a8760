"""Owed reloads, automatic rollback on a failed verification, failing closed, and rollback planning (fake transport)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from remediate.actions import RemoveFile, WriteFile
from remediate.core.audit import AuditError, AuditLog, RunAudit, read_records
from remediate.core.errors import InputError, StepError
from remediate.core.options import RunOptions
from remediate.engine.host import HostRunner
from remediate.facts.files import _WRITE, FileFact
from remediate.inputs.inventory import Host
from remediate.engine.pending import PendingStore
from remediate.api import load_playbook
from remediate.core.redact import Redactor
from remediate.core.results import Status
from remediate.engine.rollback import plan_from_records
from remediate.steps.base import PlanContext
from remediate.facts.files import FileProbe
from remediate.steps.files import RestoreBackup
from remediate.transport.base import CommandResult
from tests.fakes import FakeFiles, FakeTransport, ok

PLAYBOOK = """\
- hosts: all
  name: app
  %(extra)s
  steps:
    - name: set A
      lineinfile: {path: /etc/app.conf, line: "A=1"}
      notify: reload
    - name: probe
      command: {argv: [probe]}
      verify: %(verify)s
  handlers:
    - name: reload
      command: {argv: [reload-app]}
"""


def setup(tmp_path: Path, probe_rc: list[int], extra: str = "", verify: str = "false") -> tuple[FakeFiles, FakeTransport, Any]:
    (tmp_path / "p.yml").write_text(PLAYBOOK % {"extra": extra, "verify": verify})
    files = FakeFiles({"/etc/app.conf": b"# settings\n"})
    t = files.attach(FakeTransport())
    t.on(("probe",), lambda a, s: ok(rc=probe_rc[0])(a, s)).on(("reload-app",), ok())
    return files, t, load_playbook(tmp_path / "p.yml")


def runner(tmp_path: Path, t: FakeTransport, plays: Any, run_id: str, check: bool = False,
           audit: RunAudit | None = None) -> HostRunner:
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    return HostRunner(Host("h", "addr"), plays, t, RunOptions(check=check), run_id,
                      audit=audit or log.start(run_id, "apply"), pending=PendingStore(tmp_path / "state" / "pending"))


def test_reload_owed_after_a_later_failure_is_carried_out_by_the_next_run(tmp_path: Path) -> None:
    probe_rc = [1]
    files, t, plays = setup(tmp_path, probe_rc)
    first = runner(tmp_path, t, plays, "run1").run()
    assert first.status == Status.FAILED and ("reload-app",) not in t.calls
    owed = PendingStore(tmp_path / "state" / "pending").load("h")
    assert [(o.handler, o.paths, o.run_id) for o in owed] == [("reload", ("/etc/app.conf",), "run1")]

    check = runner(tmp_path, t, plays, "run2", check=True).run()
    assert check.steps[-1].handler and check.steps[-1].status == Status.WOULD_CHANGE
    assert PendingStore(tmp_path / "state" / "pending").load("h") == owed, "check mode settles nothing"

    probe_rc[0] = 0
    second = runner(tmp_path, t, plays, "run3").run()
    assert second.steps[-1].handler and t.calls.count(("reload-app",)) == 1
    assert [s.status for s in second.steps[:1]] == [Status.OK], "no file changed this time"
    assert any("owed since run run1" in n for n in second.notices)
    assert PendingStore(tmp_path / "state" / "pending").load("h") == ()

    third = runner(tmp_path, t, plays, "run4").run()
    assert not any(s.handler for s in third.steps) and t.calls.count(("reload-app",)) == 1


def test_failed_verification_rolls_back_and_reloads_when_the_play_says_so(tmp_path: Path) -> None:
    files, t, plays = setup(tmp_path, [1], extra="on_verify_failure: rollback", verify="true")
    result = runner(tmp_path, t, plays, "run1").run()
    assert result.status == Status.FAILED
    assert files.files["/etc/app.conf"] == b"# settings\n"
    assert files.files["/var/lib/remediate/backups/run1/etc/app.conf"] == b"# settings\n"
    assert not [p for p in files.files if p.startswith("/etc/") and p != "/etc/app.conf"], "nothing beside the file"
    assert t.calls.count(("reload-app",)) == 1, "the reload runs once, for the restored file"
    assert [s.name for s in result.steps] == ["set A", "probe", "restore /etc/app.conf as it was before run run1", "reload"]
    assert any("rolled back 1 file(s)" in n for n in result.notices)
    assert PendingStore(tmp_path / "state" / "pending").load("h") == ()


def test_without_on_verify_failure_a_failed_verification_leaves_the_change(tmp_path: Path) -> None:
    files, t, plays = setup(tmp_path, [1], verify="true")
    runner(tmp_path, t, plays, "run1").run()
    assert files.files["/etc/app.conf"] == b"# settings\nA=1\n"


class BrokenTrail(RunAudit):
    """A trail that stops accepting records (disk full) when a change is about to be made."""

    def record(self, event: str, host: str | None = None, **fields: Any) -> dict[str, Any]:
        if event == "intent":
            raise AuditError("cannot write the audit trail /x/audit.jsonl: No space left on device")
        return {}


def test_no_change_when_the_intent_cannot_be_recorded(tmp_path: Path) -> None:
    files, t, plays = setup(tmp_path, [0])
    trail = BrokenTrail(AuditLog(tmp_path / "unused.jsonl"), "run1", Redactor())
    result = runner(tmp_path, t, plays, "run1", audit=trail).run()
    assert result.status == Status.FAILED
    assert "No space left on device; refusing to make this change, nothing was changed" in result.message
    assert files.writes == [] and ("probe",) not in t.calls


def test_intent_before_and_result_after_each_change(tmp_path: Path) -> None:
    files, t, plays = setup(tmp_path, [0])
    runner(tmp_path, t, plays, "run1").run()
    events = [(r["event"], r.get("step")) for r in read_records(tmp_path / "state" / "audit.jsonl")]
    assert events == [
        ("run_start", None), ("host", None),
        ("intent", "set A"), ("result", "set A"), ("step", "set A"),
        ("intent", "probe"), ("result", "probe"), ("step", "probe"),
        ("intent", "reload"), ("result", "reload"), ("step", "reload"), ("host_end", None),
    ]
    intent = read_records(tmp_path / "state" / "audit.jsonl")[2]
    assert intent["before_sha256"] == hashlib.sha256(b"# settings\n").hexdigest()
    assert intent["after_sha256"] == hashlib.sha256(b"# settings\nA=1\n").hexdigest()
    assert "+A=1" in intent["diff"] and intent["backup"] == "/var/lib/remediate/backups/run1/etc/app.conf"
    assert (intent["backup_dir"], intent["before_mode"], intent["before_owner"]) == ("/var/lib/remediate/backups", "644", "0:0")


def fact(path: str, data: bytes | None, root: str = "/backups") -> FileFact:
    return FileFact(path, data is not None, data or b"", "640" if data is not None else "", backup_root=root)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CASES = {
    "restores": (dict(backup="/f.bak", expected_sha256=sha(b"new")), b"new", b"old", WriteFile),
    "already restored": (dict(backup="/f.bak", expected_sha256=sha(b"new")), b"old", b"old", None),
    "changed since": (dict(backup="/f.bak", expected_sha256=sha(b"new")), b"other", b"old", "changed since that run"),
    "changed since, forced": (dict(backup="/f.bak", expected_sha256=sha(b"new"), force=True), b"other", b"old", WriteFile),
    "deleted since, forced": (dict(backup="/f.bak", expected_sha256=sha(b"new"), force=True), None, b"old", WriteFile),
    "backup missing": (dict(backup="/f.bak", expected_sha256=sha(b"new")), b"new", None, "backup /f.bak is missing"),
    "backup altered": (dict(backup="/f.bak", expected_sha256=sha(b"new"), original_sha256=sha(b"orig")), b"new", b"old",
                       "changed since it was made"),
    "created: removed": (dict(expected_sha256=sha(b"new")), b"new", None, RemoveFile),
    "created: already gone": (dict(expected_sha256=sha(b"new")), None, None, None),
    # backups are 0600: a file created again gets the original's mode and owner, recorded in the trail
    "removed since, recreated with the recorded mode": (
        dict(backup="/f.bak", expected_sha256=sha(b"new"), force=True, mode="755", owner="12:34"), None, b"old", WriteFile),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_restore_backup_plans(case: str) -> None:
    args, current, saved, expect = CASES[case]
    step = RestoreBackup("/f", **args)
    facts = {FileProbe("/f"): fact("/f", current), FileProbe("/f.bak"): fact("/f.bak", saved)}
    if isinstance(expect, str):
        with pytest.raises(StepError, match=expect):
            step.plan(facts, PlanContext("h", "r"))
        return
    actions = step.plan(facts, PlanContext("h", "r"))
    if expect is None:
        assert actions == ()
        return
    (action,) = actions
    assert isinstance(action, expect)
    if isinstance(action, WriteFile):
        assert action.content == saved
        assert (action.mode, action.owner) == (args.get("mode", "640"), args.get("owner", ""))


def test_rollback_plan_keeps_the_first_original_and_the_last_result_per_file() -> None:
    start = {"run_id": "r1", "event": "run_start", "command": "apply", "inventory": {"path": "/inv.yml"},
             "playbooks": [{"path": "/p.yml", "sha256": "x"}]}
    def write(seq: int, before: str, after: str, notify: list[str]) -> dict[str, Any]:
        return {"seq": seq, "run_id": "r1", "event": "result", "outcome": "ok", "type": "write", "host": "h",
                "path": "/f", "backup": "/b/r1/f", "before_sha256": before, "after_sha256": after,
                "created": False, "notify": notify, "playbook": "/p.yml", "play": "app"}
    plan = plan_from_records([start, write(2, "a", "b", ["x"]), write(3, "b", "c", ["y"])], "r1", "/t")
    (change,) = plan.changes
    assert (change.original_sha256, change.after_sha256, change.notify) == ("a", "c", ("x", "y"))
    assert str(change.where) == "/t:2"
    with pytest.raises(InputError, match="no run 'r9'"):
        plan_from_records([start], "r9", "/t")
    with pytest.raises(InputError, match="changed no file"):
        plan_from_records([start], "r1", "/t")


def test_unscripted_fake_command_is_refused() -> None:
    with pytest.raises(AssertionError):
        FakeTransport().run(["rm", "-rf", "/"])
    assert CommandResult(("x",), 0, b"", b"").ok


class InterruptibleFake(FakeTransport):
    """A fake that counts requests to kill the running command."""

    kills: int = 0

    def interrupt(self) -> None:
        self.kills += 1


def test_interrupt_during_a_write_lets_it_finish_and_starts_nothing_after(tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text(PLAYBOOK % {"extra": "", "verify": "false"})
    plays = load_playbook(tmp_path / "p.yml")
    files = FakeFiles({"/etc/app.conf": b"# settings\n"})
    t = InterruptibleFake()
    holder: list[HostRunner] = []

    def write_then_signal(argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        if argv[2] == _WRITE:
            holder[0].interrupt()  # SIGINT arrives while the write is on the wire
        return files._sh(argv, stdin)

    t.on(("sh", "-c"), write_then_signal).on(("probe",), ok()).on(("reload-app",), ok())
    r = runner(tmp_path, t, plays, "run1")
    holder.append(r)
    result = r.run()
    assert files.files["/etc/app.conf"] == b"# settings\nA=1\n", "the write in flight finished"
    assert t.kills == 0, "a write is never killed"
    assert ("probe",) not in t.calls and ("reload-app",) not in t.calls
    assert result.status == Status.FAILED and result.message.startswith("interrupted before step 'probe'")
    owed = PendingStore(tmp_path / "state" / "pending").load("h")
    assert [o.handler for o in owed] == ["reload"], "the reload is owed to the next run"


def test_interrupt_during_a_command_kills_it(tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text(PLAYBOOK % {"extra": "", "verify": "false"})
    plays = load_playbook(tmp_path / "p.yml")
    files = FakeFiles({"/etc/app.conf": b"# settings\nA=1\n"})
    t = InterruptibleFake()
    holder: list[HostRunner] = []

    def probe(argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        holder[0].interrupt()
        from remediate.core.errors import Interrupted
        raise Interrupted("interrupted: probe (remote process group 42 killed)")

    files.attach(t).on(("probe",), probe)
    r = runner(tmp_path, t, plays, "run1")
    holder.append(r)
    result = r.run()
    assert t.kills == 1
    assert result.message.startswith("interrupted during step 'probe'") and "process group 42 killed" in result.message
