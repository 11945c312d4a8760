"""An event subscription's reader: bounded by any deadline, woken by an interrupt, errors in the host's words.

The stream is a generator standing in for docker-py's decoded `/events` stream (no daemon, no SSH)."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from collections.abc import Iterator
from typing import Any

import pytest

from remediate.core.errors import Interrupted, StepError
from remediate.transport.docker import EPOCH, DockerAPI, Events, Subscription


class Client:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def close(self) -> None:
        self.stop.set()  # as closing the channel ends the stream


def stream(items: list[Any], stop: threading.Event) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, float):
            time.sleep(item)
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item
    stop.wait(10)


def subscription(*items: Any) -> Events:
    stop = threading.Event()
    return Events(DockerAPI("web-1", None), Client(stop), None, stream(list(items), stop))


def test_events_arrive_and_a_deadline_bounds_the_wait() -> None:
    events = subscription({"Action": "start"}, 0.2, {"Action": "die"})

    assert events.next(time.time() + 5) == {"Action": "start"}
    began = time.time()
    assert events.next(time.time() + 0.05) is None, "the deadline passed first"
    assert time.time() - began < 0.15
    assert events.next(time.time() + 5) == {"Action": "die"}, "the stream goes on after a deadline passed"
    events.close()


def test_an_interrupt_wakes_the_wait_at_once() -> None:
    events = subscription()
    threading.Timer(0.1, events.interrupt).start()
    began = time.time()

    with pytest.raises(Interrupted):
        events.next(time.time() + 30)
    assert time.time() - began < 1
    events.close()


def test_a_broken_stream_is_an_error_naming_the_host() -> None:
    events = subscription(ValueError("unexpected end of JSON input"))

    with pytest.raises(StepError, match="web-1: the Docker daemon's event stream failed: unexpected end of JSON"):
        events.next(time.time() + 5)
    assert events.ended and events.next(time.time() + 5) is None
    events.close()


class Chan:
    """A channel whose close ends the stream, as a closed SSH channel ends the read of the stream on it."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def close(self) -> None:
        self.stop.set()


class StuckClient:
    def close(self) -> None:
        pass  # as requests' close(): the stream's connection is checked out, nothing is closed


def test_closing_a_stream_closes_its_channel_and_the_reader_ends_at_once() -> None:
    stop = threading.Event()
    events = Events(DockerAPI("web-1", None), StuckClient(), None, stream([], stop), [Chan(stop)])  # type: ignore[list-item]
    began = time.time()
    events.close()
    assert time.time() - began < 1, "the reader was left blocked on the open channel"
    assert not events.alive


def at(seconds: float, action: str) -> dict[str, Any]:
    return {"Action": action, "timeNano": int(seconds * 1e9)}


def test_a_subscription_sees_only_what_happened_after_it_began() -> None:
    stop = threading.Event()
    events = Events(DockerAPI("web-1", None), Client(stop), None,
                    stream([at(100.0, "die"), at(100.4, "start"), at(101.0, "start"), at(102.0, "die")], stop))
    sub = Subscription(events, EPOCH + timedelta(seconds=100.5))

    assert sub.next(time.time() + 5) == at(101.0, "start"), "the older ones (a previous wait's) are skipped"
    assert sub.next(time.time() + 5) == at(102.0, "die")
    assert sub.next(time.time() + 0.05) is None and not sub.ended
    events.close()
