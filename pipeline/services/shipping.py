"""Shipping: capture the payment, then create the shipment.

Capture comes first so that a shipment never leaves unpaid; a carrier that
refuses for good sends the order to compensation, which refunds the capture.
"""

from __future__ import annotations

from pipeline.domain import OrderStatus, reached
from pipeline.services import payment
from pipeline.services.breaker import GuardedGateway
from pipeline.services.outcome import StepResult
from pipeline.services.simulators import SimulatedCarrier
from pipeline.store import Store


def ship(store: Store, gateway: GuardedGateway, carrier: SimulatedCarrier,
         order_id: str) -> StepResult:
    record = store.order(order_id)
    status = OrderStatus(record["status"])
    if status is not OrderStatus.RESERVED:
        if reached(status, OrderStatus.SHIPPED):
            return StepResult.go("already shipped", repeated=True)
        return StepResult.stop(None, repeated=True, detail=f"order is {status}")
    capture_ref = payment.capture(store, gateway, order_id)
    lines = store.lines(order_id)
    result = carrier.create_shipment(f"{order_id}:shipment",
                                     record["document"]["shippingAddress"], len(lines))
    with store.engine.begin() as conn:
        if not result["accepted"]:
            reason = f"shipment refused: {result['reason']}"
            store.transition(order_id, OrderStatus.COMPENSATING, expected=[OrderStatus.RESERVED],
                             outcome=OrderStatus.SHIPPING_FAILED, reasons=[reason], conn=conn)
            return StepResult.stop(OrderStatus.SHIPPING_FAILED, (reason,))
        # The status change goes first: if another worker moved the order on
        # (a hold expiry, say), nothing below may be written.
        if not store.transition(order_id, OrderStatus.SHIPPED, expected=[OrderStatus.RESERVED],
                                conn=conn):
            return StepResult.stop(None, repeated=True, detail="order moved on meanwhile")
        store.record_shipment(conn, order_id, "simulated", result["reference"])
        store.ship_lines(conn, order_id)
    return StepResult.go(f"captured {capture_ref}, tracking {result['reference']}")
