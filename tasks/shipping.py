from __future__ import annotations

from typing import Any

from config.topology import Task
from pipeline.app import app
from tasks.base import OrderStep


@app.task(base=OrderStep, bind=True, name=Task.SHIP.value)
def ship_order(self: OrderStep, order_id: str) -> Any:
    """Claim the order, capture the payment, then create the shipment."""
    return self.execute((order_id,))


@app.task(base=OrderStep, bind=True, name=Task.CANCEL_SHIPMENT.value)
def cancel_shipment(self: OrderStep, order_id: str) -> Any:
    """Compensation: void a shipment the carrier made for an order that will not ship."""
    return self.execute((order_id,))
