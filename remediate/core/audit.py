"""The audit trail: hash-chained JSON lines in the state directory (StateDir.audit), written before and after every change."""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RemediateError
from .redact import NO_SECRETS, Redactor

AUDIT_FILE = "audit.jsonl"
# The last record's number and hash, beside the trail: removing records from the end leaves the chain intact,
# so only this tells `audit verify` that the trail once was longer.
HEAD_FILE = "audit.head"
GENESIS = "0" * 64


# the largest diff an intent record keeps whole (bytes of its masked text); beyond it, its size and hash
MAX_AUDIT_DIFF = 64 << 10


def diff_fields(masked: str) -> dict[str, Any]:
    """An intent record's diff fields for an already masked diff."""
    data = masked.encode("utf-8", "surrogateescape")
    if len(data) <= MAX_AUDIT_DIFF:
        return {"diff": masked}
    return {"diff_bytes": len(data), "diff_sha256": sha256_bytes(data)}


class AuditError(RemediateError):
    """The trail cannot be written: remediate refuses to change anything (exit 1)."""


class TrailBroken(AuditError):
    """The trail's end does not match audit.head: records were removed or replaced since the last append."""

    def __init__(self, path: Path, problem: str) -> None:
        self.problem = problem
        super().__init__(f"the audit trail {path} fails its tail check: {problem}; run `remediate audit verify` "
                         "(--force-audit-continue records the break in the trail and goes on)")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's content."""
    return sha256_bytes(Path(path).read_bytes())


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a record carries of its own content (every field but `hash`)."""
    return sha256_bytes(_canonical({k: v for k, v in record.items() if k != "hash"}))


def who() -> dict[str, Any]:
    """The person behind a run on this controller."""
    out: dict[str, Any] = {"local_user": getpass.getuser(), "uid": os.getuid(), "controller": socket.gethostname()}
    if os.environ.get("SUDO_USER"):
        out["sudo_user"] = os.environ["SUDO_USER"]
    return out


class _Ticket:
    """One record waiting for the next group commit."""

    __slots__ = ("fields", "record", "error", "done")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = fields
        self.record: dict[str, Any] | None = None
        self.error: AuditError | None = None
        self.done = False  # set under the log's condition, once the batch is on disk (or failed)


class AuditLog:
    """Appends records to one audit.jsonl; safe across host threads and concurrent remediate processes.

    Records that host threads append at the same time are written together (group commit): one write, one
    fsync and one head update for the batch; every caller still returns only once its record is on disk.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.head_path = path.with_name(HEAD_FILE)
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._flushing = False
        # (trail size, next seq, last line's hash) after this log's last flush: while the size is unchanged
        # (no other process appended) the next flush need not read and parse the last line again
        self._tail: tuple[int, int, str] | None = None
        # with --force-audit-continue: the run id the next flush records a found break for, instead of refusing
        self._accept_break: str | None = None

    def start(self, run_id: str, command: str, redactor: Redactor = NO_SECRETS, continue_broken: bool = False,
              read_only: bool = False, **fields: Any) -> RunAudit:
        """Write the run's first record (AuditError if the trail is not writable, TrailBroken if its end does not
        match its head; with `continue_broken`, an `audit_break` record first) and return the run's writer.

        `read_only`: the run changes nothing (check mode, drift, diagnose), so no record has to be on disk before
        anything the run does: its records after this first one are written with the next record that waits
        (its `run_end` waits for all of them), and no host waits for an fsync. See RunAudit.record."""
        run = RunAudit(self, run_id, redactor, read_only)
        self._accept_break = run_id if continue_broken else None
        try:
            run.record("run_start", command=command, who=who(), **fields)
        finally:
            self._accept_break = None
        return run

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Chain and append one record, fsynced before returning; AuditError when that is impossible."""
        ticket = self.queue(fields)
        self.commit(ticket)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.record is not None
        return ticket.record

    def queue(self, fields: Mapping[str, Any]) -> _Ticket:
        """Queue one record without waiting: the next append (or flush) writes it in its batch, in order."""
        ticket = _Ticket(fields)
        with self._cond:
            self._queue.append(ticket)
        return ticket

    def flush(self) -> None:
        """Write every queued record; AuditError when that is impossible."""
        with self._cond:
            last = self._queue[-1] if self._queue else None
        if last is not None:
            self.commit(last)
            if last.error is not None:
                raise last.error

    def commit(self, ticket: _Ticket) -> None:
        """Return once the ticket's batch is on disk (or failed), writing it if no other caller is."""
        with self._cond:
            # the first caller to find no flush running writes everything queued so far, its own record with it
            while self._flushing and not ticket.done:
                self._cond.wait()
            leader = not ticket.done
            if leader:
                self._flushing = True
                batch, self._queue = self._queue, []
        if leader:
            try:
                self._flush(batch)
            finally:
                with self._cond:
                    for done in batch:
                        if done.record is None and done.error is None:  # the leader died of something unforeseen
                            done.error = AuditError(f"cannot write the audit trail {self.path}: the write was cut short")
                        done.done = True
                    self._flushing = False
                    self._cond.notify_all()

    def _flush(self, batch: list[_Ticket]) -> None:
        """Chain the batch onto the trail's last record, write it, fsync, then move the head."""
        try:
            with self._locked() as fd:
                size = os.fstat(fd).st_size
                if self._tail is not None and self._tail[0] == size:
                    seq, prev = self._tail[1], self._tail[2]  # nothing was appended since this log's last flush
                    found: dict[str, Any] | None = None
                else:
                    seq, prev = _next_link(fd, self.path)
                    found = self._check_tail(fd, seq - 1, prev)
                entries: list[Mapping[str, Any]] = [t.fields for t in batch]
                if found is not None:
                    entries.insert(0, found)
                lines = []
                records = []
                for fields in entries:
                    record = {
                        "seq": seq,
                        "prev": prev,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock())) + "Z",
                        **fields,
                    }
                    record["hash"] = record_hash(record)
                    line = _canonical(record)
                    lines.append(line)
                    records.append(record)
                    seq, prev = seq + 1, sha256_bytes(line)
                for ticket, record in zip(batch, records[len(records) - len(batch):]):
                    ticket.record = record
                data = b"".join(line + b"\n" for line in lines)
                self._tail = None
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                    self._write_head(seq - 1, prev)
                except OSError:
                    # a batch is committed only when its records and the head are both written: cut a torn
                    # or unheaded batch off again, so the trail never ends in half a record
                    try:
                        os.ftruncate(fd, size)
                        os.fsync(fd)
                    except OSError:
                        pass
                    raise
                self._tail = (size + len(data), seq, prev)
        except (OSError, AuditError) as exc:
            error = exc if isinstance(exc, AuditError) else AuditError(
                f"cannot write the audit trail {self.path}: {exc.strerror or exc}")
            for ticket in batch:
                ticket.record, ticket.error = None, error

    def _check_tail(self, fd: int, last_seq: int, last_hash: str) -> dict[str, Any] | None:
        """The trail's end against audit.head (under the trail's lock): None when they agree or the head merely
        lags (an append killed between its two writes); TrailBroken when records were removed from the end or
        replaced, or the head is gone; with --force-audit-continue, the `audit_break` record to append first."""
        problem = ""
        head: dict[str, Any] = {}
        try:
            head = json.loads(self.head_path.read_text())
            head_seq, head_hash = int(head["seq"]), str(head["line_sha256"])
        except FileNotFoundError:
            if last_seq > 0:
                problem = f"{self.head_path} is missing, and the trail has {last_seq} record(s)"
        except (OSError, ValueError, KeyError, TypeError):
            problem = f"{self.head_path} is damaged"
        else:
            if head_seq > last_seq:
                first = last_seq + 1
                which = f"record {first}" if first == head_seq else f"records {first}-{head_seq}"
                problem = f"{which} removed from the end (the trail had {head_seq} records)"
            elif head_seq == last_seq and head_hash != last_hash:
                problem = f"record {head_seq} (line {head_seq}) was replaced"
            elif head_seq < last_seq and head_seq > 0 and _line_hash(fd, head_seq) != head_hash:
                problem = f"record {head_seq} (line {head_seq}) was replaced"
        if not problem:
            return None
        if self._accept_break is None:
            raise TrailBroken(self.path, problem)
        return {"run_id": self._accept_break, "event": "audit_break", "problem": problem,
                "head": {k: head.get(k) for k in ("seq", "line_sha256")} if head else None,
                "tail": {"seq": last_seq, "line_sha256": last_hash}}

    @contextmanager
    def _locked(self) -> Iterator[int]:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the state directory's first use
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)

    def _write_head(self, seq: int, line_hash: str) -> None:
        tmp = os.path.join(os.path.dirname(self.head_path), f".{HEAD_FILE}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                _write_all(fd, json.dumps({"seq": seq, "line_sha256": line_hash}).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.head_path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _next_link(fd: int, path: Path) -> tuple[int, str]:
    """The next record's seq and `prev` hash, from the trail's last line."""
    last = _last_line(fd)
    if not last:
        return 1, GENESIS
    try:
        seq = int(json.loads(last)["seq"]) + 1
    except (ValueError, KeyError, TypeError):
        raise AuditError(f"{path}: the last record is damaged; run `remediate audit verify`") from None
    return seq, sha256_bytes(last)


def _line_hash(fd: int, n: int) -> str:
    """The sha256 of line n (1-based) of the trail; "" when it has fewer lines (read whole: only for a lag)."""
    size = os.fstat(fd).st_size
    lines = os.pread(fd, size, 0).split(b"\n")
    return sha256_bytes(lines[n - 1]) if 0 < n <= len(lines) and lines[n - 1] else ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _last_line(fd: int) -> bytes:
    """The file's last non-empty line, read backwards from the end."""
    end = os.lseek(fd, 0, os.SEEK_END)
    chunk = b""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        chunk = os.pread(fd, step, pos) + chunk
        stripped = chunk.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return chunk.rstrip(b"\n")


# records a change depends on: in a run that changes something, each waits until it is on disk
WAITED = frozenset({"intent", "result", "reload", "host_end"})


class RunAudit:
    """One run's writer: every record of the run goes through `record`, which masks secrets."""

    def __init__(self, log: AuditLog, run_id: str, redactor: Redactor, read_only: bool = False) -> None:
        self.log = log
        self.run_id = run_id
        self.redactor = redactor
        self.read_only = read_only
        self._tickets: dict[str | None, list[_Ticket]] = {}
        self._queued: list[_Ticket] = []  # records not waited for, until their batch is known to be on disk
        self._failed: AuditError | None = None  # a queued record that could not be written: sticky
        self._lock = threading.Lock()

    def record(self, event: str, host: str | None = None, **fields: Any) -> dict[str, Any] | None:
        """Append one record of this run and return it as written (AuditError if it cannot be written).

        Only the run's first record, `run_end` and, in a run that changes something, the records a change
        depends on (WAITED: `intent` before it, `result` after it, `reload`, and `host_end`) wait until they are on disk; the
        others are queued (None) and written in order with the next record that waits, and if one of them could
        not be written, that and every later waited record raise its AuditError (so no change follows a record
        the trail lacks), see AuditLog.start."""
        doc: dict[str, Any] = {"run_id": self.run_id, "event": event}
        if host is not None:
            doc["host"] = host
        doc.update(fields)
        data = self.redactor.data(doc)
        with self._lock:
            first = not self._tickets
            waits = first or event == "run_end" or (not self.read_only and event in WAITED)
            if waits and self._failed is not None and event != "run_end":
                raise self._failed
            ticket = self.log.queue(data)
            self._tickets.setdefault(host, []).append(ticket)
            if not waits:
                self._queued.append(ticket)
                return None
        self.log.commit(ticket)
        with self._lock:
            # every record queued before this one was in its batch or an earlier one: all are done now
            for queued in self._queued:
                if queued.done and queued.error is not None and self._failed is None:
                    self._failed = queued.error
            self._queued = [q for q in self._queued if not q.done]
        if ticket.error is not None:
            raise ticket.error
        if self._failed is not None:
            raise self._failed
        return ticket.record

    def lines_for(self, host: str) -> bytes:
        """This run's records about a host (and the run's first record), byte for byte as in the trail."""
        self.log.flush()
        with self._lock:
            tickets = (*self._tickets.get(None, [])[:1], *self._tickets.get(host, []))
        return b"".join(_canonical(t.record) + b"\n" for t in tickets if t.record is not None)


# ---- reading, verifying and showing the trail ----


@dataclass(frozen=True)
class Verdict:
    """What `audit verify` found: ok, how many records, and the first problem (naming the record)."""

    ok: bool
    records: int
    problem: str = ""


def verify(path: Path) -> Verdict:
    """Check numbering, each record's own hash, the chain, and the head; name the first record tampered with."""
    # a missing trail is an empty one: the head, if any, tells whether it was deleted
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    if lines and lines[-1] == b"":
        lines.pop()
    parsed: list[dict[str, Any] | None] = []
    for line in lines:
        try:
            value = json.loads(line)
            parsed.append(value if isinstance(value, dict) else None)
        except ValueError:
            parsed.append(None)
    seq_at = {r["seq"]: i + 1 for i, r in enumerate(parsed) if r is not None and isinstance(r.get("seq"), int)}
    for i, (line, record) in enumerate(zip(lines, parsed), start=1):
        if record is None:
            return Verdict(False, len(lines), f"line {i}: not a valid record: record {i} was edited")
        seq = record.get("seq")
        if record.get("hash") != record_hash(record):
            return Verdict(False, len(lines), f"record {seq} (line {i}) was edited: its content does not match its hash")
        if seq != i:
            if i in seq_at:
                return Verdict(False, len(lines), f"records are out of order: line {i} holds record {seq}, "
                                                  f"record {i} is at line {seq_at[i]}")
            return Verdict(False, len(lines), f"record {i} was removed (line {i} holds record {seq})")
        expected = sha256_bytes(lines[i - 2]) if i > 1 else GENESIS
        if record.get("prev") != expected:
            return Verdict(False, len(lines), f"record {seq} (line {i}) does not chain to the record before it: "
                                              f"record {i - 1} was edited or replaced")
    head_path = path.with_name(HEAD_FILE)
    if head_path.exists():
        try:
            head = json.loads(head_path.read_text())
            head_seq, head_hash = int(head["seq"]), str(head["line_sha256"])
        except (ValueError, KeyError, TypeError):
            return Verdict(False, len(lines), f"{head_path} is damaged")
        if head_seq > len(lines):
            first = len(lines) + 1
            which = f"record {first}" if first == head_seq else f"records {first}-{head_seq}"
            return Verdict(False, len(lines), f"{which} removed from the end (the trail had {head_seq} records)")
        if head_seq == len(lines) and lines and sha256_bytes(lines[-1]) != head_hash:
            return Verdict(False, len(lines), f"record {head_seq} (line {head_seq}) was replaced")
    for record in parsed:
        if record is not None and record.get("event") == "audit_break":
            return Verdict(False, len(lines), f"record {record.get('seq')} records a break in the trail: "
                                              f"{record.get('problem')} (found and recorded by run "
                                              f"{record.get('run_id')}, which went on with --force-audit-continue)")
    return Verdict(True, len(lines))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every parseable record, in file order."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def run_records(records: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The records of one run."""
    return [r for r in records if r.get("run_id") == run_id]


def render_runs(records: list[dict[str, Any]]) -> str:
    """One line per run: id, start time, command, who, why, outcome."""
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("event") == "run_start":
            starts[str(r.get("run_id"))] = r
        elif r.get("event") == "run_end":
            ends[str(r.get("run_id"))] = r
    lines = []
    for run_id, start in starts.items():
        end = ends.get(run_id)
        outcome = _outcome(end) if end else "no end record (killed, or still running)"
        who_ = start.get("who") or {}
        why = start.get("why") or {}
        reason = f" reason={why['reason']!r}" if why.get("reason") else ""
        ref = f" change_ref={why['change_ref']}" if why.get("change_ref") else ""
        lines.append(f"{run_id}  {start.get('time')}  {start.get('command'):<9} by {who_.get('local_user')}{reason}{ref}: {outcome}")
    return "\n".join(lines) if lines else "the audit trail is empty"


def _outcome(end: Mapping[str, Any]) -> str:
    bits = [f"exit {end.get('exit_code')}"]
    if end.get("interrupted"):
        bits.append("interrupted")
    summary = end.get("summary")
    if isinstance(summary, Mapping):
        bits.append(", ".join(f"{k}={v}" for k, v in summary.items()))
    return "; ".join(bits)


def render_run(records: list[dict[str, Any]]) -> str:
    """A run's records, readably: who, why, what (files with hashes, diffs, commands and exit codes), outcome."""
    lines: list[str] = []
    for r in records:
        t = str(r.get("time", ""))[11:19]
        host = f"{r['host']} | " if r.get("host") else ""
        event = r.get("event")
        head = f"#{r.get('seq')} {t} {host}"
        if event == "run_start":
            who_ = r.get("who") or {}
            lines.append(f"{head}run {r.get('run_id')} ({r.get('command')}) by {who_.get('local_user')} "
                         f"(uid {who_.get('uid')}) on {who_.get('controller')}")
            why = r.get("why") or {}
            if why.get("reason") or why.get("change_ref"):
                lines.append(f"    why: {why.get('reason') or '-'}; change ref: {why.get('change_ref') or '-'}")
            if r.get("rollback_of"):
                lines.append(f"    rolls back run {r['rollback_of']}")
            for pb in r.get("playbooks") or ():
                lines.append(f"    playbook {pb.get('path')} sha256 {pb.get('sha256')}")
            if r.get("inventory"):
                lines.append(f"    inventory {r['inventory'].get('path')} sha256 {r['inventory'].get('sha256')}")
        elif event == "host":
            lines.append(f"{head}connected as {r.get('ssh_user')} to {r.get('address')}; host key "
                         f"{r.get('host_key_fingerprint') or '-'}; client key {r.get('client_key_fingerprint') or '-'}")
        elif event == "intent":
            lines.append(f"{head}intent [{r.get('step')}] {r.get('action')}")
            if r.get("path"):
                lines.append(f"    {r['path']}: sha256 {r.get('before_sha256')} -> {r.get('after_sha256')}"
                             + (f"; backup {r['backup']}" if r.get("backup") else ""))
            if r.get("type") == "prune":
                lines.append(f"    backups of run {r.get('run')}" + (" (--force)" if r.get("forced") else "")
                             + f": {r.get('reason')}")
                lines += [f"    {path}" for path in r.get("files") or ()]
            if r.get("diff"):
                lines += ["    " + line for line in str(r["diff"]).rstrip("\n").splitlines()]
            elif r.get("diff_sha256"):
                lines.append(f"    diff of {r.get('diff_bytes')} bytes not kept (more than {MAX_AUDIT_DIFF >> 10} KiB; "
                             f"sha256 {r['diff_sha256']} of its masked text)")
        elif event == "result":
            rc = f" exit {r['rc']}" if r.get("rc") is not None else ""
            msg = f": {r['message']}" if r.get("message") else ""
            lines.append(f"{head}result [{r.get('step')}] {r.get('outcome')}{rc}{msg}")
        elif event == "step":
            kind = "verification" if r.get("verify") else "handler" if r.get("handler") else "step"
            msg = f": {r['message']}" if r.get("message") else ""
            lines.append(f"{head}{kind} [{r.get('step')}] {r.get('status')}{msg}")
        elif event == "notice":
            lines.append(f"{head}note: {r.get('message')}")
        elif event == "host_end":
            lines.append(f"{head}host {r.get('status')}" + (f": {r['message']}" if r.get("message") else ""))
        elif event == "diagnosis":
            lines.append(f"{head}diagnosis: {r.get('problems')} problem(s)" + (f"; error: {r['error']}" if r.get("error") else ""))
            lines += [f"    {f}" for f in r.get("findings") or ()]
        elif event == "run_end":
            lines.append(f"{head}run end: {_outcome(r)}")
        elif event == "audit_break":
            lines.append(f"{head}BREAK in the trail found before this run: {r.get('problem')} "
                         "(went on with --force-audit-continue)")
        else:
            lines.append(f"{head}{event}: " + json.dumps({k: v for k, v in r.items() if k not in ('seq', 'prev', 'hash', 'time', 'run_id', 'event', 'host')}))
    if records and not any(r.get("event") == "run_end" for r in records):
        lines.append("no end record: the run was killed or lost (or is still running)")
    return "\n".join(lines)
