"""Cancellation decides in the store: before shipment it wins, after it cannot."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pipeline.demo import sample_order
from pipeline.domain import OrderStatus, parse_order
from pipeline.services.cancellation import Cancellation, cancel
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration
S = OrderStatus
PATH = [S.RECEIVED, S.VALIDATED, S.PAYMENT_AUTHORIZED, S.RESERVING, S.RESERVED, S.SHIPPED]


def order_at(pipeline: Pipeline, status: OrderStatus, n: int) -> str:
    store = pipeline.rt.store
    order = parse_order(sample_order("single", 900 + n))
    store.create_order(order)
    for old, new in pairwise(PATH[:PATH.index(status) + 1]):
        assert store.transition(order.order_id, new, expected=[old])
    return order.order_id


@pytest.mark.parametrize("status", PATH[:-1])
def test_an_order_before_shipment_is_cancelled_once(pipeline: Pipeline,
                                                     status: OrderStatus) -> None:
    store = pipeline.rt.store
    order_id = order_at(pipeline, status, PATH.index(status))
    assert cancel(store, order_id, "asked") is Cancellation.CANCELLED
    record = store.order(order_id)
    assert (record["status"], record["outcome"], record["reasons"]) == (
        "COMPENSATING", "CANCELLED", ["asked"])
    assert cancel(store, order_id, "again") is Cancellation.ALREADY_ENDING
    assert store.order(order_id)["reasons"] == ["asked"]
    store.transition(order_id, S.CANCELLED, expected=[S.COMPENSATING])  # let the audit see it end


def test_a_shipped_order_cannot_be_cancelled(pipeline: Pipeline) -> None:
    store = pipeline.rt.store
    order_id = order_at(pipeline, S.SHIPPED, 10)
    assert cancel(store, order_id, "too late") is Cancellation.TOO_LATE
    assert store.status(order_id) is S.SHIPPED
    store.transition(order_id, S.COMPLETED, expected=[S.SHIPPED])
