"""Check mode judged like Ansible (issue 14, item 3).

A command that is not read-only is not run in check mode: it is `skipped` ("not run in check mode"), never
`would_change`, unless `creates`/`removes` decide it (then it would run, or is not needed); `drift` counts only
real would-change steps. So a converged host with a poll step is clean in `apply --check` and in `drift`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cliutil import FIXTURES, local_inventory, projects, write_playbook
from tests.conftest import Sshd, remediate

FIX = FIXTURES / "playbooks" / "fix.yml"  # two edits, a read-only query, a poll with changed_when: false, a handler


def _inventory(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, dict[str, Path]]:
    hosts = projects(tmp_path, "web-1", "web-2")
    if kind == "local":
        return local_inventory(tmp_path / "inv.yml", hosts), hosts
    from tests.e2e.test_ssh_cli import write_inventory

    sshd: Sshd = request.getfixturevalue("sshd")
    return write_inventory(tmp_path / "inv.yml", sshd, hosts), hosts


@pytest.mark.parametrize("kind", ["local", pytest.param("ssh", marks=pytest.mark.ssh)])
def test_converged_host_with_a_poll_step_is_clean_in_check_and_drift(
        tmp_path: Path, request: pytest.FixtureRequest, kind: str) -> None:
    inv, hosts = _inventory(kind, tmp_path, request)
    applied = remediate("apply", "x", "-i", str(inv), "-p", str(FIX))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    files = {p: p.read_bytes() for project in hosts.values() for p in project.rglob("*") if p.is_file()}

    check = remediate("apply", "x", "-i", str(inv), "-p", str(FIX), "--check", "--format", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    for name in hosts:
        steps = {s["name"]: s for s in json.loads(check.stdout)["hosts"][name]["steps"]}
        poll = steps["ready after three tries"]
        assert poll["status"] == "skipped" and "not run in check mode" in poll["message"], poll
        assert steps["settings still name the schedule file"]["status"] == "ok"  # read-only: it ran
    drift = remediate("drift", "x", "-i", str(inv), "-p", str(FIX), "--no-health")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    assert "DRIFT" not in drift.stdout.replace("DRIFT x run", "")
    after = {p: p.read_bytes() for project in hosts.values() for p in project.rglob("*") if p.is_file()}
    assert after == files, "check mode or drift ran the poll (or wrote something)"


def test_broken_host_is_still_drift_and_the_poll_is_not_what_says_so(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "web-1")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    check = remediate("apply", "x", "-i", str(inv), "-p", str(FIX), "--check", "--format", "json")
    assert check.returncode == 2
    steps = json.loads(check.stdout)["hosts"]["web-1"]["steps"]
    assert [s["status"] for s in steps] == ["would_change", "would_change", "ok", "skipped", "skipped"], steps
    handler = steps[-1]
    assert handler["handler"] and any(a.startswith("would run sh -c") for a in handler["actions"]), handler
    assert not (hosts["web-1"] / "poll.count").exists() and not (hosts["web-1"] / "restarts.log").exists()


def _creates_playbook(path: Path, marker: Path) -> Path:
    return write_playbook(path, {"hosts": "all", "steps": [
        {"name": "make it", "command": {"argv": ["touch", str(marker)], "creates": str(marker)}},
        {"name": "drop it", "command": {"argv": ["rm", str(marker)], "removes": str(marker)}},
    ]})


@pytest.mark.parametrize("exists, statuses, rc", [
    (False, ["would_change", "ok"], 2),   # creates missing: it would run; removes missing: nothing to do
    (True, ["ok", "would_change"], 2),    # creates there: nothing to do; removes there: it would run
])
def test_creates_and_removes_decide_in_check_mode(tmp_path: Path, exists: bool, statuses: list[str], rc: int) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    marker = tmp_path / "marker"
    if exists:
        marker.write_text("")
    result = remediate("apply", "x", "-i", str(inv), "-p", str(_creates_playbook(tmp_path / "pb.yml", marker)),
                       "--check", "--format", "json")
    assert result.returncode == rc, result.stdout + result.stderr
    assert [s["status"] for s in json.loads(result.stdout)["hosts"]["here"]["steps"]] == statuses
    assert marker.exists() == exists, "check mode ran a command"


def test_plain_command_is_skipped_in_check_mode_and_does_not_drift(tmp_path: Path) -> None:
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    playbook = write_playbook(tmp_path / "pb.yml", {"hosts": "all", "steps": [
        {"name": "restart something", "command": {"argv": ["sh", "-c", 'echo ran >> "$0"', str(tmp_path / "ran")]}},
        {"name": "ask something", "command": {"argv": ["true"], "read_only": True}},
    ]})
    result = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "here | skipped" in result.stdout and "not run in check mode" in result.stdout
    drift = remediate("drift", "x", "-i", str(inv), "-p", str(playbook), "--no-health")
    assert drift.returncode == 0, drift.stdout
    assert not (tmp_path / "ran").exists()


def test_an_owed_reload_is_still_pending_in_check_mode(tmp_path: Path) -> None:
    """A handler an earlier run owes (it failed after the edit) is a real pending change: check mode and drift
    must keep saying so, even though the handler is a command (guard for the rule above)."""
    hosts = projects(tmp_path, "here")
    inv = local_inventory(tmp_path / "inv.yml", hosts)
    gate = tmp_path / "handler-fails"
    gate.write_text("")
    text = FIX.read_text().replace(
        """argv: [sh, -c, 'echo restarted >> "$0"', "{{ project_dir }}/restarts.log"]""",
        f"""argv: [sh, -c, '[ ! -e {gate} ] && echo restarted >> "$0"', "{{{{ project_dir }}}}/restarts.log"]""")
    playbook = tmp_path / "fix.yml"
    playbook.write_text(text)
    first = remediate("apply", "x", "-i", str(inv), "-p", str(playbook))
    assert first.returncode == 1, first.stdout + first.stderr  # the handler failed: its reload is owed
    gate.unlink()
    check = remediate("apply", "x", "-i", str(inv), "-p", str(playbook), "--check")
    assert check.returncode == 2, check.stdout + check.stderr
    assert "is owed since run" in check.stdout
    drift = remediate("drift", "x", "-i", str(inv), "-p", str(playbook), "--no-health")
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert not (hosts["here"] / "restarts.log").exists()
