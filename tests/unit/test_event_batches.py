"""How a process's buffered Celery events become messages: compressed, cut by
their encoded size, so a busy second is one SNS publish, never one SNS refuses."""

from __future__ import annotations

import os
import zlib
from typing import Any

from celery.events import Event
from hypothesis import given, settings
from hypothesis import strategies as st
from kombu.utils.json import loads

from pipeline.monitoring.events import (
    MAX_BODY_BYTES,
    MAX_FIELD_CHARS,
    cut_long_fields,
    encode,
    encoded_batches,
)

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                    st.floats(allow_nan=False, allow_infinity=False))
EVENTS = st.dictionaries(st.text(max_size=20), SCALARS, max_size=12)


def task_event(n: int, kind: str = "task-succeeded") -> dict[str, Any]:
    return Event(kind, uuid=f"{n:08x}-1b2c-4d5e-8f90-a1b2c3d4e5f6", hostname="orders@box",
                 pid=4242, clock=n, utcoffset=0, name="pipeline.ship",
                 args="('ord_5c3a9e7f1b2d4c6e8a0b',)", kwargs="{}", result="None",
                 runtime=0.0123)


def decoded(data: bytes) -> Any:
    return loads(zlib.decompress(data))


@settings(max_examples=50)
@given(st.lists(EVENTS, max_size=40), st.integers(min_value=64, max_value=2000))
def test_batches_keep_every_event_once_in_order_and_fit_the_limit(
        events: list[dict[str, Any]], limit: int) -> None:
    batches = list(encoded_batches(events, limit=limit))
    assert [e for batch, _ in batches for e in batch] == events
    for batch, body in batches:
        assert batch and decoded(body.data) == batch
        assert len(body.data) <= limit or len(batch) == 1  # one too large goes alone


def test_a_busy_second_of_a_lane_is_one_small_message() -> None:
    """240 task events (a lane at 40 orders/s) went as four messages of 60."""
    events = [task_event(n) for n in range(240)]
    batches = list(encoded_batches(events))
    assert len(batches) == 1
    body = batches[0][1]
    assert body.compression == "application/x-gzip"
    assert len(body.data) < 8 * 1024  # 84 KB as JSON


def test_incompressible_events_are_cut_into_messages_sns_takes() -> None:
    """Random text does not compress: 600 events of 1.4 KB cannot go as one."""
    events = [{"type": "task-failed", "uuid": str(n), "exception": os.urandom(700).hex()}
              for n in range(600)]
    batches = list(encoded_batches(events))
    assert len(batches) > 1
    assert all(len(body.data) <= MAX_BODY_BYTES for _, body in batches)
    assert all(len(body.data) * 4 / 3 < 256 * 1024 - 32 * 1024 for _, body in batches)
    assert [e for batch, _ in batches for e in batch] == events


def test_a_huge_traceback_is_cut_and_says_how_much() -> None:
    fields = {"traceback": "x" * 500_000, "exception": "RecursionError()", "pid": 1}
    cut_long_fields(fields)
    assert fields["traceback"].startswith("x" * MAX_FIELD_CHARS)
    assert fields["traceback"].endswith(f"[{500_000 - MAX_FIELD_CHARS} characters cut]")
    assert fields["exception"] == "RecursionError()"
    assert len(encode(fields).data) < MAX_BODY_BYTES


def test_a_flushed_batch_travels_compressed_and_a_stock_receiver_reads_every_event(
        ) -> None:
    from celery import Celery

    app = Celery("events-test", broker="memory://",
                 events="pipeline.monitoring.events:Events")
    app.conf.pipeline_event_flush_s = 30  # flushed below, not on a timer
    received: list[dict[str, Any]] = []
    compressions: list[Any] = []
    with app.connection_for_write() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": received.append})
        with receiver.Consumer() as (consuming, _, consumers):
            consumers[0].register_callback(
                lambda body, message: compressions.append(message.headers.get("compression")))
            dispatcher = app.events.Dispatcher(connection, hostname="orders@box")
            for n in range(100):
                dispatcher.send("task-succeeded", uuid=f"task-{n}", result="None",
                                runtime=0.01)
            dispatcher.flush()
            dispatcher.send("worker-offline")  # a stopping worker's last word: sent at once
            while len(received) < 101:
                consuming.drain_events(timeout=5)
            dispatcher.close()
    assert [e.get("uuid") for e in received[:100]] == [f"task-{n}" for n in range(100)]
    assert received[100]["type"] == "worker-offline"
    assert compressions == ["application/x-gzip"] * 2  # one message per flush
