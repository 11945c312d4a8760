"""The audit trail's hash chain: intact, and every kind of tampering named by record; concurrent appends."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from remediate import cli
from remediate.core.audit import AuditError, AuditLog, read_records, verify
from remediate.core.redact import Redactor


def trail(tmp_path: Path, n: int = 5) -> Path:
    log = AuditLog(tmp_path / "audit.jsonl", clock=lambda: 0.0)
    run = log.start("run-1", "apply", Redactor(("s3cret-value",)), why={"reason": "test"})
    for i in range(2, n + 1):
        run.record("intent", "web-1", step=f"step {i}", message=f"message {i} with s3cret-value")
    return log.path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_intact_trail_verifies_and_records_are_chained_and_redacted(tmp_path: Path) -> None:
    path = trail(tmp_path)
    assert verify(path).ok and verify(path).records == 5
    records = read_records(path)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == "0" * 64 and records[0]["who"]["local_user"]
    import hashlib
    assert records[3]["prev"] == hashlib.sha256(lines(path)[2].rstrip(b"\n")).hexdigest()
    assert b"s3cret-value" not in path.read_bytes() and records[2]["message"] == "message 3 with ********"


def test_one_byte_changed_names_the_record(tmp_path: Path) -> None:
    path = trail(tmp_path)
    data = lines(path)
    data[2] = data[2].replace(b"message 3", b"message 4")
    path.write_bytes(b"".join(data))
    verdict = verify(path)
    assert not verdict.ok and verdict.problem.startswith("record 3 (line 3) was edited")


def test_one_byte_that_breaks_json_names_the_line(tmp_path: Path) -> None:
    path = trail(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[lines(path)[0].__len__()] = ord("X")  # the first byte of line 2
    path.write_bytes(bytes(raw))
    assert verify(path).problem == "line 2: not a valid record: record 2 was edited"


def test_deleted_line_names_the_missing_record(tmp_path: Path) -> None:
    path = trail(tmp_path)
    data = lines(path)
    del data[2]
    path.write_bytes(b"".join(data))
    assert verify(path).problem == "record 3 was removed (line 3 holds record 4)"


def test_swapped_lines_are_named(tmp_path: Path) -> None:
    path = trail(tmp_path)
    data = lines(path)
    data[1], data[2] = data[2], data[1]
    path.write_bytes(b"".join(data))
    assert verify(path).problem == "records are out of order: line 2 holds record 3, record 2 is at line 3"


def test_removed_last_record_is_seen_through_the_head(tmp_path: Path) -> None:
    path = trail(tmp_path)
    path.write_bytes(b"".join(lines(path)[:-1]))
    assert verify(path).problem == "record 5 removed from the end (the trail had 5 records)"


def test_deleted_trail_is_seen_through_the_head(tmp_path: Path) -> None:
    path = trail(tmp_path)
    path.unlink()
    assert verify(path).problem == "records 1-5 removed from the end (the trail had 5 records)"
    assert verify(tmp_path / "elsewhere" / "audit.jsonl").ok, "no trail and no head: nothing was ever written"


def test_rewritten_record_with_a_fresh_hash_breaks_the_chain(tmp_path: Path) -> None:
    from remediate.core.audit import _canonical, record_hash

    path = trail(tmp_path)
    data = lines(path)
    record = json.loads(data[1])
    record["message"] = "forged"
    record["hash"] = record_hash(record)
    data[1] = _canonical(record) + b"\n"
    path.write_bytes(b"".join(data))
    assert verify(path).problem == "record 3 (line 3) does not chain to the record before it: record 2 was edited or replaced"


def test_cli_audit_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = trail(tmp_path)
    assert cli.main(["audit", "verify", "--file", str(path)]) == 0
    assert "intact, 5 record(s)" in capsys.readouterr().out
    data = lines(path)
    path.write_bytes(b"".join([data[0], data[2], data[1], *data[3:]]))
    assert cli.main(["audit", "verify", "--file", str(path)]) == 1
    assert "TAMPERED: records are out of order: line 2 holds record 3" in capsys.readouterr().out


def test_parallel_appends_stay_one_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    run = log.start("run-1", "apply")

    def host(name: str) -> None:
        for i in range(40):
            run.record("intent", name, step=str(i))

    threads = [threading.Thread(target=host, args=(f"web-{n}",)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify(log.path).ok and verify(log.path).records == 201


def test_concurrent_appends_share_fsyncs_and_each_is_on_disk_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    run = log.start("run-1", "apply")
    syncs = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # a disk that takes a while: records queue up behind the flush
        syncs.append(fd)
        time.sleep(0.005)
        real_fsync(fd)

    monkeypatch.setattr("remediate.core.audit.os.fsync", slow_fsync)
    missing = []

    def host(name: str) -> None:
        for i in range(20):
            record = run.record("intent", name, step=str(i))
            if record["hash"].encode() not in log.path.read_bytes():
                missing.append(record["seq"])

    threads = [threading.Thread(target=host, args=(f"web-{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missing == []
    assert verify(log.path).ok and verify(log.path).records == 161
    assert len(syncs) < 160


def test_a_second_log_object_continues_the_chain(tmp_path: Path) -> None:
    path = trail(tmp_path)
    AuditLog(path).start("run-2", "diagnose")
    assert verify(path).ok and read_records(path)[-1]["seq"] == 6


def test_two_writers_taking_turns_keep_one_chain(tmp_path: Path) -> None:
    # two remediate processes sharing the trail: each must chain onto the other's last record
    path = tmp_path / "audit.jsonl"
    first, second = AuditLog(path), AuditLog(path)
    one, two = first.start("run-1", "apply"), second.start("run-2", "apply")
    for i in range(3):
        one.record("intent", "web-1", step=str(i))
        two.record("intent", "web-2", step=str(i))
    assert verify(path).ok and verify(path).records == 8
    assert [r["seq"] for r in read_records(path)] == list(range(1, 9))


def test_unwritable_trail_raises_audit_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(AuditError, match="cannot write the audit trail"):
        AuditLog(blocker / "audit.jsonl").start("run-1", "apply")


def test_a_read_only_run_waits_only_for_its_first_record_and_its_run_end(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", clock=lambda: 0.0)
    run = log.start("run-1", "check", Redactor(("s3cret-value",)), read_only=True)
    assert len(read_records(log.path)) == 1  # run_start is on disk: the trail is writable, checked before any host
    run.record("host", "web-1", message="s3cret-value")
    run.record("host_end", "web-1", status="ok")
    assert len(read_records(log.path)) == 1  # queued: no host waited for an fsync
    copied = run.lines_for("web-1")  # what audit_remote_dir copies: written first, then byte for byte
    assert copied == b"".join(lines(log.path))
    run.record("run_end", exit_code=0)
    records = read_records(log.path)
    assert [r["event"] for r in records] == ["run_start", "host", "host_end", "run_end"]
    assert verify(log.path).ok and b"s3cret-value" not in log.path.read_bytes()


def test_a_read_only_runs_queued_records_that_cannot_be_written_fail_its_run_end(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    run = log.start("run-1", "check", read_only=True)
    run.record("host", "web-1")  # queued
    log.path.unlink()
    log.path.mkdir()  # the trail can no longer be written
    with pytest.raises(AuditError, match="cannot write the audit trail"):
        run.record("run_end", exit_code=0)


def test_a_queued_record_that_could_not_be_written_refuses_every_later_change(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    run = log.start("run-1", "apply")
    assert run.record("step", "web-1", step="read") is None  # queued: written with the next record that waits
    saved = log.path.read_bytes()
    log.path.unlink()
    log.path.mkdir()  # the disk refuses the batch that holds it
    with pytest.raises(AuditError, match="cannot write the audit trail"):
        run.record("intent", "web-1", step="write")
    log.path.rmdir()
    log.path.write_bytes(saved)  # writable again: the trail still lacks the step record, so no change may follow
    with pytest.raises(AuditError, match="cannot write the audit trail"):
        run.record("intent", "web-2", step="write")
    assert [r["event"] for r in read_records(log.path)] == ["run_start"]
    with pytest.raises(AuditError, match="cannot write the audit trail"):  # the recap names the gap
        run.record("run_end", exit_code=1)  # and the run's end is still written
    assert [r["event"] for r in read_records(log.path)] == ["run_start", "run_end"]


def test_in_a_run_that_changes_something_intents_and_the_host_end_wait(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    run = log.start("run-1", "apply")
    run.record("host", "web-1")
    run.record("step", "web-1", step="read")
    assert len(read_records(log.path)) == 1
    assert run.record("intent", "web-1", step="write") is not None
    assert [r["event"] for r in read_records(log.path)] == ["run_start", "host", "step", "intent"]
    run.record("step", "web-1", step="write")
    run.record("host_end", "web-1", status="changed")
    assert [r["event"] for r in read_records(log.path)][-2:] == ["step", "host_end"]
