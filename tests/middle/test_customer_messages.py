"""What the customer is told: their own order's reasons, never the house's.

A failed order's reason names an exception and a task; a cancellation's is an
operator's note or a revoked task's id. Both stay on the order for operators;
the customer gets plain words and what the ledger shows of their money."""

from __future__ import annotations

from pipeline.domain import OrderStatus
from pipeline.ops.audit import order_violations
from pipeline.services.cancellation import Cancellation, cancel
from tests.middle.conftest import DOWN, Harness

S = OrderStatus


def told(harness: Harness, order_id: str) -> str:
    (body,) = {n.body for n in harness.store.notifications(order_id)}
    return body


def test_a_failed_order_keeps_its_fault_for_operators_and_tells_the_customer_plainly(
        harness: Harness) -> None:
    order_id = harness.submit()
    harness.run_until(order_id, S.RESERVED)
    harness.outages["carrier"] = DOWN  # the shipping step gives up
    harness.run_until(order_id, S.COMPENSATING)
    harness.outages.clear()
    harness.drain()
    assert harness.store.status(order_id) is S.FAILED
    (reason,) = harness.store.order(order_id).reasons
    assert reason.startswith("ship failed: gave up after"), reason
    body = told(harness, order_id)
    assert body == (f"Order {order_id} could not be completed because of a problem on our "
                    "side. We are sorry. Your payment of 5.00 USD has been refunded.")
    assert order_violations(harness.store, [order_id]) == {}


def test_an_operators_cancellation_note_is_not_sent_to_the_customer(harness: Harness) -> None:
    order_id = harness.submit()
    harness.run_until(order_id, S.RESERVING)
    note = "suspected fraud, see ticket OPS-42"
    assert cancel(harness.store, order_id, note) is Cancellation.CANCELLED
    harness.drain()
    assert harness.store.status(order_id) is S.CANCELLED
    assert harness.store.order(order_id).reasons == (note,)
    assert told(harness, order_id) == (f"Order {order_id} was cancelled. The hold on your "
                                       "card was released: you have not been charged.")


def test_reasons_about_the_customers_own_order_are_quoted_to_them(harness: Harness) -> None:
    declined = harness.submit(token="tok_decline")
    undeliverable = harness.submit(postal_code="00000")
    harness.drain()
    assert harness.store.status(declined) is S.PAYMENT_DECLINED
    assert "card declined (tok_decline)" in told(harness, declined)
    assert harness.store.status(undeliverable) is S.SHIPPING_FAILED
    assert "address undeliverable (postal code 00000)" in told(harness, undeliverable)
