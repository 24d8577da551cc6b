"""A busy worker lets its receives fill up; an idle or lightly loaded one polls at once."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sqs import liveness
from pipeline.sqs.prefetch import MAX_FILL_WAIT_S, SQS_MAX_MESSAGES, fill_for, worth_polling
from pipeline.sqs.transport import Channel


def test_a_worker_with_little_in_hand_polls_at_once() -> None:
    # the orders lane: prefork x2, prefetch multiplier 16
    assert [worth_polling(32, held) for held in (0, 1, 9)] == [True, True, True]


def test_a_busy_worker_waits_until_a_receive_can_bring_ten() -> None:
    assert [worth_polling(32, held) for held in (22, 23, 31, 32)] == [True, False, False, False]


def test_a_small_window_waits_for_half_of_it() -> None:
    assert fill_for(4) == 2
    assert [worth_polling(4, held) for held in (0, 1, 2, 3, 4)] == [True, True, True, False,
                                                                    False]


def test_an_unlimited_window_always_polls() -> None:
    assert worth_polling(0, 500) is True


@given(st.integers(1, 512), st.integers(0, 600))
def test_it_waits_only_while_the_pool_has_at_least_a_fill_of_work(prefetch: int,
                                                                    held: int) -> None:
    fill = fill_for(prefetch)
    assert 1 <= fill <= SQS_MAX_MESSAGES
    if not worth_polling(prefetch, held):
        assert held >= fill and prefetch - held < fill


class Timer:
    def __init__(self, delay: float, fn: Any, args: tuple[Any, ...]) -> None:
        self.delay, self.fn, self.args, self.cancelled = delay, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class Hub:
    """kombu's Hub as the channel uses it; its loop runs on this thread."""

    def __init__(self) -> None:
        self.later: list[Timer] = []
        self._loop_thread = threading.get_ident()

    def call_later(self, delay: float, fn: Any, *args: Any) -> Timer:
        self.later.append(Timer(delay, fn, args))
        return self.later[-1]

    def run_due(self, *, up_to: float = 0.0) -> None:
        """Fire the timers due within `up_to` seconds, as the loop would."""
        due = [t for t in self.later if t.delay <= up_to and not t.cancelled]
        self.later = [t for t in self.later if t not in due]
        for timer in due:
            timer.fn(*timer.args)


class BusyChannel(Channel):
    """Only what _schedule_queue and the acks read: no connection to SQS."""

    def __init__(self, held: int) -> None:  # kombu's set-up skipped
        self.hub = Hub()
        self._active_queues = ["shipping", "inventory.fifo"]
        self._qos = SimpleNamespace(_delivered=dict.fromkeys(range(held)), _dirty=set(),
                                    prefetch_count=32)
        self.connection = SimpleNamespace(polling_interval=0.01)
        self._awaiting_slots = {}
        self._slot_check_scheduled = False
        self.polled: list[str] = []

    def ack(self, n: int) -> None:
        """`n` acks, as basic_ack leaves them: slots freed, the channel told."""
        self._qos._dirty.update(range(len(self._qos._dirty), len(self._qos._dirty) + n))
        self._slots_freed()


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> None:
    from kombu.transport import SQS

    monkeypatch.setattr(SQS.Channel, "_schedule_queue",
                        lambda self, queue: self.polled.append(queue))
    monkeypatch.setattr("pipeline.worker.intake.gate_for", lambda queue: None)


@pytest.mark.usefixtures("polls")
def test_a_busy_channel_waits_for_acks_that_free_a_fill_then_polls_at_once() -> None:
    liveness.received("shipping")  # a receive just now
    busy = BusyChannel(held=25)
    busy._schedule_queue("shipping")
    busy._schedule_queue("shipping")  # asked again while waiting: still one wait
    assert busy.polled == []
    assert [(t.delay, t.args) for t in busy.hub.later] == [(MAX_FILL_WAIT_S, ("shipping",))]
    busy.ack(2)  # 25 - 2 held: nine slots free, not a fill yet
    busy.hub.run_due()
    assert busy.polled == []
    busy.ack(1)  # ten free
    busy.hub.run_due()
    assert busy.polled == ["shipping"]
    assert busy.hub.later == [] or all(t.cancelled for t in busy.hub.later)
    assert busy._awaiting_slots == {}


@pytest.mark.usefixtures("polls")
def test_a_wait_no_ack_ends_polls_when_its_timer_fires() -> None:
    liveness.received("shipping")
    busy = BusyChannel(held=30)
    busy._schedule_queue("shipping")
    assert busy.polled == []
    liveness._last["shipping"] = time.monotonic() - MAX_FILL_WAIT_S - 0.1  # time passes
    busy.hub.run_due(up_to=MAX_FILL_WAIT_S)
    assert busy.polled == ["shipping"]


@pytest.mark.usefixtures("polls")
def test_fifo_queues_and_a_long_wait_poll_anyway() -> None:
    busy = BusyChannel(held=30)
    busy._schedule_queue("inventory.fifo")  # a group unlocks only by its receives
    assert busy.polled == ["inventory.fifo"]
    liveness._last["shipping"] = time.monotonic() - MAX_FILL_WAIT_S - 0.1
    busy._schedule_queue("shipping")  # a pool stuck on slow steps still receives
    assert busy.polled == ["inventory.fifo", "shipping"]
