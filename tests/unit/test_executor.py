"""The executor against a fake transport: check mode, retries, handlers, registration, failures."""
from __future__ import annotations

from pathlib import Path

from remediate.core.options import RunOptions

from remediate.engine.host import HostRunner
from remediate.inputs.inventory import Host
from remediate.api import load_playbook
from remediate.core.results import Status
from tests.fakes import FakeFiles, FakeTransport, ok

PLAYBOOK = """\
- hosts: all
  steps:
    - name: set A
      lineinfile: {path: /etc/app.conf, line: "A=1", after: "^# settings"}
      notify: reload
    - name: set B after A
      lineinfile: {path: /etc/app.conf, line: "B=2", after: "^A=1"}
      notify: reload
    - name: poll
      command: {argv: [probe]}
      until: result.rc == 0
      retries: 3
      delay: 7
      register: polled
    - name: uses the registered value
      command: {argv: [echo, "{{ polled.rc }}"], read_only: true}
  handlers:
    - name: reload
      command: {argv: [reload-app]}
"""


def runner(tmp_path: Path, transport: FakeTransport, check: bool, sleeps: list[float]) -> HostRunner:
    (tmp_path / "p.yml").write_text(PLAYBOOK)
    plays = load_playbook(tmp_path / "p.yml")
    return HostRunner(Host("h", "addr"), plays, transport, RunOptions(check=check), "run1", sleep=sleeps.append)


def test_check_mode_plans_on_planned_content_and_runs_nothing(tmp_path: Path) -> None:
    files = FakeFiles({"/etc/app.conf": b"# settings\n"})
    t = files.attach(FakeTransport()).on(("echo",), ok(b"x\n"))
    sleeps: list[float] = []
    result = runner(tmp_path, t, True, sleeps).run()
    assert [s.status for s in result.steps] == [Status.WOULD_CHANGE, Status.WOULD_CHANGE, Status.WOULD_CHANGE,
                                                 Status.OK, Status.WOULD_CHANGE]
    assert "+B=2" in result.steps[1].diff, "the second edit planned on the first one's result"
    assert files.writes == [] and sleeps == []
    assert result.steps[-1].handler and result.steps[-1].actions == ("would run reload-app",)
    assert ("probe",) not in t.calls and ("reload-app",) not in t.calls


def test_apply_retries_until_true_and_runs_the_handler_once(tmp_path: Path) -> None:
    files = FakeFiles({"/etc/app.conf": b"# settings\n"})
    attempts = iter([1, 1, 0])
    t = files.attach(FakeTransport()).on(("probe",), lambda a, s: ok(rc=next(attempts))(a, s))
    t.on(("echo",), ok(b"0\n")).on(("reload-app",), ok())
    sleeps: list[float] = []
    result = runner(tmp_path, t, False, sleeps).run()
    assert result.status == Status.CHANGED
    assert files.files["/etc/app.conf"] == b"# settings\nA=1\nB=2\n"
    assert sleeps == [7, 7]
    assert t.calls.count(("reload-app",)) == 1
    assert ("echo", "0") in t.calls


def test_until_exhausted_fails_with_what_it_last_saw(tmp_path: Path) -> None:
    files = FakeFiles({"/etc/app.conf": b"# settings\nA=1\nB=2\n"})
    t = files.attach(FakeTransport()).on(("probe",), lambda a, s: __import__("remediate.transport.base", fromlist=["x"]).CommandResult(a, 3, b"", b"not ready yet\n"))
    sleeps: list[float] = []
    result = runner(tmp_path, t, False, sleeps).run()
    assert result.status == Status.FAILED
    poll = result.steps[2]
    assert "still false after 4 attempts" in poll.message and "not ready yet" in poll.message
    assert len(result.steps) == 3, "a failed step stops the host"
    assert ("reload-app",) not in t.calls, "nothing changed, so no handler"


def test_anchor_matching_several_lines_fails_the_step(tmp_path: Path) -> None:
    files = FakeFiles({"/etc/app.conf": b"# settings\n# settings\n"})
    t = files.attach(FakeTransport())
    result = runner(tmp_path, t, False, []).run()
    assert result.status == Status.FAILED
    assert "/etc/app.conf" in result.steps[0].message and "1, 2" in result.steps[0].message
    assert files.writes == []


def test_each_step_carries_the_time_it_took(tmp_path: Path) -> None:
    import time

    from remediate.core.report import step_json
    from remediate.transport.base import CommandResult

    files = FakeFiles({"/etc/app.conf": b"# settings\n"})

    def slow_echo(argv: tuple[str, ...], stdin: bytes | None) -> CommandResult:
        time.sleep(0.05)  # the host takes a while to answer this step's command
        return ok(b"0\n")(argv, stdin)

    t = files.attach(FakeTransport()).on(("probe",), ok()).on(("echo",), slow_echo).on(("reload-app",), ok())
    result = runner(tmp_path, t, False, []).run()
    durations = {s.name: s.duration for s in result.steps}
    assert durations["uses the registered value"] >= 0.05
    assert all(d >= 0 for d in durations.values()) and sum(durations.values()) < 30
    assert step_json(result.steps[-2])["duration"] == round(durations["uses the registered value"], 3)
