"""Symlinks are deliberate: by default an edit through a symbolic link is refused, naming the link and its
target, and nothing changes; with `follow_symlinks: true` the target is edited in place (its own backup,
compare-and-swap, rollback restoring the target), and the link stays the link it was. A dangling link as a
template's destination is refused, or with `follow_symlinks: true` its target is created."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.conftest import Target, records, run

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]


def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """project/app.conf -> ../shared/app.conf (relative, as a deploy tool leaves it)."""
    project, shared = tmp_path / "project", tmp_path / "shared"
    project.mkdir()
    shared.mkdir()
    real = shared / "app.conf"
    real.write_text("X = 1\n")
    link = project / "app.conf"
    link.symlink_to(Path("..") / "shared" / "app.conf")
    return project, link, real


def playbook(tmp_path: Path, path: Path, follow: bool | None) -> Path:
    extra = "" if follow is None else f", follow_symlinks: {str(follow).lower()}"
    pb = tmp_path / "pb.yml"
    pb.write_text(f"- hosts: all\n  name: links\n  steps:\n    - name: edit\n"
                  f"      lineinfile: {{path: {str(path)!r}, line: 'Y = 2'{extra}}}\n")
    return pb


def inventory(tmp_path: Path, target: Target) -> Path:
    return target.inventory(tmp_path / "inv.yml", {"web": {"backup_dir": str(tmp_path / "backups")}})


def test_an_edit_through_a_symlink_is_refused_naming_link_and_target(tmp_path: Path, target: Target) -> None:
    project, link, real = layout(tmp_path)
    out = run("apply", "x", "-i", str(inventory(tmp_path, target)), "-p", str(playbook(tmp_path, link, None)))
    assert out.rc == 1, out.text
    assert f"{link} is a symbolic link to {real}" in out.out and "follow_symlinks" in out.out, out.out
    assert link.is_symlink() and os.readlink(link) == "../shared/app.conf"
    assert real.read_text() == "X = 1\n"
    check = run("apply", "x", "-i", str(inventory(tmp_path, target)), "-p", str(playbook(tmp_path, link, None)),
                "--check", "--diff")
    assert check.rc == 1 and f"{link} is a symbolic link to {real}" in check.out, check.out


def test_follow_symlinks_edits_the_target_in_place_and_rollback_restores_it(
    tmp_path: Path, target: Target, state: Path
) -> None:
    project, link, real = layout(tmp_path)
    inv = inventory(tmp_path, target)
    out = run("apply", "x", "-i", str(inv), "-p", str(playbook(tmp_path, link, True)))
    assert out.rc == 0, out.text
    assert link.is_symlink() and os.readlink(link) == "../shared/app.conf", "the link was replaced"
    assert real.read_text() == "X = 1\nY = 2\n"
    assert sorted(p.name for p in project.iterdir()) == ["app.conf"]
    (intent,) = [r for r in records(state) if r.get("event") == "intent"]
    assert intent["path"] == str(real) and intent["link"] == str(link), intent
    backup = tmp_path / "backups" / (out.run_id or "") / real.relative_to("/")
    assert intent["backup"] == str(backup) and backup.read_text() == "X = 1\n"

    again = run("apply", "x", "-i", str(inv), "-p", str(playbook(tmp_path, link, True)))
    assert again.rc == 0 and "changed=0" in again.out, again.out

    back = run("rollback", out.run_id or "")
    assert back.rc == 0, back.text
    assert real.read_text() == "X = 1\n"
    assert link.is_symlink() and os.readlink(link) == "../shared/app.conf", "rollback replaced the link"


def test_a_dangling_link_as_a_template_destination_is_refused(tmp_path: Path, target: Target) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("hello\n")
    (tmp_path / "playbooks").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    link = project / "new.conf"
    link.symlink_to(tmp_path / "shared" / "missing.conf")
    pb = tmp_path / "playbooks" / "t.yml"
    pb.write_text(f"- hosts: all\n  name: t\n  steps:\n    - name: render\n"
                  f"      template: {{src: t.j2, dest: {str(link)!r}}}\n")
    out = run("apply", "x", "-i", str(inventory(tmp_path, target)), "-p", str(pb))
    assert out.rc == 1 and "symbolic link" in out.out, out.text
    assert link.is_symlink() and not link.exists()


def test_follow_symlinks_creates_the_target_of_a_dangling_link(tmp_path: Path, target: Target) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("hello\n")
    (tmp_path / "playbooks").mkdir()
    project, shared = tmp_path / "project", tmp_path / "shared"
    project.mkdir()
    shared.mkdir()
    link = project / "new.conf"
    link.symlink_to(shared / "missing.conf")
    pb = tmp_path / "playbooks" / "t.yml"
    pb.write_text(f"- hosts: all\n  name: t\n  steps:\n    - name: render\n"
                  f"      template: {{src: t.j2, dest: {str(link)!r}, follow_symlinks: true}}\n")
    out = run("apply", "x", "-i", str(inventory(tmp_path, target)), "-p", str(pb))
    assert out.rc == 0, out.text
    assert link.is_symlink() and (shared / "missing.conf").read_text() == "hello\n"
