"""The catalogue (issue 16), pure: each fault's judgement tabled (facts -> its findings, with evidence), celery
command lines read as celery reads them, and the compose-file command edit (only the changed tokens, comments
and order kept)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from remediate.celery import commands

from remediate.diagnose import FAULTS, DiagnoseReport, HostDiagnosis, Severity, judge, render_json, render_text
from remediate.edits import composefile
from remediate.edits.textpatch import EditError
from remediate.facts.celery import CeleryFacts, QueueFacts
from remediate.facts.compose import Model, Mount, Service
from remediate.facts.containers import Container
from tests.unit.test_diagnose import HEALTHY, SERVICES, STARTED, container

P, W = Severity.PROBLEM, Severity.WARNING
WORKER = ("celery", "-A", "edms", "worker", "-l", "info")
BEAT = ("celery", "-A", "edms", "beat", "-l", "info")


def model(worker: tuple[str, ...] = WORKER, beat: tuple[str, ...] = BEAT, beat_mounts: tuple[Mount, ...] = (),
          beat_replicas: int = 1) -> Model:
    def svc(name: str, command: tuple[str, ...] = (), mounts: tuple[Mount, ...] = (), replicas: int = 1) -> Service:
        return Service(name, "edms:lab", None, mounts, command=command, replicas=replicas)

    return Model("edms", "/srv/edms", {"backend": svc("backend"), "celery_worker": svc("celery_worker", worker),
                                       "celery_beat": svc("celery_beat", beat, beat_mounts, beat_replicas)})


def queues(nodes: dict[str, tuple[str, ...]] | None = None, routed: dict[str, tuple[str, ...]] | None = None,
           lengths: dict[str, int | None] | None = None) -> QueueFacts:
    return QueueFacts("celery", routed or {"celery": ("task_default_queue",)},
                      {"celery@vm": ("celery",)} if nodes is None else nodes, lengths or {"celery": 0})


BASE = replace(HEALTHY, model=model(), queues=queues())
VOLUME = Mount("volume", "edms_celery-beat-state", "/var/lib/celery")
PIDFILE = (*BEAT, "--pidfile", "/var/lib/celery/celerybeat.pid")
LOOPING = Container("id-b", "edms-celery_beat-1", "celery_beat", "restarting", True, None, STARTED, "sha256:img", 73, 8)
PIDFILE_LOG = ("celery beat v5.4.0 (opalescent) is starting.\nERROR: Pidfile (/var/lib/celery/celerybeat.pid) already "
               "exists.\nSeems we're already running? (pid: 1)")
MONITORING = {"celery": ("task_default_queue",), "monitoring": ("PeriodicTask 'lab-heartbeat'",)}

CASES: dict[str, tuple[CeleryFacts, list[tuple[Severity, str]]]] = {
    "healthy: no catalogue finding": (BASE, []),
    # beat_pidfile
    "beat in its restart loop on a pidfile on a volume (celery 5.4.0)": (
        replace(BASE, model=model(beat=PIDFILE, beat_mounts=(VOLUME,)), beat_log=PIDFILE_LOG,
                services={**SERVICES, "celery_beat": (LOOPING,)}),
        [(P, "beat_pidfile")]),
    "beat under init: true refuses a pidfile holding pid 1 (celery 5.7.0 too: lab/break beat-pidfile-init)": (
        replace(BASE, model=model(beat=PIDFILE, beat_mounts=(VOLUME,)),
                beat_log=PIDFILE_LOG.replace("v5.4.0 (opalescent)", "v5.7.0 (collider)"),
                services={**SERVICES, "celery_beat": (replace(LOOPING, restart_count=3),)}),
        [(P, "beat_pidfile")]),
    "beat writes a pidfile on a volume but runs (celery 5.7.0 removes its own)": (
        replace(BASE, model=model(beat=PIDFILE, beat_mounts=(VOLUME,))), [(W, "beat_pidfile")]),
    "a pidfile on a tmpfs is emptied on each start": (
        replace(BASE, model=model(beat=PIDFILE, beat_mounts=(Mount("tmpfs", "", "/var/lib/celery"),))), []),
    # unconsumed_queue
    "a PeriodicTask sends to a queue no worker's -Q names": (
        replace(BASE, model=model(worker=(*WORKER, "-Q", "celery")),
                queues=queues(routed=MONITORING, lengths={"celery": 0, "monitoring": 4})),
        [(P, "unconsumed_queue")]),
    "the worker's -Q names that queue": (
        replace(BASE, model=model(worker=(*WORKER, "-Q", "celery,monitoring")),
                queues=queues(nodes={"celery@vm": ("celery", "monitoring")}, routed=MONITORING)), []),
    "no worker answered: nobody can say what is consumed": (
        replace(BASE, queues=queues(nodes={}, routed=MONITORING)), []),
    # two_beats
    "the worker runs -B beside the beat service": (
        replace(BASE, model=model(worker=(*WORKER, "-B"))), [(P, "two_beats")]),
    "beat scaled to two": (
        replace(BASE, model=model(beat_replicas=2),
                services={**SERVICES, "celery_beat": (container("celery_beat"), replace(container("celery_beat"), id="b2"))}),
        [(P, "two_beats")]),
    "the worker runs -B and the beat service is down": (
        replace(BASE, model=model(worker=(*WORKER, "-B")),
                services={**SERVICES, "celery_beat": (container("celery_beat", False),)}),
        []),
    "the worker's -B is the only beat": (
        replace(BASE, model=Model("edms", "/srv/edms", {"celery_worker": Service("celery_worker", "x", None, command=(*WORKER, "-B"))})),
        []),
    # worker_not_consuming
    "the worker answers but consumes nothing": (
        replace(BASE, queues=queues(nodes={"celery@vm": ()}, lengths={"celery": 3})), [(P, "worker_not_consuming")]),
    "the worker consumes its queue": (replace(BASE, queues=queues(lengths={"celery": 3})), []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_fault_is_judged_from_what_the_pass_saw(case: str) -> None:
    facts, expected = CASES[case]
    ids = {f.id for f in FAULTS}
    findings = [f for f in judge(facts)[0] if f.code in ids]
    assert [(f.severity, f.code) for f in findings] == expected, [f.message for f in findings]
    assert all(f.evidence for f in findings)


def test_the_evidence_quotes_the_log_line_the_command_and_the_mount() -> None:
    finding = next(f for f in judge(CASES["beat in its restart loop on a pidfile on a volume (celery 5.4.0)"][0])[0]
                   if f.code == "beat_pidfile")
    assert finding.evidence == (
        "container edms-celery_beat-1: restarting, exit code 73, 8 restart(s)",
        "Pidfile (/var/lib/celery/celerybeat.pid) already exists",
        "command: celery -A edms beat -l info --pidfile /var/lib/celery/celerybeat.pid",
        "/var/lib/celery/celerybeat.pid is on the volume edms_celery-beat-state at /var/lib/celery, which outlives the container",
    )
    queue = next(f for f in judge(CASES["a PeriodicTask sends to a queue no worker's -Q names"][0])[0])
    assert queue.message == "tasks are sent to queue 'monitoring', which no worker consumes: 4 message(s) wait"
    assert "sent there by: PeriodicTask 'lab-heartbeat'" in queue.evidence


def test_text_and_json_quote_the_evidence() -> None:
    facts = CASES["a PeriodicTask sends to a queue no worker's -Q names"][0]
    findings, tasks = judge(facts)
    report = DiagnoseReport((HostDiagnosis("web-1", findings, facts, "", tasks),))
    text = render_text(report)
    assert ("  PROBLEM  unconsumed_queue: tasks are sent to queue 'monitoring', which no worker consumes: 4 message(s) wait\n"
            "             | sent there by: PeriodicTask 'lab-heartbeat'\n") in text
    assert text.endswith("problems found; exit 2")
    doc = json.loads(render_json(report))["hosts"]["web-1"]
    problem = next(p for p in doc["problems"] if p["code"] == "unconsumed_queue")
    assert problem["evidence"][-1] == "messages waiting in 'monitoring': 4"
    assert doc["facts"]["queues"]["unconsumed"] == ["monitoring"]


def test_fault_ids_are_stable_and_unique() -> None:
    assert [f.id for f in FAULTS] == ["beat_pidfile", "unconsumed_queue", "timezone", "unseen_change", "migrations",
                                      "result_backend", "two_beats", "worker_not_consuming"]
    assert all(f.playbook == "celery-" + f.id.replace("_", "-") for f in FAULTS)


@pytest.mark.parametrize(("argv", "beat", "queues"), [
    (("celery", "-A", "edms", "worker", "-l", "info"), False, ("celery",)),
    (("celery", "-A", "edms", "worker", "-B", "-Q", "a,b"), True, ("a", "b")),
    (("celery", "-A", "edms", "worker", "--beat", "-Qa,b"), True, ("a", "b")),
    (("celery", "-A", "edms", "worker", "--queues=a"), False, ("a",)),
    (("/venv/bin/celery", "--app", "edms", "beat"), True, None),
    (("python", "-m", "celery", "-A", "x", "worker", "-Q", "hi"), False, ("hi",)),
])
def test_celery_command_lines_read_as_celery_reads_them(argv: tuple[str, ...], beat: bool,
                                                       queues: tuple[str, ...] | None) -> None:
    command = commands.parse(argv)
    assert command is not None and command.runs_beat is beat and command.queues("celery") == queues


def test_options_are_removed_with_their_values_and_set_where_written() -> None:
    argv = ("celery", "-A", "edms", "beat", "--pidfile", "/x.pid", "-l", "info", "--pidfile=/y.pid")
    assert commands.without(argv, "--pidfile") == ("celery", "-A", "edms", "beat", "-l", "info")
    assert commands.with_option(("celery", "worker", "-Qa", "-l", "info"), "-Q", "a,b") == ("celery", "worker", "-Qa,b", "-l", "info")
    assert commands.with_option(("celery", "worker", "--queues=a"), "-Q", "a,b") == ("celery", "worker", "--queues=a,b")
    assert commands.with_option(("celery", "-A", "x", "worker", "-l", "info"), "-Q", "a") == ("celery", "-A", "x", "worker", "-Q", "a", "-l", "info")
    assert commands.parse(("sh", "-c", "celery worker")) is None


FLOW = """\
x-env: &env
  A: "1"
