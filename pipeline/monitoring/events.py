"""Celery events, batched: one message per process per flush interval.

Every event on SQS is an SNS publish, and every monitor deletes each message
it receives. Sent one by one (stock Celery), events cost ~5 extra requests per
task and ~30-45 % of throughput (shared/notes). Celery's dispatcher can
already buffer a group of events and send them as one list message, which
every EventReceiver (Flower's included) unpacks; this dispatcher buffers
every group (task and worker events) and flushes them on a timer, compressed,
in as few messages as SNS's size limit allows, so the cost is per flush, not
per task.

Plugged in through Celery's own extension point (``Celery(events=...)``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celery
from celery.app.events import Events as CeleryEvents
from celery.events.dispatcher import EventDispatcher
from celery.utils.time import utcoffset as celery_utcoffset
from kombu.asynchronous import get_event_loop
from kombu.compression import compress
from kombu.serialization import dumps

from pipeline.monitoring.redaction import redact_event_fields

__all__ = ["BatchingDispatcher", "Body", "Events", "cut_long_fields", "encode", "encoded_batches"]

log = logging.getLogger("pipeline.events")

# The flush below relies on EventDispatcher's _group_buffer and _publish.
CELERY_SERIES = "5.7."
if not celery.__version__.startswith(CELERY_SERIES):
    raise ImportError(f"pipeline.monitoring.events was written for celery {CELERY_SERIES}x, "
                      f"found {celery.__version__}: re-check BatchingDispatcher")

# A message body at most this long after compression: base64 (4/3) makes it
# 214 KiB inside kombu's envelope, under SNS's 256 KiB.
MAX_BODY_BYTES = 160 * 1024
MAX_BATCH_EVENTS = 2000  # the most one flush encodes at once
EARLY_FLUSH_EVENTS = 2000  # a thread-flushed process holds no more than this
# Events go zlib-compressed (kombu's "compression" header, which every kombu
# consumer, Flower's included, undoes): 240 task events are 84 KB of JSON and
# 3 KB compressed, in 0.35 ms. Uncompressed, SNS's query protocol made the
# lane URL-encode their base64 byte by byte in Python, ~7 ms per 240 events,
# and the emulator and each monitor carried 28 times the bytes. A batch is cut
# by its encoded size, so a busy process sends one message a flush (it sent
# one per 60 events: four a second per lane at 40 orders/s, each an SNS
# publish, a delivery per monitor, and a receive and a delete in each).
EVENT_COMPRESSION = "zlib"
# A field is cut to this many characters: a deep recursion's traceback is
# hundreds of KiB, and an event SNS refuses would be re-sent with every flush.
MAX_FIELD_CHARS = 16 * 1024


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str
    content_encoding: str
    compression: str


def encode(events: Any, serializer: str = "json") -> Body:
    content_type, content_encoding, data = dumps(events, serializer=serializer)
    compressed, compression = compress(data, EVENT_COMPRESSION)
    return Body(compressed, content_type, content_encoding, compression)


def encoded_batches(events: list[dict[str, Any]], serializer: str = "json",
                    limit: int = MAX_BODY_BYTES) -> Iterator[tuple[list[dict[str, Any]], Body]]:
    """The events in order, as few encoded batches as keep each body within `limit`
    (halved until they fit); an event over the limit on its own goes alone."""
    for start in range(0, len(events), MAX_BATCH_EVENTS):
        pending = [events[start:start + MAX_BATCH_EVENTS]]
        while pending:
            batch = pending.pop()
            body = encode(batch, serializer)
            if len(body.data) <= limit or len(batch) == 1:
                yield batch, body
            else:
                half = len(batch) // 2
                pending += [batch[half:], batch[:half]]  # the first half next


def cut_long_fields(fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            fields[key] = (f"{value[:MAX_FIELD_CHARS]}... [{len(value) - MAX_FIELD_CHARS} "
                           f"characters cut]")


class BatchingDispatcher(EventDispatcher):
    """Buffers every event and publishes the buffer as one message per interval."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["buffer_group"] = ["task", "worker"]
        kwargs["buffer_limit"] = 10_000  # the timer and EARLY_FLUSH_EVENTS flush first
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
        cut_long_fields(fields)
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
            if self._buffered >= EARLY_FLUSH_EVENTS:  # a very busy second: flush early
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
            for batch, body in encoded_batches(merged, self.serializer):
                self._publish(batch, self.producer, "events.multi", body=body)
            for group, events in batches:
                del self._group_buffer[group][:len(events)]

    def _publish(self, event: Any, producer: Any, routing_key: str, retry: bool = False,
                 retry_policy: Any = None, utcoffset: Any = celery_utcoffset,
                 body: Body | None = None) -> None:
        """Celery's _publish, with the event (or batch) encoded and compressed here."""
        if producer is None:
            return
        if body is None:
            body = encode(event, self.serializer)
        try:
            producer.publish(body.data, routing_key=routing_key, exchange=self.exchange.name,
                             retry=retry, retry_policy=retry_policy, declare=[self.exchange],
                             content_type=body.content_type,
                             content_encoding=body.content_encoding,
                             headers={**self.headers, "compression": body.compression},
                             delivery_mode=self.delivery_mode)
        except Exception:
            if not self.buffer_while_offline:
                raise
            self._outbound_buffer.append((event, routing_key))

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
