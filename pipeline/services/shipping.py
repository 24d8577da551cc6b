"""Shipping: claim the order, capture the payment, then create the shipment.

The claim (RESERVED -> SHIPPING, one compare-and-set) comes before any
external effect, so a cancellation or a hold expiry can no longer end the
order while its money is being captured or its parcel booked: from SHIPPING
only this step moves the order on. Capture comes first, so a shipment never
leaves unpaid; both calls carry idempotency keys derived from the order, so a
lost response retried gives the same capture and the same tracking number.
A carrier that refuses for good sends the order to compensation, which
refunds the capture; a shipment made by a call whose response was lost is
voided by the compensation (cancel_shipment) if the step gives up.
"""

from __future__ import annotations

from pipeline.domain import WINDING_DOWN, OrderStatus, reached
from pipeline.keys import shipment_cancel_key, shipment_key
from pipeline.services import payment
from pipeline.services.breaker import GuardedGateway
from pipeline.services.outcome import Record, StepResult, unrecorded
from pipeline.services.simulators import SimulatedCarrier
from pipeline.store import Store

__all__ = ["cancel_shipment", "ship"]

S = OrderStatus


def ship(store: Store, gateway: GuardedGateway, carrier: SimulatedCarrier,
         order_id: str, record: Record = unrecorded) -> StepResult:
    claimed = store.claim_with_lines(order_id, S.SHIPPING, expected=S.RESERVED, payments=True)
    if claimed is not None:
        row, lines, ledger = claimed.order, claimed.lines, claimed.payments
    else:  # not RESERVED: a redelivery carries on (SHIPPING); anything else is over
        row = store.order(order_id)
        status = row.status
        if status is S.RESERVED:
            return ship(store, gateway, carrier, order_id, record)  # moved meanwhile
        if status is not S.SHIPPING:
            if reached(status, S.SHIPPED):
                return StepResult.go("already shipped", repeated=True)
            return StepResult.stop(None, repeated=True, detail=f"order is {status}")
        lines, ledger = store.lines(order_id), store.payment_entries(order_id)
    capture_ref = payment.capture(store, gateway, order_id, ledger)
    result = carrier.create_shipment(shipment_key(order_id),
                                     row.document["shippingAddress"], len(lines))
    with store.engine.begin() as conn:
        if not result["accepted"]:
            reason = f"shipment refused: {result['reason']}"
            store.transition(order_id, S.COMPENSATING, expected=[S.SHIPPING],
                             outcome=S.SHIPPING_FAILED, reasons=[reason], conn=conn)
            return record(conn, StepResult.stop(S.SHIPPING_FAILED, (reason,)))
        store.record_shipment(conn, order_id, "simulated", result["reference"])
        store.ship_lines(conn, order_id)
        store.transition(order_id, S.SHIPPED, expected=[S.SHIPPING], conn=conn)
        return record(conn, StepResult.go(f"captured {capture_ref}, "
                                          f"tracking {result['reference']}"))


def cancel_shipment(store: Store, carrier: SimulatedCarrier, order_id: str,
                    record: Record = unrecorded) -> StepResult:
    """Compensation: void the carrier's shipment of this order, if it made one."""
    status = store.order_resumed(order_id).status
    if status not in WINDING_DOWN:
        return StepResult.stop(None, repeated=True, detail=f"order is {status}")
    found = carrier.find(shipment_key(order_id))
    if found is None or not found.get("accepted"):
        return StepResult.go("the carrier has no shipment of this order")
    carrier.cancel_shipment(shipment_cancel_key(order_id), str(found["reference"]))
    with store.engine.begin() as conn:
        store.cancel_shipment(conn, order_id)
        return record(conn, StepResult.go(f"shipment {found['reference']} voided at the carrier"))
