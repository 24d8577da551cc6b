"""Notification: tell the customer how the order ended, then end it.

The notification and the terminal status are written in one transaction, so
a terminal order has always been notified. A compensated order is told only
once every undo is done and the ledger shows its money settled, and what it
is told about its money comes from the ledger. A redelivered notify step
finds the outbox row (unique per order, template and channel) and sends
nothing twice. Channels: email and SMS when the contact has them; otherwise
the local channel. In this deployment every channel is the local sink: a
notifications row plus a log line without the recipient or the text.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from pipeline.domain import OrderStatus
from pipeline.services.outcome import Record, StepResult, unrecorded
from pipeline.store import OrderRow, PaymentRow, Store
from pipeline.workflow import money_settled, next_undo

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger("pipeline.notifications")

# Reasons about the customer's own order (its document, card, stock, address) are
# quoted to them. A failed order's reason is an internal fault (an exception, a
# task name) and a cancellation's is an operator's note or a revoked task id: those
# stay on the order for operators, and the customer gets plain words.
TEMPLATES: dict[OrderStatus, tuple[str, str]] = {
    OrderStatus.COMPLETED: ("order_shipped", "Your order {id} has shipped."),
    OrderStatus.REJECTED: ("order_rejected", "We could not accept order {id}: {reasons}."),
    OrderStatus.PAYMENT_DECLINED: ("payment_declined",
                                   "Payment for order {id} was declined: {reasons}."),
    OrderStatus.OUT_OF_STOCK: ("out_of_stock",
                               "Order {id} is cancelled, items are out of stock: {reasons}."),
    OrderStatus.SHIPPING_FAILED: ("shipping_failed", "We could not ship order {id}: {reasons}."),
    OrderStatus.CANCELLED: ("order_cancelled", "Order {id} was cancelled."),
    OrderStatus.FAILED: ("order_failed", "Order {id} could not be completed because of a "
                                         "problem on our side. We are sorry."),
}


def channels(contact: dict[str, str]) -> list[tuple[str, str]]:
    found = [(name, contact[field]) for name, field in (("email", "email"), ("sms", "phone"))
             if contact.get(field)]
    return found or [("local", "outbox")]


def money_sentence(final: OrderStatus, payments: list[PaymentRow]) -> str:
    """What the ledger says happened to the customer's money, and nothing else."""
    def total(kind: str) -> Decimal:
        return sum((p.amount for p in payments if p.kind == kind), Decimal(0))

    currency = payments[0].currency if payments else ""
    if final is OrderStatus.COMPLETED:
        return f"{total('capture'):.2f} {currency} was charged."
    if total("refund"):
        return f"Your payment of {total('refund'):.2f} {currency} has been refunded."
    if any(p.kind == "void" for p in payments):
        return "The hold on your card was released: you have not been charged."
    return "You have not been charged."


def notify(store: Store, order_id: str, record: Record = unrecorded) -> StepResult:
    """End the order and tell the customer, once the ledger shows its money settled."""
    with store.engine.begin() as conn:  # the common case first: shipped, so it completes
        row = store.claim(conn, order_id, OrderStatus.COMPLETED, expected=OrderStatus.SHIPPED)
        if row is not None:
            payments = store.payment_entries(order_id, conn=conn)
            return _tell(store, conn, row, payments, record)
    state = store.order_state(order_id)
    if state.status is OrderStatus.NEEDS_ATTENTION and store.resume_compensation(order_id):
        state = store.order_state(order_id)
    status = state.status
    if status.terminal:
        return StepResult.go(f"already {status}", repeated=True)
    if status is OrderStatus.SHIPPED:
        final = OrderStatus.COMPLETED
    elif status is OrderStatus.COMPENSATING and state.outcome is not None:
        pending = next_undo(state)
        if pending is not None:
            return StepResult.stop(None, repeated=True,
                                   detail=f"compensation not finished: {pending} pending")
        final = state.outcome
    else:
        return StepResult.stop(None, repeated=True, detail=f"order is {status}: nothing to tell")
    with store.engine.begin() as conn:
        payments = store.payment_entries(order_id, conn=conn)
        ledger = tuple((p.kind, str(p.amount)) for p in payments)
        if final is not OrderStatus.COMPLETED and not money_settled(ledger):
            # Never tell a customer something the ledger does not show.
            return StepResult.stop(None, repeated=True, detail="money not settled yet")
        # The status first: if another delivery moved the order meanwhile, nothing
        # is sent and this transaction writes nothing.
        row = store.claim(conn, order_id, final, expected=status)
        if row is None:
            return StepResult.stop(None, repeated=True, detail="order moved on meanwhile")
        return _tell(store, conn, row, payments, record)


def _tell(store: Store, conn: Connection, row: OrderRow, payments: list[PaymentRow],
          record: Record) -> StepResult:
    """Write the notification of an order that has just ended (`row`, as ended), in
    the transaction that ended it."""
    final = row.status
    template, text = TEMPLATES[final]
    body = " ".join((text.format(id=row.id, reasons="; ".join(row.reasons) or "n/a"),
                     money_sentence(final, payments)))
    for channel, recipient in channels(row.document.get("contact", {})):
        if store.record_notification(conn, order_id=row.id, template=template,
                                     channel=channel, recipient=recipient, body=body):
            log.info("notified order %s via %s (%s)", row.id, channel, template)
    return record(conn, StepResult.go(f"{template} sent; order {final}", next_sent=True))
