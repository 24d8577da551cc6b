"""Work scheduled on a worker's event loop: at once on the loop's own thread, and a
failed delete retried on a timer there, never with a sleep that stops the loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from pipeline.sqs import acks, transport
from pipeline.sqs.eventloop import run_soon
from pipeline.sqs.transport import Channel


class RecordingHub:
    """What kombu's Hub offers the code under test: timers and a loop thread."""

    def __init__(self, loop_thread: int | None) -> None:
        self._loop_thread = loop_thread
        self.later: list[tuple[float, Any, tuple[Any, ...]]] = []
        self.soon: list[tuple[Any, tuple[Any, ...]]] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> None:
        self.later.append((delay, callback, args))

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.soon.append((callback, args))


def test_on_the_loop_thread_a_zero_timer_runs_it_before_the_next_poll() -> None:
    hub = RecordingHub(threading.get_ident())
    run_soon(hub, print, "x")
    assert (hub.later, hub.soon) == ([(0, print, ("x",))], [])


def test_from_another_thread_call_soon_wakes_the_loop() -> None:
    hub = RecordingHub(loop_thread=-1)
    run_soon(hub, print, "x")
    assert (hub.later, hub.soon) == ([], [(print, ("x",))])


class FlakySQS:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.deleted: list[list[str]] = []

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]
                             ) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise EndpointConnectionError(endpoint_url=QueueUrl)
        self.deleted.append([e["ReceiptHandle"] for e in Entries])
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


class LoopChannel:
    """The attributes of our Channel that _delete_batch reads."""

    def __init__(self, sqs: FlakySQS, hub: RecordingHub | None) -> None:
        self._sqs, self.hub = sqs, hub
        self._delete_batch = Channel._delete_batch.__get__(self)

    def sqs(self, queue: str | None = None) -> FlakySQS:
        return self._sqs


def test_a_failed_delete_on_the_event_loop_is_retried_on_a_timer_not_a_sleep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail(f"slept {s}s on the loop"))
    hub = RecordingHub(threading.get_ident())
    sqs = FlakySQS(failures=1)
    channel = LoopChannel(sqs, hub)
    channel._delete_batch("http://q/orders", "orders", ["r1", "r2"])
    assert sqs.deleted == []
    # scheduled through run_soon: a zero timer that arms the retry's own timer
    ((zero, arm, (pause, retry, *args)),) = hub.later
    assert (zero, arm, pause) == (0, hub.call_later, acks.ACK_RETRY_PAUSE_S)
    retry(*args)
    assert sqs.deleted == [["r1", "r2"]]


def test_without_an_event_loop_the_delete_waits_and_retries_in_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    sqs = FlakySQS(failures=2)
    LoopChannel(sqs, hub=None)._delete_batch("http://q/orders", "orders", ["r1"])
    assert (sqs.deleted, pauses) == ([["r1"]], [acks.ACK_RETRY_PAUSE_S] * 2)


class Delivered:
    def __init__(self, url: str, receipt: str) -> None:
        self.delivery_info = {"sqs_message": {"ReceiptHandle": receipt}, "sqs_queue": url,
                              "routing_key": url.rsplit("/", 1)[-1]}


class RecordingQoS:
    def __init__(self) -> None:
        self.messages: dict[str, Delivered] = {}
        self.acked: list[str] = []

    def get(self, tag: str) -> Delivered:
        return self.messages[tag]

    def ack(self, tag: str) -> None:
        self.acked.append(tag)


class AckingChannel(LoopChannel):
    """The attributes of our Channel that basic_ack and the flushes read."""

    def __init__(self, sqs: FlakySQS, hub: RecordingHub | None) -> None:
        super().__init__(sqs, hub)
        self.qos = RecordingQoS()
        self._acks: dict[bool, dict[str, Any]] = {True: {}, False: {}}
        self._ack_flush_scheduled: set[bool] = set()
        self._ack_lock = threading.Lock()
        self._awaiting_slots: dict[str, Any] = {}  # no receive waits for slots here
        self._slot_check_scheduled = False
        for name in ("basic_ack", "flush_acks", "_flush_acks_of", "_slots_freed"):
            setattr(self, name, getattr(Channel, name).__get__(self))

    def canonical_queue_name(self, name: str) -> str:
        return name

    def deliver(self, url: str, tag: str) -> str:
        self.qos.messages[tag] = Delivered(url, f"receipt-{tag}")
        return tag


