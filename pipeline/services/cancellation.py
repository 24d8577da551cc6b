"""Cancelling an order: the store decides, compensation undoes.

The one path for `pipeline cancel`, `pipeline.cancel_order()` and a revoked
order step (`celery control revoke`, Flower's revoke button): a
compare-and-set moves the order to COMPENSATING with outcome CANCELLED, and
the caller starts compensation. Steps still queued for the order then find
it COMPENSATING and stop, so cancelling needs no broadcast to be durable.
While the payment step owns the order (AUTHORIZING) the cancellation is
recorded and that step honours it when the gateway answers (voiding what it
authorized). Once the shipping step has claimed the order (SHIPPING) it is
too late.
"""

from __future__ import annotations

from enum import StrEnum

from pipeline.domain import CANCELLABLE, WINDING_DOWN, OrderStatus
from pipeline.store import Store

__all__ = ["Cancellation", "cancel"]


class Cancellation(StrEnum):
    CANCELLED = "cancelled"  # moved to COMPENSATING; the caller starts compensation
    REQUESTED = "requested"  # the payment step owns the order and will honour it
    ALREADY_ENDING = "already_ending"  # compensating or terminal already: nothing to do
    TOO_LATE = "too_late"  # being shipped or shipped: a cancellation cannot undo a shipment


def cancel(store: Store, order_id: str, reason: str) -> Cancellation:
    """Raises OrderNotFound for an unknown order."""
    while True:  # ends: a lost compare-and-set means the order moved forward meanwhile
        status = store.status(order_id)
        if status.terminal or status in WINDING_DOWN:
            return Cancellation.ALREADY_ENDING
        if status in CANCELLABLE:
            if store.transition(order_id, OrderStatus.COMPENSATING, expected=[status],
                                outcome=OrderStatus.CANCELLED, reasons=[reason]):
                return Cancellation.CANCELLED
        elif status is OrderStatus.AUTHORIZING:
            if store.request_cancel(order_id, reason, while_in=status):
                return Cancellation.REQUESTED
            if store.order(order_id).cancel_requested and store.status(
                    order_id) is OrderStatus.AUTHORIZING:
                return Cancellation.REQUESTED  # asked before: still waiting for the step
        else:
            return Cancellation.TOO_LATE
