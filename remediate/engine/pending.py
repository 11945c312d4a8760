"""Reloads owed per host: files changed but the notified handler did not run (a later failure, an interrupt)."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from ..core.audit import AuditError


@dataclass(frozen=True)
class PendingReload:
    """A handler notified by a change on a host that has not run yet."""

    playbook: str
    play: str
    handler: str
    paths: tuple[str, ...]
    run_id: str
    step: str


class PendingStore:
    """One JSON file per host under STATE_DIR/pending; written before the change that creates the debt."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # one lock per host: hosts run in parallel and each has a file of its own
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, host: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(host, threading.Lock())

    def _file(self, host: str) -> Path:
        return self.directory / (quote(host, safe="") + ".json")

    def load(self, host: str) -> tuple[PendingReload, ...]:
        """What is owed on host (nothing when the file is absent)."""
        path = self._file(host)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:
            raise AuditError(f"cannot read pending reloads {path}: {exc}") from None
        return tuple(PendingReload(**{**item, "paths": tuple(item["paths"])}) for item in data)

    def add(self, host: str, items: tuple[PendingReload, ...]) -> None:
        """Record debts (before the change is made: a kill right after the write must not lose them)."""
        with self._lock(host):
            current = self.load(host)
            self._save(host, current + tuple(i for i in items if i not in current))

    def discard(self, host: str, items: tuple[PendingReload, ...]) -> None:
        """Forget exactly these debts (their change was not made after all)."""
        with self._lock(host):
            self._save(host, tuple(i for i in self.load(host) if i not in items))

    def settle(self, host: str, playbook: str, play: str, handlers: tuple[str, ...]) -> tuple[PendingReload, ...]:
        """The handler ran: forget what it owed; return what was settled."""
        with self._lock(host):
            current = self.load(host)
            done = tuple(i for i in current if i.playbook == playbook and i.play == play and i.handler in handlers)
            if done:
                self._save(host, tuple(i for i in current if i not in done))
            return done

    def _save(self, host: str, items: tuple[PendingReload, ...]) -> None:
        path = self._file(host)
        try:
            if not items:
                path.unlink(missing_ok=True)
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump([asdict(i) for i in items], fh, indent=1)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise AuditError(f"cannot record pending reloads in {path}: {exc.strerror or exc}") from None


class Owed:
    """One host's owed reloads during a run: recorded before the change that owes them, forgotten when the change
    did not happen, settled when the handler ran; check mode settles nothing."""

    def __init__(self, store: PendingStore | None, host: str, check: bool) -> None:
        self._store = store
        self._host = host
        self._check = check

    def of_play(self, playbook: str, play: str) -> tuple[PendingReload, ...]:
        """Reloads an earlier run on this host owes for a play."""
        if self._store is None:
            return ()
        return tuple(p for p in self._store.load(self._host) if p.playbook == playbook and p.play == play)

    def add(self, debts: tuple[PendingReload, ...]) -> None:
        """Before a change: the reloads it will owe."""
        if self._store is not None and debts:
            self._store.add(self._host, debts)

    def discard(self, debts: tuple[PendingReload, ...]) -> None:
        """The change was not made after all (it failed, or changed_when said no)."""
        if self._store is not None and debts:
            self._store.discard(self._host, debts)

    def settle(self, playbook: str, play: str, handlers: tuple[str, ...]) -> None:
        """The handler ran: forget what it owed."""
        if self._store is not None and not self._check:
            self._store.settle(self._host, playbook, play, handlers)
