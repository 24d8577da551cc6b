"""An e-commerce order pipeline on Celery with Amazon SQS.

Public API::

    from pipeline import submit_order, get_order
    order_id = submit_order({...})   # the seeds' order document
    ids = submit_orders([{...}, ...])  # several: first messages in SendMessageBatch
    get_order(order_id)["status"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Order",
    "OrderStatus",
    "cancel_order",
    "get_order",
    "parse_order",
    "restock",
    "submit_order",
    "submit_orders",
]

if TYPE_CHECKING:
    from pipeline.api import cancel_order, get_order, restock, submit_order, submit_orders
    from pipeline.domain import Order, OrderStatus, parse_order


def __getattr__(name: str) -> Any:
    # Lazy, so `import pipeline` reads no settings and builds no client.
    if name in ("submit_order", "submit_orders", "get_order", "restock", "cancel_order"):
        from pipeline import api

        return getattr(api, name)
    if name in ("Order", "OrderStatus", "parse_order"):
        from pipeline import domain

        return getattr(domain, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
