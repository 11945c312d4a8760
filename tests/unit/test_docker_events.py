"""An event subscription's reader: bounded by any deadline, woken by an interrupt, errors in the host's words.

The stream is a generator standing in for docker-py's decoded `/events` stream (no daemon, no SSH)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from remediate.core.errors import Interrupted, StepError
from remediate.transport.docker import DockerAPI, Events


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
