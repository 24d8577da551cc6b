"""Circuit-breaker decisions: when it opens, refuses, probes and closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.breaker_state import (
    BreakerConfig,
    BreakerRow,
    BreakerState,
    after_call,
    before_call,
)

CONFIG = BreakerConfig(failure_threshold=3, open_s=10)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    row = BreakerRow()
    for _ in range(2):
        row = after_call(row, False, T0, CONFIG)
        assert row.state is BreakerState.CLOSED
    row = after_call(row, False, T0, CONFIG)
    assert row.state is BreakerState.OPEN and row.changed_at == T0


def test_a_success_resets_the_count() -> None:
    row = after_call(after_call(BreakerRow(), False, T0, CONFIG), False, T0, CONFIG)
    row = after_call(row, True, T0, CONFIG)
    assert row == BreakerRow()
    assert after_call(row, False, T0, CONFIG).state is BreakerState.CLOSED


def test_open_refuses_with_the_time_left_then_lets_one_probe_through() -> None:
    opened = BreakerRow(BreakerState.OPEN, 3, T0)
    refused = before_call(opened, T0 + timedelta(seconds=4), CONFIG)
    assert not refused.allowed and refused.retry_after_s == 6
    probe = before_call(opened, T0 + timedelta(seconds=10), CONFIG)
    assert probe.allowed and probe.becomes is not None
    assert probe.becomes.state is BreakerState.HALF_OPEN
    # while the probe runs, others are refused
    assert not before_call(probe.becomes, T0 + timedelta(seconds=11), CONFIG).allowed


def test_the_probe_decides_closed_or_open_again() -> None:
    half = BreakerRow(BreakerState.HALF_OPEN, 3, T0)
    assert after_call(half, True, T0, CONFIG).state is BreakerState.CLOSED
    again = after_call(half, False, T0 + timedelta(seconds=1), CONFIG)
    assert again.state is BreakerState.OPEN and again.changed_at == T0 + timedelta(seconds=1)


def test_a_silent_probe_is_replaced_after_the_open_period() -> None:
    half = BreakerRow(BreakerState.HALF_OPEN, 3, T0)
    assert before_call(half, T0 + timedelta(seconds=10), CONFIG).allowed


@given(st.lists(st.booleans(), max_size=40))
def test_closed_calls_always_pass_and_open_only_after_threshold_failures_in_a_row(
        outcomes: list[bool]) -> None:
    row = BreakerRow()
    streak = 0
    for ok in outcomes:
        if row.state is BreakerState.CLOSED:
            assert before_call(row, T0, CONFIG).allowed
        row = after_call(row, ok, T0, CONFIG)
        streak = 0 if ok else streak + 1
        if ok:
            assert row.state is BreakerState.CLOSED
        elif streak >= CONFIG.failure_threshold:
            assert row.state is BreakerState.OPEN
