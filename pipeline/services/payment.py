"""Payment: authorize at checkout, capture at shipment, void or refund to undo."""

from __future__ import annotations

from decimal import Decimal

from pipeline.domain import OrderStatus, reached
from pipeline.services.breaker import GuardedGateway
from pipeline.services.outcome import StepResult
from pipeline.store import Store


def authorize(store: Store, gateway: GuardedGateway, order_id: str) -> StepResult:
    record = store.order(order_id)
    status = OrderStatus(record["status"])
    if status is not OrderStatus.VALIDATED:
        if reached(status, OrderStatus.PAYMENT_AUTHORIZED):
            return StepResult.go("already authorized", repeated=True)
        return StepResult.stop(None, repeated=True, detail=f"order is {status}")
    amount = Decimal(record["total_amount"])
    key = f"{order_id}:authorize"
    # May raise GatewayUnavailable: retried with the same key, so a lost
    # response never becomes a second authorization.
    result = gateway.authorize(key, record["document"]["payment"]["token"], amount,
                               record["currency"])
    with store.engine.begin() as conn:
        if result["approved"]:
            store.record_payment(conn, order_id=order_id, kind="authorize", amount=amount,
                                 currency=record["currency"], gateway_ref=result["reference"],
                                 key=key)
            store.transition(order_id, OrderStatus.PAYMENT_AUTHORIZED,
                             expected=[OrderStatus.VALIDATED], conn=conn)
            return StepResult.go(f"authorized {amount} {record['currency']}")
        store.record_payment(conn, order_id=order_id, kind="decline", amount=amount,
                             currency=record["currency"], gateway_ref=result["reference"],
                             key=key)
        reason = f"payment declined: {result['reason']}"
        store.transition(order_id, OrderStatus.COMPENSATING, expected=[OrderStatus.VALIDATED],
                         outcome=OrderStatus.PAYMENT_DECLINED, reasons=[reason], conn=conn)
    return StepResult.stop(OrderStatus.PAYMENT_DECLINED, (reason,))


def capture(store: Store, gateway: GuardedGateway, order_id: str) -> str:
    """Capture the authorized amount once; returns the capture reference."""
    entries = {e["kind"]: e for e in store.payment_entries(order_id)}
    if "capture" in entries:
        return str(entries["capture"]["gateway_ref"])
    auth = entries.get("authorize")
    if auth is None:
        raise RuntimeError(f"order {order_id} has no authorization to capture")
    key = f"{order_id}:capture"
    result = gateway.capture(key, auth["gateway_ref"], Decimal(auth["amount"]))
    with store.engine.begin() as conn:
        store.record_payment(conn, order_id=order_id, kind="capture", amount=auth["amount"],
                             currency=auth["currency"], gateway_ref=result["reference"], key=key)
    return str(result["reference"])


def reverse(store: Store, gateway: GuardedGateway, order_id: str) -> StepResult:
    """Compensation: refund a capture, or void an authorization; once."""
    entries = {e["kind"]: e for e in store.payment_entries(order_id)}
    if "refund" in entries or "void" in entries:
        return StepResult.go("already reversed", repeated=True)
    if "capture" in entries:
        cap = entries["capture"]
        key = f"{order_id}:refund"
        result = gateway.refund(key, cap["gateway_ref"], Decimal(cap["amount"]))
        kind, amount, currency = "refund", cap["amount"], cap["currency"]
    elif "authorize" in entries:
        auth = entries["authorize"]
        key = f"{order_id}:void"
        result = gateway.void(key, auth["gateway_ref"])
        kind, amount, currency = "void", auth["amount"], auth["currency"]
    else:
        return StepResult.go("nothing to reverse")
    with store.engine.begin() as conn:
        store.record_payment(conn, order_id=order_id, kind=kind, amount=amount,
                             currency=currency, gateway_ref=result["reference"], key=key)
    return StepResult.go(f"{kind} {amount} {currency}")
