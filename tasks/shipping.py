from __future__ import annotations

from pipeline.app import app
from pipeline.services import shipping
from tasks.base import OrderStep
from tasks.flow import follow


@app.task(base=OrderStep, bind=True, name="tasks.shipping.ship_order")
def ship_order(self: OrderStep, order_id: str) -> str:
    """Capture the payment, then create the shipment."""
    result = self.run_step(order_id, "ship",
                           lambda rt: shipping.ship(rt.store, rt.gateway, rt.carrier, order_id))
    follow(self, order_id, result)
    return order_id
