from __future__ import annotations

from typing import Any

from config.topology import Task
from pipeline.app import app
from tasks.base import OrderStep
from tasks.fifo import FifoStep


@app.task(base=FifoStep, bind=True, name=Task.APPLY_LINE.value)
def apply_line(self: FifoStep, order_id: str, sku: str, quantity: int, op: str) -> Any:
    """Reserve or release one order line, in the product's FIFO order; the last one fans in."""
    return self.execute((order_id, sku, quantity, op))


@app.task(base=FifoStep, bind=True, name=Task.RESTOCK.value)
def restock(self: FifoStep, restock_id: str, sku: str, quantity: int) -> Any:
    """Add delivered stock, behind every earlier update of the product."""
    return self.execute((restock_id, sku, quantity))


@app.task(base=OrderStep, bind=True, name=Task.RESERVE.value)
def reserve_inventory(self: OrderStep, order_id: str) -> Any:
    """Orders authorized by an earlier release: send their lines for reservation."""
    return self.execute((order_id,))


@app.task(base=OrderStep, bind=True, name=Task.RELEASE.value)
def release_inventory(self: OrderStep, order_id: str) -> Any:
    """Compensation hop of an earlier release: continues from the order's state."""
    return self.execute((order_id,))
