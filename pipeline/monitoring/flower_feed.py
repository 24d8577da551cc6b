"""Flower's event intake, made to cost per batch what it cost per event.

Flower 2.2 receives events on a thread and hands each one to its tornado loop
with `add_callback`: a wake-up of the loop (a write to its self-pipe, a read,
a callback) per event, 21 events an order here. Every event then re-indexes
its task for the search box, parsing the task's kwargs repr with
`ast.literal_eval` again although only the state changed. Profiled at 40
orders/s, the two were ~25 % of Flower's samples. Here:

* the receiving thread queues events and wakes the loop once per batch
  (`EventFeed`); the loop handles them in order, at most PER_TURN a turn so
  pages still get served in a flood, and one bad event is logged, not fatal;
* a kwargs repr is parsed once (an LRU keyed by the repr); the frozenset of
  pairs Flower builds from it is immutable, so sharing it is safe.

`lighten()` patches both; like `harden()` it fails loudly on another Flower.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["PER_TURN", "EventFeed", "lighten"]

log = logging.getLogger("pipeline.flower")

PER_TURN = 500
PARSED_KWARGS_KEPT = 4096


class EventFeed:
    """Items put from any thread, handled in order by `handle` on the thread that
    runs what `schedule` is given, one scheduled call per batch."""

    def __init__(self, schedule: Callable[[Callable[[], None]], Any],
                 handle: Callable[[Any], Any], per_turn: int = PER_TURN) -> None:
        self._schedule = schedule
        self._handle = handle
        self._per_turn = per_turn
        self._pending: deque[Any] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, item: Any) -> None:
        self._pending.append(item)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._scheduled:  # a drain that has not started yet will take it
                return
            self._scheduled = True
        self._schedule(self.drain)

    def drain(self) -> None:
        with self._lock:
            self._scheduled = False  # from here a put schedules the next drain
        for _ in range(self._per_turn):
            try:
                item = self._pending.popleft()
            except IndexError:
                return
            try:
                self._handle(item)
            except Exception:  # Flower's own loop logged and went on, per event
                log.exception("Flower could not take an event")
        if self._pending:
            self._wake()  # the rest on a later turn, after the loop's other work


def lighten() -> None:
    from flower.events import Events
    from flower.utils import search

    if not hasattr(search, "_kwargs_pairs") or not hasattr(Events, "on_event"):
        raise ImportError("pipeline.monitoring.flower_feed: Flower's search index or "
                          "event intake changed; re-check before upgrading flower")

    parse = search._kwargs_pairs
    parsed = functools.lru_cache(maxsize=PARSED_KWARGS_KEPT)(parse)

    def kwargs_pairs(value: Any) -> Any:
        return parsed(value) if isinstance(value, str) else parse(value)

    def on_event(self: Any, event: dict[str, Any]) -> None:
        feed = self.__dict__.get("_pipeline_feed")
        if feed is None:  # only the receiving thread gets here
            feed = self.__dict__["_pipeline_feed"] = EventFeed(
                self.io_loop.add_callback, lambda e: self.state.event(e))
        feed.put(event)

    search._kwargs_pairs = kwargs_pairs
    Events.on_event = on_event
