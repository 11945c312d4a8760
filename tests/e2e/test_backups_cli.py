"""`remediate backups list|prune` over a real sshd: dates, sizes and files per run; prune keeps what a rollback
still needs (unless --force), is audited, and sweeps what killed runs left."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import Sshd, remediate
from tests.e2e.test_ssh_cli import FIXTURES, PLAYBOOK, SETTINGS, remediate_files

pytestmark = pytest.mark.ssh


def inventory(tmp_path: Path, sshd: Sshd, projects: dict[str, Path]) -> Path:
    """Each host its own backup_dir (the hosts are one machine here; on real ones each has its own disk)."""
    lines = ["hosts:"]
    for i, (name, project) in enumerate(projects.items()):
        lines += [f"  {name}:", f"    address: {sshd.addresses[i]}", f"    port: {sshd.port}", "    user: root",
                  f"    identity_file: {json.dumps(str(sshd.identity))}", f"    known_hosts: {json.dumps(str(sshd.known_hosts))}",
                  f"    vars: {{project_dir: {json.dumps(str(project))}, "
                  f"backup_dir: {json.dumps(str(tmp_path / 'backups' / name))}}}"]
    path = tmp_path / "inv.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_id(result: object) -> str:
    return str(json.loads(result.stdout)["run_id"])  # type: ignore[attr-defined]


def runs(listing: dict[str, object], host: str) -> dict[str, dict[str, object]]:
    return {r["run_id"]: r for r in listing["hosts"][host]["runs"]}  # type: ignore[index]


def test_list_then_prune_keeps_what_a_rollback_needs(tmp_path: Path, sshd: Sshd) -> None:
    projects = {name: Path(shutil.copytree(FIXTURES / "project", tmp_path / name)) for name in ("web-1", "web-2")}
    inv = str(inventory(tmp_path, sshd, projects))
    original = (projects["web-1"] / SETTINGS).read_bytes()
    pb = ("-p", str(PLAYBOOK))

    first = remediate("apply", "x", "-i", inv, *pb, "--format", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    undo = remediate("rollback", run_id(first), "--format", "json")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    again = remediate("apply", "x", "-i", inv, *pb, "--format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    a, b, c = run_id(first), run_id(undo), run_id(again)

    listed = remediate("backups", "list", "x", "-i", inv, "--format", "json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    doc = json.loads(listed.stdout)
    for host, project in projects.items():
        assert doc["hosts"][host]["backup_dir"] == str(tmp_path / "backups" / host)
        mine = runs(doc, host)
        assert sorted(mine) == sorted([a, b, c])
        assert [f["path"] for f in mine[a]["files"]] == sorted([str(project / "apps/audit/apps.py"), str(project / SETTINGS)])
        assert mine[a]["size"] == sum(f["size"] for f in mine[a]["files"]) > 0
        assert (mine[a]["needed"], mine[a]["reason"]) == (False, f"rolled back by run {b}")
        assert not mine[b]["needed"] and "changed since" in str(mine[b]["reason"])
        assert mine[c]["needed"] and f"`remediate rollback {c}` would restore" in str(mine[c]["reason"])
        assert remediate_files(project) == []
    text = remediate("backups", "list", "x", "-i", inv, "--limit", "web-1")
    assert text.returncode == 0 and "web-2" not in text.stdout
    assert f"{a}  " in text.stdout and f"{projects['web-1'] / SETTINGS}  " in text.stdout and "KiB" in text.stdout

    young = remediate("backups", "prune", "x", "-i", inv, "--older-than", "30d")
    assert young.returncode == 0 and "no backups older than 30d" in young.stdout, young.stdout + young.stderr

    check = remediate("backups", "prune", "x", "-i", inv, "--older-than", "0s", "--check", "--limit", "web-1")
    assert check.returncode == 2, check.stdout + check.stderr
    assert f"web-1: would remove {a}" in check.stdout and f"web-1: kept {c}" in check.stdout
    assert (tmp_path / "backups/web-1" / a).exists(), "--check removed something"

    # a killed writer's staging, and a run this controller never made
    dead = tmp_path / "backups/web-1/.staging/w.dead01"
    dead.mkdir(parents=True)
    old = time.time() - 600
    os.utime(dead, (old, old))
    foreign = tmp_path / "backups/web-1/20200101T000000Z-ffffff/etc/x.conf"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("someone's\n")

    pruned = remediate("backups", "prune", "x", "-i", inv, "--older-than", "0s", "--limit", "web-1", "--reason", "disk")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"web-1: removed {a}" in pruned.stdout and f"web-1: removed {b}" in pruned.stdout
    assert f"web-1: kept {c}" in pruned.stdout and "web-1: kept 20200101T000000Z-ffffff" in pruned.stdout
    assert "not in this controller's audit trail" in pruned.stdout
    assert f"web-1: removed {dead} (left by a killed run)" in pruned.stdout and not dead.exists()
    assert sorted(p.name for p in (tmp_path / "backups/web-1").iterdir()) == sorted([".staging", c, "20200101T000000Z-ffffff"])
    assert sorted(p.name for p in (tmp_path / "backups/web-2").iterdir()) == sorted([".staging", a, b, c]), "--limit"

    shown = remediate("audit", "show")
    prune_run = [line.split()[0] for line in shown.stdout.splitlines() if " prune " in line][-1]
    record = remediate("audit", "show", prune_run)
    assert "reason='disk'" in shown.stdout
    assert f"intent [prune backups] remove {tmp_path / 'backups/web-1' / a}" in record.stdout
    assert f"note: kept backups of run {c}" in record.stdout and "run end: exit 0" in record.stdout
    assert remediate("audit", "verify").returncode == 0
    refused = remediate("rollback", prune_run)
    assert refused.returncode == 3 and "what it removed cannot be put back" in refused.stderr

    forced = remediate("backups", "prune", "x", "-i", inv, "--older-than", "0s", "--limit", "web-1", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert f"web-1: removed {c}" in forced.stdout and "--force: `remediate rollback" in forced.stdout
    assert sorted(p.name for p in (tmp_path / "backups/web-1").iterdir()) == [".staging"]
    gone = remediate("rollback", c, "--limit", "web-1")
    assert gone.returncode == 1 and "is missing" in gone.stdout, gone.stdout
    assert (projects["web-1"] / SETTINGS).read_bytes() != original, "nothing restored without its backup"


def test_backups_needs_an_environment_and_a_valid_duration(tmp_path: Path, sshd: Sshd) -> None:
    inv = str(inventory(tmp_path, sshd, {"web-1": tmp_path}))
    missing = remediate("backups", "list")
    assert missing.returncode == 3 and "name an ENV" in missing.stderr
    bad = remediate("backups", "prune", "x", "-i", inv, "--older-than", "soon")
    assert bad.returncode == 3 and "--older-than: invalid duration 'soon'" in bad.stderr
    empty = remediate("backups", "list", "x", "-i", inv)
    assert empty.returncode == 0 and "web-1: 0 run(s), 0 B in" in empty.stdout, empty.stdout + empty.stderr
