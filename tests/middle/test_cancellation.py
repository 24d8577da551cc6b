"""Cancellation decides in the store: before the payment step claims the order it
wins at once; while that step owns the order it is recorded and honoured; once
the shipping step has claimed it, it is too late."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pipeline.dev.demo import sample_order
from pipeline.domain import CANCELLABLE, OrderStatus, parse_order
from pipeline.services.cancellation import Cancellation, cancel
from pipeline.store import Store

S = OrderStatus
PATH = [S.RECEIVED, S.VALIDATED, S.AUTHORIZING, S.RESERVING, S.RESERVED, S.SHIPPING,
        S.SHIPPED]


def order_at(store: Store, status: OrderStatus, n: int) -> str:
    order = parse_order(sample_order("single", 900 + n))
    store.create_order(order)
    for old, new in pairwise(PATH[:PATH.index(status) + 1]):
        assert store.transition(order.order_id, new, expected=[old])
    return order.order_id


@pytest.mark.parametrize("status", [s for s in PATH if s in CANCELLABLE])
def test_an_order_before_the_payment_claim_or_after_it_is_cancelled_once(
        store: Store, status: OrderStatus) -> None:
    order_id = order_at(store, status, PATH.index(status))
    assert cancel(store, order_id, "asked") is Cancellation.CANCELLED
    record = store.order(order_id)
    assert (record.status, record.outcome, record.reasons) == (
        S.COMPENSATING, S.CANCELLED, ("asked",))
    assert record.compensating_from is status
    assert cancel(store, order_id, "again") is Cancellation.ALREADY_ENDING
    assert store.order(order_id).reasons == ("asked",)
    store.transition(order_id, S.CANCELLED, expected=[S.COMPENSATING])  # let the audit see it end


def test_a_cancellation_while_authorizing_is_recorded_for_the_payment_step(
        store: Store) -> None:
    order_id = order_at(store, S.AUTHORIZING, 20)
    assert cancel(store, order_id, "changed my mind") is Cancellation.REQUESTED
    assert store.status(order_id) is S.AUTHORIZING  # the step owns it
    assert store.order(order_id).cancel_requested == "changed my mind"
    assert cancel(store, order_id, "again") is Cancellation.REQUESTED
    # The payment step's move on loses to the recorded request:
    assert not store.transition(order_id, S.RESERVING, expected=[S.AUTHORIZING],
                                unless_cancel_requested=True)
    store.transition(order_id, S.COMPENSATING, expected=[S.AUTHORIZING], outcome=S.CANCELLED)
    store.transition(order_id, S.CANCELLED, expected=[S.COMPENSATING])


@pytest.mark.parametrize("status", [S.SHIPPING, S.SHIPPED])
def test_an_order_claimed_for_shipping_cannot_be_cancelled(store: Store,
                                                           status: OrderStatus) -> None:
    order_id = order_at(store, status, 30 + PATH.index(status))
    assert cancel(store, order_id, "too late") is Cancellation.TOO_LATE
    assert store.status(order_id) is status
    for old, new in pairwise([*PATH[PATH.index(status):], S.COMPLETED]):
        store.transition(order_id, new, expected=[old])
