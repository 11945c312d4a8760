"""The run always ends truthfully: a failure found after the first change (the state disk full, a template
error at run time, a sandbox refusal, an internal error) stops the host's new changes and steps, keeps the
reloads it owes, writes what it can, prints the recap naming what changed where, and exits 1 (never 3, and
never "nothing was changed" once something was). Input errors found before any host is contacted exit 3."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import Target, records, run, run_records, tmpfs, umount

pytestmark = [pytest.mark.ssh, pytest.mark.reliability]

FILL = """\
- hosts: all
  name: full
  steps:
    - name: edit a
      lineinfile: {{path: "{project}/a.conf", line: "A = 2"}}
      notify: [reload]
    - name: the state disk fills
      when: "fill == 'go'"
      command: {{argv: [sh, -c, 'dd if=/dev/zero of="$0/fill" bs=4k 2>/dev/null; true', "{state}"]}}
    - name: edit b
      lineinfile: {{path: "{project}/b.conf", line: "B = 2"}}
  handlers:
    - name: reload
      command: {{argv: [touch, "{project}/reloaded"]}}
"""


def test_state_disk_full_after_a_change_ends_with_the_recap_and_exit_1(tmp_path: Path) -> None:
    state = tmpfs(tmp_path / "state", "512k")
    env = {"REMEDIATE_STATE_DIR": str(state)}
    try:
        project = tmp_path / "project"
        project.mkdir()
        for name in ("a", "b"):
            (project / f"{name}.conf").write_text(f"{name.upper()} = 1\n")
        inventory = Target("local").inventory(tmp_path / "inv.yml", {"web": {"backup_dir": str(tmp_path / "backups")}})
        playbook = tmp_path / "full.yml"
        playbook.write_text(FILL.format(project=project, state=state))
        out = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "-e", "fill=go", env=env)
        assert out.rc == 1, out.text
        assert "nothing was changed" not in out.text, out.text
        assert out.run_id, "no recap"
        recap = out.out[out.out.index("RECAP run"):]
        assert "web" in recap and "changed=1" in recap and "audit trail" in recap, recap
        assert (project / "a.conf").read_text() == "A = 1\nA = 2\n"
        assert (project / "b.conf").read_text() == "B = 1\n", "a change was made after the trail could not be written"
        assert not (project / "reloaded").exists()

        (state / "fill").unlink()
        verify = run("audit", "verify", env=env)
        assert verify.rc == 0, verify.text
        assert sorted(p.name for p in state.rglob(".*")) == [], "temp files left in the state directory"
        after = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "-e", "fill=stay", env=env)
        assert after.rc == 0, after.text
        assert "handler 'reload' is owed since run" in after.out
        assert (project / "reloaded").exists() and (project / "b.conf").read_text() == "B = 1\nB = 2\n"
    finally:
        umount(state)


RUNTIME = """\
- hosts: all
  name: three hosts
  steps:
    - name: edit
      lineinfile: {path: "{{ conf }}", line: "Y = 2"}
      register: edited
      notify: [reload]
    - name: uses what the edit registered
      command: {argv: [echo, "{{ EXPR }}"]}
    - name: never reached
      lineinfile: {path: "{{ conf }}", line: "Z = 3"}
  handlers:
    - name: reload
      command: {argv: [touch, "{{ conf }}.reloaded"]}
