"""Flower's event intake: one loop wake-up per batch, every event handled once and
in order, a bad event logged and passed; a kwargs repr parsed once."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.monitoring.flower_feed import EventFeed, lighten
from pipeline.testing import wait_until


class Loop:
    """What tornado's add_callback gives Flower: callables run later, in order."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.scheduled = 0

    def add_callback(self, callback: Callable[[], None]) -> None:
        self.scheduled += 1
        self.calls.put(callback)

    def run_pending(self) -> int:
        ran = 0
        while not self.calls.empty():
            self.calls.get()()
            ran += 1
        return ran


def test_a_burst_of_events_wakes_the_loop_once_and_is_handled_in_order() -> None:
    loop, handled = Loop(), []
    feed = EventFeed(loop.add_callback, handled.append)
    for n in range(300):
        feed.put(n)
    assert loop.scheduled == 1  # Flower's own intake: 300
    loop.run_pending()
    assert handled == list(range(300))


def test_a_flood_is_taken_a_turn_at_a_time_so_the_loop_serves_pages_between() -> None:
    loop, handled = Loop(), []
    feed = EventFeed(loop.add_callback, handled.append, per_turn=40)
    for n in range(100):
        feed.put(n)
    loop.calls.get()()
    assert handled == list(range(40))
    assert loop.calls.qsize() == 1  # the rest comes back as one more call
    loop.run_pending()
    assert handled == list(range(100))
    assert loop.scheduled == 3


def test_a_bad_event_is_logged_and_the_rest_still_handled(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    loop, handled = Loop(), []

    def handle(item: int) -> None:
        if item == 3:
            raise KeyError("uuid")
        handled.append(item)

    feed = EventFeed(loop.add_callback, handle)
    for n in range(6):
        feed.put(n)
    loop.run_pending()
    assert handled == [0, 1, 2, 4, 5]
    assert "Flower could not take an event" in caplog.text


def test_events_put_while_the_loop_drains_are_never_stranded() -> None:
    """Four receiving threads against a loop thread: each event handled exactly once,
    each thread's in the order it put them."""
    loop, handled = Loop(), []
    feed = EventFeed(loop.add_callback, handled.append, per_turn=7)
    producers = [threading.Thread(target=lambda t=t: [feed.put((t, n)) for n in range(2000)])
                 for t in range(4)]
    stop = threading.Event()

    def run_loop() -> None:
        while not stop.is_set() or not loop.calls.empty():
            with contextlib.suppress(queue.Empty):
                loop.calls.get(timeout=0.05)()

    runner = threading.Thread(target=run_loop)
    runner.start()
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    try:
        wait_until(lambda: len(handled) >= 8000, timeout=60, interval=0.01,
                   message="every event handled")
    finally:
        stop.set()
        runner.join()
    assert sorted(handled) == sorted((t, n) for t in range(4) for n in range(2000))
    for t in range(4):
        assert [n for tt, n in handled if tt == t] == list(range(2000))


def test_lightened_flower_parses_a_kwargs_repr_once_with_the_same_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flower.events import Events
    from flower.utils import search

    original = search._kwargs_pairs
    monkeypatch.setattr(search, "_kwargs_pairs", original)  # undone after the test
    monkeypatch.setattr(Events, "on_event", Events.on_event)
    calls: list[Any] = []

    def counting(value: Any) -> Any:
        calls.append(value)
        return original(value)

    search._kwargs_pairs = counting
    lighten()
    text = "{'order_id': 'ord_5c3a', 'attempt': 2}"
    first = search._kwargs_pairs(text)
    assert first == original(text) == frozenset({"order_id=ord_5c3a", "attempt=2"})
    assert search._kwargs_pairs(text) is first
    assert calls == [text]
    assert search._kwargs_pairs({"a": 1}) == original({"a": 1})  # not a repr: not cached
    assert search._kwargs_pairs("not a dict") == frozenset()
