"""Cancelling an order: the store decides, compensation undoes.

The one path for `pipeline cancel`, `pipeline.cancel_order()` and a revoked
order step (`celery control revoke`, Flower's revoke button): a
compare-and-set moves the order to COMPENSATING with outcome CANCELLED, and
the caller starts compensation. Steps still queued for the order then find
it COMPENSATING and stop, so cancelling needs no broadcast to be durable.
An order that has shipped cannot be cancelled.
"""

from __future__ import annotations

from enum import StrEnum

from pipeline.domain import OrderStatus, can_transition
from pipeline.store import Store

__all__ = ["Cancellation", "cancel"]


class Cancellation(StrEnum):
    CANCELLED = "cancelled"  # moved to COMPENSATING; the caller starts compensation
    ALREADY_ENDING = "already_ending"  # compensating or terminal already: nothing to do
    TOO_LATE = "too_late"  # shipped: a cancellation cannot undo a shipment


def cancel(store: Store, order_id: str, reason: str) -> Cancellation:
    """Raises OrderNotFound for an unknown order."""
    while True:  # ends: a lost compare-and-set means the order moved forward meanwhile
        status = store.status(order_id)
        if status.terminal or status is OrderStatus.COMPENSATING:
            return Cancellation.ALREADY_ENDING
        if not can_transition(status, OrderStatus.COMPENSATING):
            return Cancellation.TOO_LATE
        if store.transition(order_id, OrderStatus.COMPENSATING, expected=[status],
                            outcome=OrderStatus.CANCELLED, reasons=[reason]):
            return Cancellation.CANCELLED