"""


def hosts_of(tmp_path: Path, target: Target, names: tuple[str, ...]) -> tuple[Path, dict[str, Path]]:
    confs = {}
    for name in names:
        conf = tmp_path / "projects" / name / "app.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text("X = 1\n")
        confs[name] = conf
    inventory = target.inventory(tmp_path / "inv.yml", {
        n: {"conf": str(c), "backup_dir": str(tmp_path / "backups")} for n, c in confs.items()})
    return inventory, confs


def check_truthful(tmp_path: Path, out_rc: int, text: str, run_id: str | None, state: Path,
                   confs: dict[str, Path]) -> None:
    assert out_rc == 1, text
    assert run_id, "no recap"
    for name, conf in confs.items():
        assert conf.read_text() == "X = 1\nY = 2\n", (name, "the step after the error ran")
        assert not Path(f"{conf}.reloaded").exists(), "the notified handler ran after the error"
    events = [(r["event"], r.get("host")) for r in run_records(state, run_id)]
    assert sorted(h for e, h in events if e == "host_end") == sorted(confs), events
    assert ("run_end", None) in events, events
    end = next(r for r in run_records(state, run_id) if r["event"] == "run_end")
    assert end["exit_code"] == 1


def test_a_template_error_at_run_time_after_changes_on_three_hosts_ends_truthfully(
    tmp_path: Path, target: Target, state: Path
) -> None:
    inventory, confs = hosts_of(tmp_path, target, ("web-1", "web-2", "web-3"))
    playbook = tmp_path / "runtime.yml"
    playbook.write_text(RUNTIME.replace("EXPR", "edited.nothere.deeper if broken else 'fine'"))
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "-e", "broken=true")
    check_truthful(tmp_path, out.rc, out.text, out.run_id, state, confs)
    recap = out.out[out.out.index("RECAP run"):]
    for name in confs:
        assert f"{name}  failed" in recap, recap
    assert recap.count("changed=1") == 3, recap
    assert f"{playbook.name}:8" in recap and "nothere" in recap, recap
    after = run("apply", "x", "-i", str(inventory), "-p", str(playbook), "-e", "broken=false")
    assert after.rc == 0, after.text
    assert after.out.count("handler 'reload' is owed since run") == 3, after.out
    assert all(Path(f"{c}.reloaded").exists() for c in confs.values())


def test_a_sandbox_refusal_after_a_change_ends_truthfully(tmp_path: Path, state: Path) -> None:
    inventory, confs = hosts_of(tmp_path, Target("local"), ("web",))
    playbook = tmp_path / "sandbox.yml"
    playbook.write_text(RUNTIME.replace("EXPR", "''.__class__.__mro__"))
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    check_truthful(tmp_path, out.rc, out.text, out.run_id, state, confs)
    assert "unsafe" in out.out or "SecurityError" in out.out or "sandbox" in out.out, out.out


def test_an_unexpected_exception_at_run_time_ends_truthfully(tmp_path: Path, state: Path) -> None:
    inventory, confs = hosts_of(tmp_path, Target("local"), ("web",))
    playbook = tmp_path / "internal.yml"
    playbook.write_text(RUNTIME.replace("EXPR", "7 | length"))  # TypeError inside Jinja2
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    check_truthful(tmp_path, out.rc, out.text, out.run_id, state, confs)
    assert "TypeError" in out.out, out.out


def test_an_argument_of_the_wrong_type_found_at_run_time_ends_truthfully(tmp_path: Path, state: Path) -> None:
    """The rendered value is only known on the host's turn: a list where a string is needed, after a change."""
    inventory, confs = hosts_of(tmp_path, Target("local"), ("web",))
    playbook = tmp_path / "types.yml"
    playbook.write_text(RUNTIME.replace('command: {argv: [echo, "{{ EXPR }}"]}',
                                        'lineinfile: {path: "{{ conf }}", line: "{{ edited.stdout_lines }}"}'))
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    check_truthful(tmp_path, out.rc, out.text, out.run_id, state, confs)
    assert "expected a string" in out.out, out.out


def test_a_command_that_cannot_be_started_after_a_change_ends_truthfully(tmp_path: Path, state: Path) -> None:
    """An argument larger than the kernel takes (128 KiB): exec fails with E2BIG on the host."""
    inventory, confs = hosts_of(tmp_path, Target("local"), ("web",))
    playbook = tmp_path / "e2big.yml"
    playbook.write_text(RUNTIME.replace("EXPR", "'x' * 200000"))
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    check_truthful(tmp_path, out.rc, out.text, out.run_id, state, confs)
    assert "Argument list too long" in out.out, out.out


def test_input_errors_found_before_any_host_is_contacted_still_exit_3(tmp_path: Path, state: Path) -> None:
    inventory, confs = hosts_of(tmp_path, Target("local"), ("web",))
    playbook = tmp_path / "undefined.yml"
    playbook.write_text(RUNTIME.replace("EXPR", "nosuch_variable"))
    out = run("apply", "x", "-i", str(inventory), "-p", str(playbook))
    assert out.rc == 3 and "nosuch_variable" in out.err and f"{playbook.name}:8" in out.err, out.text
    assert confs["web"].read_text() == "X = 1\n"
    assert not any(r.get("event") == "intent" for r in records(state))
