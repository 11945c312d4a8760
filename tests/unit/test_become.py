"""become: whom each step runs as (step > play > host > -b), sudo's command and what its failures mean, and the
engine running each step's probes and actions as that user (a fake transport records who ran what)."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from remediate.api import load_playbook
from remediate.core.errors import StepError
from remediate.core.options import RunOptions
from remediate.core.results import Status
from remediate.engine.host import HostRunner
from remediate.engine.rollback import restore_spec
from remediate.engine.step import become_for
from remediate.core.changes import FileChange
from remediate.inputs.inventory import Host
from remediate.inputs.playbook import Play, StepSpec
from remediate.core.errors import Location
from remediate.transport import sudo
from remediate.transport.base import Become
from tests.fakes import FakeFiles, FakeTransport, ok

AT = Location("p.yml", 1)


def spec(become: bool | None = None, user: str | None = None) -> StepSpec:
    return StepSpec("s", "command", {}, AT, become=become, become_user=user)


def play(become: bool | None = None, user: str | None = None) -> Play:
    return Play("p", "all", AT, (), become=become, become_user=user)


def host(become: bool | None = None, user: str | None = None) -> Host:
    return Host("h", "addr", become=become, become_user=user)


@pytest.mark.parametrize("s, p, h, cli, expected", [
    (spec(), play(), host(), RunOptions(), None),
    (spec(), play(), host(), RunOptions(become=True), "root"),
    (spec(), play(), host(), RunOptions(become=True, become_user="app"), "app"),
    (spec(), play(), host(True), RunOptions(), "root"),
    (spec(), play(), host(True, "ops"), RunOptions(become_user="app"), "ops"),
    (spec(), play(True), host(False), RunOptions(), "root"),
    (spec(), play(False), host(True), RunOptions(become=True), None),
    (spec(False), play(True), host(True), RunOptions(), None),
    (spec(True), play(False, "app"), host(), RunOptions(), "app"),  # the play's user, the step's flag
    (spec(True, "web"), play(True, "app"), host(True, "ops"), RunOptions(become_user="x"), "web"),
    (spec(None, "web"), play(), host(), RunOptions(), None),  # become_user without become: as Ansible, nothing
])
def test_whom_a_step_runs_as(s: StepSpec, p: Play, h: Host, cli: RunOptions, expected: str | None) -> None:
    got = become_for(s, p, h, cli, {})
    assert (got.user if got else None) == expected


def test_a_templated_become_user_is_rendered_and_checked() -> None:
    assert become_for(spec(True, "{{ app_user }}"), play(), host(), RunOptions(), {"app_user": "celery"}) == Become("celery")
    with pytest.raises(StepError, match="is not a user name"):
        become_for(spec(True, "{{ app_user }}"), play(), host(), RunOptions(), {"app_user": "rm -rf /"})


def test_the_start_command_marks_itself_and_asks_sudo_the_right_way() -> None:
    plain = shlex.split(sudo.start_command("MARK", "id -u"))
    assert plain[:2] == ["sh", "-c"] and plain[3:] == ["MARK", "id -u"]
    quiet = shlex.split(sudo.start_command("MARK", None, Become("app")))
    assert quiet[:7] == ["sudo", "-H", "-n", "-u", "app", "--", "sh"] and quiet[-1] == "MARK"
    asked = shlex.split(sudo.start_command("MARK", "x", Become(), prompt="[remediate sudo 1] password:"))
    assert asked[:8] == ["sudo", "-H", "-S", "-p", "[remediate sudo 1] password:", "-u", "root", "--"]
    assert sudo.new_prompt() != sudo.new_prompt() and sudo.new_marker() != sudo.new_marker()


@pytest.mark.parametrize("stderr, rc, expected", [
    ("Welcome!\nsudo: a password is required\n", 1,
     "sudo on deploy@h:22 asks for a password to become root as deploy: pass --ask-become-pass (-K) or set "
     "REMEDIATE_BECOME_PASSWORD"),
    ("bash: line 1: sudo: command not found\n", 127, "sudo is not installed on deploy@h:22 (needed to become root as deploy)"),
    ("Sorry, try again.\n", None, "sudo on deploy@h:22 refused the become password to become root as deploy"),
    ("deploy is not in the sudoers file.\n", 1,
     "sudo on deploy@h:22 refused to become root as deploy: deploy is not in the sudoers file."),
    ("sudo: sorry, you must have a tty to run sudo\n", 1,
     "sudo on deploy@h:22 refused to become root as deploy: sudo: sorry, you must have a tty to run sudo"),
    ("", 1, "sudo on deploy@h:22 ended (exit 1) before running anything to become root as deploy"),
])
def test_what_a_sudo_refusal_means(stderr: str, rc: int | None, expected: str) -> None:
    assert sudo.failure(Become(), "deploy", "deploy@h:22", stderr, rc) == expected


BECOMING = """\
- hosts: all
  become: true
  steps:
    - name: root's file
      lineinfile: {path: /etc/app.conf, line: "A=1"}
    - name: as the login user
      command: {argv: [whoami], read_only: true}
      become: false
    - name: as app
      command: {argv: [whoami], read_only: true}
      become_user: app
"""


def test_each_step_reads_and_writes_as_its_user(tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text(BECOMING)
    files = FakeFiles({"/etc/app.conf": b"# settings\n"})
    t = files.attach(FakeTransport()).on(("whoami",), ok(b"x\n"))
    result = HostRunner(Host("h", "addr"), load_playbook(tmp_path / "p.yml"), t, RunOptions(), "run1").run()
    assert [s.status for s in result.steps] == [Status.CHANGED, Status.OK, Status.OK]
    sh = [u for argv, u in zip(t.calls, t.users) if argv[:2] == ("sh", "-c")]
    assert sh == ["root", "root"]  # the read and the write of root's file
    assert [u for argv, u in zip(t.calls, t.users) if argv == ("whoami",)] == [None, "app"]


def test_a_change_made_through_sudo_is_restored_through_sudo() -> None:
    change = FileChange("h", "/etc/app.conf", "/b/x", "a", "b", (), "/p.yml", "p", become="root")
    assert (restore_spec(change, False, "r1").become, restore_spec(change, False, "r1").become_user) == (True, "root")
    plain = FileChange("h", "/etc/app.conf", "/b/x", "a", "b", (), "/p.yml", "p")
    assert (restore_spec(plain, False, "r1").become, restore_spec(plain, False, "r1").become_user) == (False, None)


@pytest.mark.parametrize("chunks", [
    [b"noise\n", b"MARK\nfirst output"],  # the command's output in the marker's packet
    [b"noiseMA", b"RK\nMARK\nrest"],  # the marker cut in two, and printed again by the command
    [b"MMARK\n", b"x"],
])
def test_the_start_marker_is_read_and_nothing_after_it(chunks: list[bytes]) -> None:
    from remediate.transport.ssh import _read_through

    stream = b"".join(chunks)
    pos = 0

    def recv(n: int) -> bytes:
        nonlocal pos
        got = stream[pos:pos + n]
        pos += len(got)
        return got

    buf = bytearray()
    assert _read_through(lambda: pos < len(stream), recv, buf, b"MARK\n")
    assert stream[pos:] == stream[stream.index(b"MARK\n") + 5:]  # what follows the marker is still unread
