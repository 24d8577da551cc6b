"""Admission control (pipeline.worker.intake): when the gate holds new orders back, and that
the intake queue's consumer then does not poll it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.topology import QUEUES, TASK_QUEUE, Task
from pipeline.domain import IN_PROGRESS, TERMINAL, OrderStatus
from pipeline.sqs import liveness
from pipeline.sqs.transport import Channel
from pipeline.worker.intake import RESUME_AT, IntakeGate, held_after


@pytest.mark.parametrize(("held", "in_progress", "limit", "expected"), [
    (False, 99, 100, False),
    (False, 100, 100, True),  # reaching the limit holds
    (True, 81, 100, True),  # held until 80 % is left
    (True, 80, 100, False),
    (False, 10_000, 0, False),  # 0: no limit
    (True, 10_000, 0, False),
    (False, 1, 1, True),
    (True, 0, 1, False),
])
def test_held_after(held: bool, in_progress: int, limit: int, expected: bool) -> None:
    assert held_after(held, in_progress, limit) is expected


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 200))
def test_the_gate_holds_exactly_between_its_thresholds(counts: list[int], limit: int) -> None:
    held = False
    for n in counts:
        before = held
        held = held_after(held, n, limit)
        if n >= limit:
            assert held
        elif n <= int(limit * RESUME_AT):
            assert not held
        else:  # between the thresholds the gate keeps its state: it does not flap
            assert held is before


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_gate_counts_at_most_once_per_recheck() -> None:
    clock, counted = Clock(), []

    def count() -> int:
        counted.append(clock.t)
        return 5

    gate = IntakeGate(5, count, recheck_s=0.5, clock=clock)
    assert not gate.admits()
    clock.t = 0.4
    assert not gate.admits()
    clock.t = 0.5
    assert not gate.admits()
    assert counted == [0.0, 0.5]


def test_a_store_that_cannot_be_read_opens_the_gate() -> None:
    clock = Clock()
    answers: list[Any] = [10, RuntimeError("database is down")]

    def count() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return int(answer)

    gate = IntakeGate(10, count, recheck_s=1, clock=clock)
    assert not gate.admits()
    clock.t = 1
    assert gate.admits()
    assert not gate.held


def test_in_progress_leaves_out_waiting_parked_and_ended_orders() -> None:
    assert OrderStatus.RECEIVED not in IN_PROGRESS
    assert OrderStatus.NEEDS_ATTENTION not in IN_PROGRESS
    assert not IN_PROGRESS & TERMINAL
    assert {OrderStatus.VALIDATED, OrderStatus.SHIPPED, OrderStatus.COMPENSATING} <= IN_PROGRESS


def test_only_validation_sits_behind_the_gate() -> None:
    """The reconciler re-drives orders in progress: behind the gate it could wait on
    the orders it should rescue."""
    gated = {spec.name for spec in QUEUES if spec.intake}
    assert gated == {TASK_QUEUE[Task.VALIDATE]}
    assert TASK_QUEUE[Task.RECONCILE] not in gated
    assert all(TASK_QUEUE[task] not in gated for task in (
        Task.AUTHORIZE, Task.APPLY_LINE, Task.SHIP, Task.NOTIFY, Task.CANCEL_SHIPMENT,
        Task.REVERSE_PAYMENT))


class Hub:
    def __init__(self) -> None:
        self.later: list[tuple[float, Any, tuple[Any, ...]]] = []

    def call_later(self, delay: float, fn: Any, *args: Any) -> None:
        self.later.append((delay, fn, args))


class HeldChannel(Channel):
    """Only what _schedule_queue touches: no connection, no SQS."""

    def __init__(self, gate: IntakeGate) -> None:  # kombu's set-up skipped
        self.hub = Hub()
        self._active_queues = ["orders"]
        self._qos = SimpleNamespace(_delivered={}, _dirty=set(), prefetch_count=32)
        self.gate = gate
        self.polled: list[str] = []


def test_a_held_intake_queue_is_not_polled_and_looks_alive(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from kombu.transport import SQS

    in_progress = [10]
    gate = IntakeGate(10, lambda: in_progress[0], recheck_s=0.0)
    monkeypatch.setattr("pipeline.worker.intake.gate_for",
                        lambda queue: gate if queue == "orders" else None)
    monkeypatch.setattr(SQS.Channel, "_schedule_queue",
                        lambda self, queue: self.polled.append(queue))
    channel = HeldChannel(gate)
    liveness._last.pop("orders", None)
    channel._schedule_queue("orders")
    assert channel.polled == []
    assert [(d, args) for d, _, args in channel.hub.later] == [(0.0, ("orders",))]
    assert "orders" in liveness._last  # the watchdog sees a consumer holding, not a stall
    in_progress[0] = 8
    channel._schedule_queue("orders")
    channel._schedule_queue("notifications")
    assert channel.polled == ["orders", "notifications"]
