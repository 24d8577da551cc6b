"""Notification: tell the customer how the order ended, then end it.

The notification and the terminal status are written in one transaction, so
a terminal order has always been notified, and a redelivered notify step
finds the outbox row (unique per order, template and channel) and sends
nothing twice. Channels: email and SMS when the contact has them; otherwise
the local channel. In this deployment every channel is the local sink: an
outbox row plus a log line.
"""

from __future__ import annotations

import logging

from pipeline.domain import OrderStatus
from pipeline.services.outcome import StepResult
from pipeline.store import Store

log = logging.getLogger("pipeline.notifications")

TEMPLATES: dict[OrderStatus, tuple[str, str]] = {
    OrderStatus.COMPLETED: ("order_shipped", "Your order {id} has shipped."),
    OrderStatus.REJECTED: ("order_rejected", "We could not accept order {id}: {reasons}."),
    OrderStatus.PAYMENT_DECLINED: ("payment_declined",
                                   "Payment for order {id} was declined: {reasons}."),
    OrderStatus.OUT_OF_STOCK: ("out_of_stock",
                               "Order {id} is cancelled, items are out of stock: {reasons}. "
                               "You have not been charged."),
    OrderStatus.SHIPPING_FAILED: ("shipping_failed",
                                  "We could not ship order {id}: {reasons}. "
                                  "Your payment has been refunded."),
    OrderStatus.CANCELLED: ("order_cancelled", "Order {id} was cancelled: {reasons}."),
    OrderStatus.FAILED: ("order_failed",
                         "Order {id} could not be completed: {reasons}. You have not been "
                         "charged."),
}


def channels(contact: dict[str, str]) -> list[tuple[str, str]]:
    found = [(name, contact[field]) for name, field in (("email", "email"), ("sms", "phone"))
             if contact.get(field)]
    return found or [("local", "outbox")]


def notify(store: Store, order_id: str) -> StepResult:
    record = store.order(order_id)
    status = OrderStatus(record["status"])
    if status.terminal:
        return StepResult.go(f"already {status}", repeated=True)
    if status is OrderStatus.SHIPPED:
        final = OrderStatus.COMPLETED
    elif status is OrderStatus.COMPENSATING and record["outcome"]:
        final = OrderStatus(record["outcome"])
    else:
        raise RuntimeError(f"order {order_id} is {status}: nothing to notify yet")
    template, text = TEMPLATES[final]
    body = text.format(id=order_id, reasons="; ".join(record["reasons"] or []) or "n/a")
    with store.engine.begin() as conn:
        for channel, recipient in channels(record["document"].get("contact", {})):
            if store.record_notification(conn, order_id=order_id, template=template,
                                         channel=channel, recipient=recipient, body=body):
                log.info("notify %s via %s to %s: %s", order_id, channel, recipient, body)
        store.transition(order_id, final, expected=[status], conn=conn)
    return StepResult.go(f"{template} sent; order {final}")
