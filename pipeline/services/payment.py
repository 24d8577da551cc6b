"""Payment: authorize (and send the lines for reservation), capture at shipment,
void or refund to undo.

The ledger (`payments`) mirrors the gateway's own books: every effect the
gateway had is recorded, even one that arrives after the order moved on, and
the compensation asks the gateway what a request with a lost response did
(`find` by idempotency key) before deciding what to void or refund.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pipeline.domain import WINDING_DOWN, OrderStatus, StockOp, StockUpdate, reached
from pipeline.errors import PermanentError
from pipeline.keys import payment_key
from pipeline.services.breaker import GuardedGateway
from pipeline.services.outcome import Record, StepResult, unrecorded
from pipeline.store import PaymentRow, Store
from pipeline.store.clock import now

__all__ = ["Authorized", "authorize", "capture", "reverse"]

S = OrderStatus


@dataclass(frozen=True)
class Authorized:
    """The payment step's result and the reservation messages it must publish
    (already noted in the store, in the same transaction as the status change)."""

    result: StepResult
    updates: tuple[StockUpdate, ...] = ()
    vip: bool = False


def authorize(store: Store, gateway: GuardedGateway, order_id: str,
              record: Record = unrecorded) -> Authorized:
    """Claim the order (AUTHORIZING) and read its lines, ask the gateway, then in one
    transaction record the answer and either send every line for reservation
    (RESERVING) or compensate."""
    claimed = store.claim_with_lines(order_id, S.AUTHORIZING, expected=S.VALIDATED)
    if claimed is not None:
        row, lines = claimed.order, claimed.lines
    else:  # not VALIDATED: a redelivery carries on (AUTHORIZING); anything else is over
        row = store.order(order_id)
        status = row.status
        if status is S.VALIDATED:
            return authorize(store, gateway, order_id, record)  # moved meanwhile: look again
        if status is not S.AUTHORIZING:
            if reached(status, S.RESERVING):
                return Authorized(StepResult.go("already authorized", repeated=True))
            return Authorized(StepResult.stop(None, repeated=True, detail=f"order is {status}"))
        lines = store.lines(order_id)
    amount = row.total_amount
    currency = row.currency
    key = payment_key(order_id, "authorize")
    # May raise GatewayUnavailable: retried with the same key, so a lost
    # response never becomes a second authorization.
    result = gateway.authorize(key, row.document["payment"]["token"], amount, currency)
    with store.engine.begin() as conn:
        kind = "authorize" if result["approved"] else "decline"
        store.record_payment(conn, order_id=order_id, kind=kind, amount=amount,
                             currency=currency, gateway_ref=result["reference"], key=key)
        if not result["approved"]:
            reason = f"payment declined: {result['reason']}"
            store.transition(order_id, S.COMPENSATING, expected=[S.AUTHORIZING],
                             outcome=S.PAYMENT_DECLINED, reasons=[reason], conn=conn)
            return Authorized(record(conn, StepResult.stop(S.PAYMENT_DECLINED, (reason,))))
        updates = tuple(StockUpdate(order_id, line.sku, line.quantity, StockOp.RESERVE)
                        for line in lines)
        if store.transition(order_id, S.RESERVING, expected=[S.AUTHORIZING], conn=conn,
                            unless_cancel_requested=True):
            store.record_published(updates, conn)
            sent = StepResult.go(f"authorized {amount} {currency}; {len(updates)} line(s) "
                                 "sent for reservation", next_sent=True)
            return Authorized(record(conn, sent), updates, vip=row.vip)
        cancel = store.cancel_requested(conn, order_id)
        if cancel is not None and store.transition(
                order_id, S.COMPENSATING, expected=[S.AUTHORIZING], outcome=S.CANCELLED,
                reasons=[cancel], conn=conn):
            return Authorized(record(conn, StepResult.stop(S.CANCELLED, (cancel,))))
        return Authorized(record(conn, StepResult.stop(None, repeated=True,
                                                       detail="order moved on meanwhile")))


def capture(store: Store, gateway: GuardedGateway, order_id: str,
            ledger: list[PaymentRow] | None = None) -> str:
    """Capture the authorized amount once; returns the capture reference. `ledger`:
    the order's payment entries, when the caller has just read them."""
    entries = {e.kind: e for e in (store.payment_entries(order_id) if ledger is None
                                   else ledger)}
    if "capture" in entries:
        return entries["capture"].reference
    auth = entries.get("authorize")
    if auth is None:
        raise PermanentError(f"order {order_id} has no authorization to capture")
    key = payment_key(order_id, "capture")
    result = gateway.capture(key, auth.reference, auth.amount)
    with store.engine.begin() as conn:
        store.record_payment(conn, order_id=order_id, kind="capture", amount=auth.amount,
                             currency=auth.currency, gateway_ref=result["reference"], key=key)
    return str(result["reference"])


def _learn_lost_effects(store: Store, gateway: GuardedGateway, order_id: str,
                        entries: dict[str, PaymentRow], currency: str) -> None:
    """Record what the gateway did for requests whose response never came back.

    The lookups run outside any transaction: a remote call never holds the
    store's write lock."""
    found: dict[str, dict[str, Any]] = {}
    for kind in ("authorize", "capture"):
        if kind in entries or (kind == "authorize" and "decline" in entries):
            continue
        effect = gateway.find(payment_key(order_id, kind))
        if effect is not None and effect.get("approved"):
            found[kind] = effect
    if not found:
        return
    with store.engine.begin() as conn:
        for kind, effect in found.items():
            amount = Decimal(effect["amount"])
            store.record_payment(conn, order_id=order_id, kind=kind, amount=amount,
                                 currency=currency, gateway_ref=effect["reference"],
                                 key=payment_key(order_id, kind))
            entries[kind] = PaymentRow(kind, amount, currency, effect["reference"], now())


def reverse(store: Store, gateway: GuardedGateway, order_id: str,
            record: Record = unrecorded) -> StepResult:
    """Compensation: refund a capture in full, or void an authorization; once."""
    row = store.order_resumed(order_id)
    if row.status not in WINDING_DOWN:
        return StepResult.stop(None, repeated=True, detail=f"order is {row.status}")
    entries = {e.kind: e for e in store.payment_entries(order_id)}
    _learn_lost_effects(store, gateway, order_id, entries, row.currency)
    if "capture" in entries and "refund" not in entries:
        cap = entries["capture"]
        key = payment_key(order_id, "refund")
        result = gateway.refund(key, cap.reference, cap.amount)
        kind, amount, currency = "refund", cap.amount, cap.currency
    elif "authorize" in entries and not {"void", "capture"} & entries.keys():
        auth = entries["authorize"]
        key = payment_key(order_id, "void")
        result = gateway.void(key, auth.reference)
        kind, amount, currency = "void", auth.amount, auth.currency
    else:
        settled = "refund" in entries or "void" in entries
        return StepResult.go("already reversed" if settled else "nothing to reverse",
                             repeated=settled)
    with store.engine.begin() as conn:
        store.record_payment(conn, order_id=order_id, kind=kind, amount=amount,
                             currency=currency, gateway_ref=result["reference"], key=key)
        return record(conn, StepResult.go(f"{kind} {amount} {currency}"))
