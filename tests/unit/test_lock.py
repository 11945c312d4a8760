"""The controller's run lock (engine/lock.py): one holder per host, the loser told who holds it, a stale
holder's description taken over and named."""
from __future__ import annotations

from pathlib import Path

import pytest

from remediate.engine.lock import ControllerLock, Holder, Locked


def holder(run_id: str, pid: int = 4242) -> Holder:
    return Holder(run_id, "apply", "ops", "ctl-1", pid, "2026-12-01T10:00:00Z")


def test_a_held_lock_refuses_naming_the_holder_and_is_free_again_after_release(tmp_path: Path) -> None:
    first = ControllerLock(tmp_path, "web/1")
    assert first.acquire(holder("R1"), 0, lambda m: None) == ""
    with pytest.raises(Locked, match=r"web/1: locked by run R1 \(apply by ops on ctl-1, pid 4242, since "
                                     r"2026-12-01T10:00:00Z\); not run \(--wait-lock"):
        ControllerLock(tmp_path, "web/1").acquire(holder("R2"), 0, lambda m: None)
    assert ControllerLock(tmp_path, "web-2").acquire(holder("R2"), 0, lambda m: None) == "", "another host is free"
    first.release()
    again = ControllerLock(tmp_path, "web/1")
    assert again.acquire(holder("R3"), 0, lambda m: None) == "", "a released lock is not stale"
    again.release()


def test_waiting_says_so_once_then_gives_up_naming_the_holder(tmp_path: Path) -> None:
    first = ControllerLock(tmp_path, "web")
    first.acquire(holder("R1"), 0, lambda m: None)
    told: list[str] = []
    naps: list[float] = []
    with pytest.raises(Locked, match="locked by run R1"):
        ControllerLock(tmp_path, "web").acquire(holder("R2"), 0.5, told.append, naps.append)
    assert len(told) == 1 and told[0].startswith("waiting for the lock held by run R1"), told
    first.release()


def test_a_holder_that_died_without_releasing_is_taken_over_saying_so(tmp_path: Path) -> None:
    (tmp_path / "web.lock").write_text(holder("R-dead", 999999).dumps() + "\n")  # no flock: its process is gone
    lock = ControllerLock(tmp_path, "web")
    notice = lock.acquire(holder("R2"), 0, lambda m: None)
    assert notice.startswith("took over a stale lock of run R-dead") and "pid 999999 on ctl-1" in notice, notice
    lock.release()
    assert (tmp_path / "web.lock").read_text() == ""