def run_zero_timers(hub: RecordingHub) -> None:
    """What the loop does before it polls again: fire the timers that are due now."""
    due, hub.later = [e for e in hub.later if e[0] == 0], [e for e in hub.later if e[0] != 0]
    for _, callback, args in due:
        callback(*args)


def test_fifo_acks_of_one_loop_turn_go_out_in_one_batch_before_the_next_poll() -> None:
    """A FIFO delete unlocks its product's group, so it does not wait for the ack window;
    but acks made in the same turn (two pool results read in one poll) share a request."""
    hub = RecordingHub(threading.get_ident())
    sqs = FlakySQS(failures=0)
    channel = AckingChannel(sqs, hub)
    fifo, standard = "http://q/t-inventory.fifo", "http://q/t-orders"
    for tag in ("f1", "f2", "f3"):
        channel.basic_ack(channel.deliver(fifo, tag))
    channel.basic_ack(channel.deliver(standard, "s1"))
    assert sqs.deleted == [] and channel.qos.acked == ["f1", "f2", "f3", "s1"]
    run_zero_timers(hub)  # the next turn, before its poll
    assert sqs.deleted == [["receipt-f1", "receipt-f2", "receipt-f3"]]
    # the standard ack arms its window's timer and waits for it
    ((delay, callback, args),) = hub.later
    assert delay == acks.ACK_BATCH_WINDOW_S
    callback(*args)
    assert sqs.deleted[-1] == ["receipt-s1"]
    channel.basic_ack(channel.deliver(fifo, "f4"))  # a later turn: a batch of its own
    run_zero_timers(hub)
    assert sqs.deleted[-1] == ["receipt-f4"]


def test_without_an_event_loop_an_ack_is_deleted_at_once() -> None:
    sqs = FlakySQS(failures=0)
    channel = AckingChannel(sqs, hub=None)
    channel.basic_ack(channel.deliver("http://q/t-inventory.fifo", "f1"))
    channel.basic_ack(channel.deliver("http://q/t-orders", "s1"))
    assert sqs.deleted == [["receipt-f1"], ["receipt-s1"]]


@pytest.mark.parametrize("module", ["transport", "broadcast"])
def test_every_kombu_method_a_channel_replaces_is_checked_at_import(module: str) -> None:
    from kombu.transport import SQS

    from pipeline.sqs import broadcast

    channel, listed = {"transport": (transport.Channel, transport.KOMBU_OVERRIDES),
                       "broadcast": (broadcast.BroadcastChannel, broadcast.KOMBU_OVERRIDES)}[module]
    replaced = {name for name, value in vars(channel).items()
                if callable(value) and name != "__init__" and hasattr(SQS.Channel, name)}
    assert replaced == set(listed)


def test_a_loop_turn_that_leaves_timers_due_polls_without_blocking() -> None:
    """Regression: kombu fires ten timers a turn, then polled for its one-second
    minimum with the rest still due; a solo FIFO lane stalled on it (5 updates/s)."""
    from kombu.asynchronous.hub import Hub

    hub = Hub()
    fired: list[int] = []
    try:
        for n in range(12):
            hub.call_later(0, fired.append, n)
        assert hub.fire_timers() == 0  # two still due: poll and come straight back
        assert fired == list(range(10))
        hub.fire_timers()
        assert fired == list(range(12))
        hub.call_later(30, fired.append, 99)
        assert hub.fire_timers() > 1  # nothing due: the poll may wait for the next one
    finally:
        hub.close()
