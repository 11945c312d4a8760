"""The trail protects its own evidence: before a run appends, the trail's tail is checked against audit.head;
a trail whose last records were removed or replaced (or whose head was deleted) makes the run refuse (exit 1,
with `audit verify`'s message, the trail left as it is) unless --force-audit-continue, which records the break
as a record of its own that `audit verify` keeps naming. A head that merely lags (an append killed between its
two writes) is not a break."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.conftest import Done, Target, records, run

pytestmark = [pytest.mark.reliability]

PLAYBOOK = """\
- hosts: all
  name: tail
  steps:
    - name: a line
      lineinfile: {path: "{{ conf }}", line: "{{ marker }}"}
"""


@pytest.fixture
def apply(tmp_path: Path, state: Path):  # type: ignore[no-untyped-def]
    conf = tmp_path / "project" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("# app\n")
    inventory = Target("local").inventory(tmp_path / "inv.yml", {"here": {"conf": str(conf),
                                                                          "backup_dir": str(tmp_path / "b")}})
    playbook = tmp_path / "pb.yml"
    playbook.write_text(PLAYBOOK)

    def go(marker: str, *extra: str) -> Done:
        return run("apply", "x", "-i", str(inventory), "-p", str(playbook), "-e", f"marker={marker}", *extra)

    first = go("one")
    assert first.rc == 0, first.text
    second = go("two", "--check")
    assert second.rc == 2, second.text
    return go


def drop_last_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))


def refused(out: Done, problem: str) -> bool:
    return out.rc == 1 and problem in out.err and "audit verify" in out.err and "--force-audit-continue" in out.err


def test_records_removed_from_the_end_make_the_next_run_refuse(apply, state: Path) -> None:  # type: ignore[no-untyped-def]
    drop_last_line(state / "audit.jsonl")
    before = (state / "audit.jsonl").read_bytes()
    out = apply("three", "--check")
    assert refused(out, "removed from the end"), out.text
    assert (state / "audit.jsonl").read_bytes() == before, "the run appended to a trail it found broken"
    assert run("audit", "verify").rc == 1


def test_a_replaced_last_record_makes_the_next_run_refuse(apply, state: Path) -> None:  # type: ignore[no-untyped-def]
    trail = state / "audit.jsonl"
    lines = trail.read_bytes().splitlines(keepends=True)
    last = json.loads(lines[-1])
    last["summary"] = {"ok": 1, "changed": 0, "failed": 0, "unreachable": 0, "pending": 0}
    from hashlib import sha256

    body = {k: v for k, v in last.items() if k != "hash"}
    last["hash"] = sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    trail.write_bytes(b"".join(lines[:-1]) + json.dumps(last, sort_keys=True, separators=(",", ":"),
                                                        ensure_ascii=False).encode() + b"\n")
    out = apply("three")
    assert refused(out, "was replaced"), out.text


def test_a_deleted_head_makes_the_next_run_refuse(apply, state: Path) -> None:  # type: ignore[no-untyped-def]
    (state / "audit.head").unlink()
    out = apply("three")
    assert refused(out, "audit.head"), out.text


def test_force_audit_continue_records_the_break_and_verify_keeps_naming_it(apply, state: Path) -> None:  # type: ignore[no-untyped-def]
    drop_last_line(state / "audit.jsonl")
    kept = len(records(state))
    out = apply("three", "--force-audit-continue")
    assert out.rc == 0, out.text
    breaks = [r for r in records(state) if r.get("event") == "audit_break"]
    assert len(breaks) == 1 and "removed from the end" in breaks[0]["problem"], breaks
    assert breaks[0]["seq"] == kept + 1, "the break is the first record after what was left"
    assert breaks[0]["run_id"] == out.run_id
    verify = run("audit", "verify")
    assert verify.rc == 1 and "removed from the end" in verify.out and "--force-audit-continue" in verify.out, verify.out
    shown = run("audit", "show", out.run_id or "")
    assert "removed from the end" in shown.out, shown.out
    again = apply("four")
    assert again.rc == 0, "once recorded, the break does not stop later runs"


def test_a_head_that_lags_its_trail_is_not_a_break(apply, state: Path) -> None:  # type: ignore[no-untyped-def]
    """An append killed after its records reached the disk and before the head moved: the records chain."""
    head = (state / "audit.head").read_bytes()
    out = apply("three")
    assert out.rc == 0, out.text
    (state / "audit.head").write_bytes(head)
    after = apply("four")
    assert after.rc == 0, after.text
    assert run("audit", "verify").rc == 0
