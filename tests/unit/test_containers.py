"""Containers from the Engine API's documents, its times, events, and the pure proof of a (re)started service."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from remediate.facts.containers import Candidate, Event, Proof, Verdict, container, event, judge, wait_filters
from remediate.transport.docker import _hint, _negotiate, event_time, parse_time

T0 = datetime(2026, 11, 25, 2, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-24T02:03:04.123456789Z", datetime(2026, 11, 24, 2, 3, 4, 123456, tzinfo=timezone.utc)),
    ("2026-11-24T02:03:04Z", datetime(2026, 11, 24, 2, 3, 4, tzinfo=timezone.utc)),
    ("2026-11-24T02:03:04.5Z", datetime(2026, 11, 24, 2, 3, 4, 500000, tzinfo=timezone.utc)),
    ("2026-11-24T03:03:04.123456789+01:00", datetime(2026, 11, 24, 2, 3, 4, 123456, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00Z", None),
    ("", None),
    (None, None),
])
def test_docker_times(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_event_time_is_exact_to_the_microsecond() -> None:
    nanos = 1796121938_801234567
    assert event_time({"timeNano": nanos, "time": 1796121938}) == datetime(2026, 12, 1, 10, 45, 38, 801234,
                                                                          tzinfo=timezone.utc)
    assert event_time({"time": 1796121938}) == datetime(2026, 12, 1, 10, 45, 38, tzinfo=timezone.utc)


def doc(**state: Any) -> dict[str, Any]:
    return {"Id": "abc", "Name": "/edms-celery_beat-1", "Image": "sha256:1", "RestartCount": 2,
            "State": {"Status": "exited", "Running": False, "StartedAt": "2026-11-24T02:03:04.123456789Z",
                      "FinishedAt": "2026-11-24T02:03:06.5Z", "ExitCode": 3, "OOMKilled": False, **state},
            "Config": {"Labels": {"com.docker.compose.project": "edms", "com.docker.compose.service": "celery_beat"}},
            "Mounts": [{"Type": "bind", "Source": "/srv/edms/backend", "Destination": "/app"}]}


def test_a_container_is_its_inspect_document() -> None:
    c = container(doc())

    assert (c.id, c.name, c.project, c.service, c.status, c.running) == ("abc", "edms-celery_beat-1", "edms",
                                                                         "celery_beat", "exited", False)
    assert (c.exit_code, c.restart_count, c.image_id, c.health, c.healthcheck) == (3, 2, "sha256:1", None, False)
    assert c.finished_at == datetime(2026, 11, 24, 2, 3, 6, 500000, tzinfo=timezone.utc)
    assert [(m.type, m.source, m.target) for m in c.mounts] == [("bind", "/srv/edms/backend", "/app")]
    assert c.describe() == "edms-celery_beat-1 exited, exit code 3, started 2026-11-24T02:03:04+00:00, image sha256:1"
    assert c.as_data()["finished_at"] == "2026-11-24T02:03:06.500000+00:00"


@pytest.mark.parametrize(("config", "state", "expected"), [
    ({"Healthcheck": {"Test": ["CMD", "true"]}}, {"Health": {"Status": "starting"}}, True),
    ({"Healthcheck": {"Test": ["NONE"]}}, {}, False),  # the image's healthcheck turned off
    ({}, {"Health": {"Status": "healthy"}}, True),
    ({}, {}, False),
])
def test_whether_a_healthcheck_is_configured(config: dict[str, Any], state: dict[str, Any], expected: bool) -> None:
    d = doc(**state)
    d["Config"].update(config)
    assert container(d).healthcheck is expected


def test_an_event_document() -> None:
    e = event({"status": "die", "id": "abc", "Type": "container", "Action": "die", "time": 1796121938,
               "timeNano": 1796121938801234567,
               "Actor": {"ID": "abc", "Attributes": {"com.docker.compose.service": "celery_beat", "exitCode": "3",
                                                     "image": "edms-backend", "name": "edms-celery_beat-1"}}})

    assert e == Event("die", "abc", "celery_beat", datetime(2026, 12, 1, 10, 45, 38, 801234, tzinfo=timezone.utc), 3)
    assert e.as_data() == {"action": "die", "container": "abc", "at": "2026-12-01T10:45:38.801234+00:00", "exit_code": 3}


def test_a_wait_subscribes_to_the_project_starts_deaths_and_health() -> None:
    assert wait_filters("edms") == {"type": "container", "label": ["com.docker.compose.project=edms"],
                                    "event": ["start", "die", "oom", "health_status"]}


PLAIN = {"a": Candidate("a", at(1), healthcheck=False)}
CHECKED = {"a": Candidate("a", at(1), healthcheck=True)}


def ev(action: str, seconds: float, cid: str = "a", code: int | None = None) -> Event:
    return Event(action, cid, "celery_beat", at(seconds), code)


@pytest.mark.parametrize(("events", "candidates", "now", "verdict", "when", "look_again"), [
    # nothing started yet: keep waiting (the deadline decides)
    ([], PLAIN, 10, None, None, None),
    # a restart's own stop comes before its start and is not a death
    ([ev("die", 0.5, code=0), ev("start", 1)], PLAIN, 2, None, None, at(4)),
    ([ev("die", 0.5, code=0), ev("start", 1)], PLAIN, 4, Verdict.RUNNING, at(4), None),
    ([ev("start", 1), ev("die", 2, code=3)], PLAIN, 2, Verdict.DIED, at(2), None),
    ([ev("start", 1), ev("oom", 1.5), ev("die", 1.6, code=137)], PLAIN, 2, Verdict.DIED, at(1.5), None),
    # a restart policy brings it back: it still died
    ([ev("start", 1), ev("die", 2, code=1), ev("start", 2.1)], PLAIN, 6, Verdict.DIED, at(2), None),
    # a healthcheck decides, whatever `settle` says
    ([ev("start", 1)], CHECKED, 30, None, None, None),
    ([ev("start", 1), ev("health_status: healthy", 7)], CHECKED, 7, Verdict.HEALTHY, at(7), None),
    ([ev("start", 1), ev("health_status: unhealthy", 4)], CHECKED, 4, Verdict.UNHEALTHY, at(4), None),
    ([ev("start", 1), ev("die", 2, code=1), ev("health_status: healthy", 3)], CHECKED, 3, Verdict.DIED, at(2), None),
    # another container of the service, or one on the old image, is not the one proved
    ([ev("start", 1, "b")], PLAIN, 9, None, None, None),
    ([ev("start", 1, "b"), ev("start", 2)],
     {"a": Candidate("a", at(2), False), "b": Candidate("b", at(1), False, image_ok=False)}, 4, None, None, at(5)),
    ([ev("start", 1), ev("die", 2, "b", code=1)], PLAIN, 3, None, None, at(4)),
])
def test_judge(events: list[Event], candidates: dict[str, Candidate], now: float, verdict: Verdict | None,
               when: datetime | None, look_again: datetime | None) -> None:
    decision = judge(events, candidates, 3.0, at(now))

    assert (decision.verdict, decision.at, decision.look_again) == (verdict, when, look_again)


def test_the_story_says_what_happened_and_when() -> None:
    c = container(doc())
    start, die = ev("start", 1, "abc"), ev("die", 3.04, "abc", 3)

    died = Proof("celery_beat", Verdict.DIED, c, (start, die), at(0.9), at(3.05), at(3.04))
    healthy = Proof("celery_beat", Verdict.HEALTHY, c, (start, ev("health_status: healthy", 7, "abc")), at(0.9),
                    at(7.01), at(7))

    assert died.story() == "started 02:00:01.000; died at 02:00:03.040 (exit code 3), 2.04 s after it started, seen 0.01 s later"
    assert healthy.story() == ("started 02:00:01.000; healthy at 02:00:07.000 (health_status), 6.00 s after it "
                               "started, seen 0.01 s later")
    assert died.as_data()["verdict"] == "died" and died.as_data()["decided_at"] == "2026-11-25T02:00:03.050000+00:00"


@pytest.mark.parametrize(("said", "user", "hint"), [
    ("failed to open the raw stream connection: dial unix /var/run/docker.sock: connect: permission denied", "deploy",
     " (the SSH user deploy may not use the Docker socket: add it to group docker, or connect as a user in it)"),
    ("failed to open the raw stream connection: dial unix /x.sock: connect: no such file or directory", "deploy", ""),
])
def test_a_user_without_access_is_told_what_to_do(said: str, user: str, hint: str) -> None:
    assert _hint(said, user) == hint


def test_the_hint_names_the_user_as_the_host_reaches_it() -> None:
    said = "dial unix /var/run/docker.sock: connect: permission denied"
    assert _hint(said, "app", "the become user") == (
        " (the become user app may not use the Docker socket: add it to group docker, or become a user in it)")
    assert _hint(said, "me", "the local user") == (
        " (the local user me may not use the Docker socket: add it to group docker, or run remediate as a user in it)")


@pytest.mark.parametrize(("server", "spoken"), [("1.41", "1.41"), ("1.45", "1.45"), ("1.50", "1.45"), ("1.9", "1.9")])
def test_the_api_version_is_the_daemons_capped_at_docker_pys(server: str, spoken: str) -> None:
    assert _negotiate(server) == spoken
