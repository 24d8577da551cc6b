"""Celery events, batched: one message per process per flush interval.

Every event on SQS is an SNS publish, and every monitor deletes each message
it receives. Sent one by one (stock Celery), events cost ~5 extra requests per
task and ~30-45 % of throughput (shared/notes). Celery's dispatcher can
already buffer a group of events and send them as one list message, which
every EventReceiver (Flower's included) unpacks; this dispatcher buffers
every group (task and worker events) and flushes on a timer or when the
batch nears SQS's message size, so the cost is per flush, not per task.

Plugged in through Celery's own extension point (``Celery(events=...)``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import celery
from celery.app.events import Events as CeleryEvents
from celery.events.dispatcher import EventDispatcher
from kombu.asynchronous import get_event_loop

from pipeline.monitoring.redaction import redact_event_fields

__all__ = ["BatchingDispatcher", "Events"]

log = logging.getLogger("pipeline.events")

# The flush below relies on EventDispatcher's _group_buffer and _publish.
CELERY_SERIES = "5.7."
if not celery.__version__.startswith(CELERY_SERIES):
    raise ImportError(f"pipeline.monitoring.events was written for celery {CELERY_SERIES}x, "
                      f"found {celery.__version__}: re-check BatchingDispatcher")

# SQS and SNS take 256 KiB; kombu base64-encodes the body (4/3) inside an envelope.
# A task event is ~0.6 KiB, at most ~2.5 KiB (Celery caps argument reprs at 1 KiB):
# 60 events stay far below the limit without measuring each one.
MAX_BATCH_EVENTS = 60


class BatchingDispatcher(EventDispatcher):
    """Buffers every event and publishes the buffer as one message per interval."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["buffer_group"] = ["task", "worker"]
        kwargs["buffer_limit"] = 10_000  # the timer and the byte cap flush first
        kwargs["on_send_buffered"] = None  # not every loop turn: on the timer
        self._wake = threading.Event()
        self._flusher: Any = None  # the loop's timer entry, or a thread
        self._buffered = 0
        super().__init__(*args, **kwargs)
        self.flush_interval_s = float(self.app.conf.get("pipeline_event_flush_s") or 1.0)
        self.on_send_buffered = self._on_buffered

    def _on_buffered(self) -> None:
        if self._flusher is not None:
            return
        hub = get_event_loop()
        if hub is not None:  # a worker: flush on its event loop, no thread to contend with
            self._flusher = hub.call_repeatedly(self.flush_interval_s, self._flush_once)
            return
        self._flusher = threading.Thread(target=self._flush_forever, name="event-flush",
                                         daemon=True)
        self._flusher.start()

    def send(self, type: str, blind: bool = False, utcoffset: Any = None,
             retry: bool = False, retry_policy: Any = None, Event: Any = None,
             **fields: Any) -> Any:
        redact_event_fields(fields)
        if type == "worker-offline":
            # The last word of a stopping worker: out now, with what is buffered.
            self.flush(errors=False)
        kwargs: dict[str, Any] = {"blind": blind, "retry": retry, "retry_policy": retry_policy}
        if utcoffset is not None:
            kwargs["utcoffset"] = utcoffset
        if Event is not None:
            kwargs["Event"] = Event
        result = super().send(type, **kwargs, **fields)
        if type == "worker-offline":
            self.flush(errors=False)
        else:
            self._buffered += 1
            if self._buffered >= 5 * MAX_BATCH_EVENTS:  # a busy second: flush early
                self._wake.set()
        return result

    def _flush_forever(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._flush_once()

    def _flush_once(self) -> None:
        try:
            self.flush(errors=True)
        except Exception as error:  # a failed flush re-buffers; try next time
            log.warning("could not publish buffered events: %s", error)

    def flush(self, errors: bool = True, groups: bool = True) -> None:
        """Publish every buffered group as ONE list message (Celery sends one per group)."""
        if errors:
            super().flush(errors=True, groups=False)
        if not groups:
            return
        with self.mutex:
            if self._closed:
                return
            batches = [(group, list(events)) for group, events in self._group_buffer.items()
                       if events]
            merged = [event for _, events in batches for event in events]
            self._buffered = 0
            merged.sort(key=lambda e: e.get("clock") or 0)
            for start in range(0, len(merged), MAX_BATCH_EVENTS):
                self._publish(merged[start:start + MAX_BATCH_EVENTS], self.producer,
                              "events.multi")
            for group, events in batches:
                del self._group_buffer[group][:len(events)]

    def close(self) -> None:
        if self._flusher is not None and not isinstance(self._flusher, threading.Thread):
            self._flusher.cancel()
        try:
            self.flush(errors=False)
        except Exception as error:
            log.warning("events buffered at close were not sent: %s", error)
        self._wake.set()
        super().close()


class Events(CeleryEvents):
    """app.events with the batching dispatcher (Flower's receiver is Celery's own)."""

    dispatcher_cls = "pipeline.monitoring.events:BatchingDispatcher"