services:
  # the worker
  celery_worker:
    environment: *env
    command: ["celery", "-A", "edms", "worker", "-B", "-l", "info"]   # keep this comment
    depends_on: [backend]
"""
BLOCK = """\
services:
  celery_beat:
    command:
      - celery   # the app follows
      - -A
      - edms
      - beat
      - --pidfile
      - /var/lib/celery/celerybeat.pid
    restart: unless-stopped
"""


def test_a_flow_list_command_keeps_every_other_byte() -> None:
    out = composefile.set_command(FLOW, "celery_worker", ("celery", "-A", "edms", "worker", "-Q", "celery,monitoring", "-l", "info"))
    assert out == FLOW.replace('"-B", "-l"', '"-Q", "celery,monitoring", "-l"')
    assert composefile.set_command(out, "celery_worker", composefile.read_command(out, "celery_worker") or ()) == out


def test_a_block_list_command_drops_and_adds_lines_only() -> None:
    out = composefile.set_command(BLOCK, "celery_beat", ("celery", "-A", "edms", "beat", "-l", "info"))
    assert out == BLOCK.replace("      - --pidfile\n      - /var/lib/celery/celerybeat.pid\n", "      - -l\n      - info\n")
    assert "# the app follows" in out


def test_a_string_command_stays_a_string() -> None:
    text = "services:\n  w:\n    command: celery -A x worker -B  # c\n"
    assert composefile.set_command(text, "w", ("celery", "-A", "x", "worker")) == "services:\n  w:\n    command: celery -A x worker  # c\n"


def test_what_cannot_be_edited_safely_is_refused_naming_the_line() -> None:
    aliased = "x-cmd: &cmd [celery, worker]\nservices:\n  w:\n    command: *cmd\n"
    with pytest.raises(EditError, match="alias") as caught:
        composefile.set_command(aliased, "w", ("celery", "worker", "-Q", "a"))
    assert caught.value.line == 1
    with pytest.raises(EditError, match="no command"):
        composefile.set_command("services:\n  w:\n    image: x\n", "w", ("celery",))
    with pytest.raises(EditError, match="not valid YAML"):
        composefile.set_command("services: [\n", "w", ("celery",))


def test_each_fault_is_a_drift_health_check_of_its_own() -> None:
    from remediate.drift import CheckStatus, health_checks

    facts = CASES["the worker runs -B beside the beat service"][0]
    checks = {c.name: c for c in health_checks(HostDiagnosis("web-1", judge(facts)[0], facts))}
    assert [name for name in checks if name in {f.id for f in FAULTS}] == [f.id for f in FAULTS]
    assert checks["two_beats"].status is CheckStatus.DRIFT
    assert checks["two_beats"].details[0].startswith("two_beats: 2 beats run: every periodic task is sent once by each (celery_worker: 1")
    assert all(checks[f.id].status is CheckStatus.OK for f in FAULTS if f.id != "two_beats")
