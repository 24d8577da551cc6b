from __future__ import annotations

from pipeline.app import app
from pipeline.runtime import get_runtime
from pipeline.services import notification
from pipeline.services.inventory import claim
from tasks.base import OrderStep, RetryPolicy


class NotificationStep(OrderStep):
    retry = RetryPolicy(base_s=1.0, cap_s=10.0)


@app.task(base=NotificationStep, bind=True, name="tasks.notification.notify_customer")
def notify_customer(self: NotificationStep, order_id: str) -> str:
    """Tell the customer, and end the order in its terminal status."""
    self.run_step(order_id, "notify", lambda rt: notification.notify(rt.store, order_id))
    return order_id


@app.task(bind=True, name="tasks.notification.lane_probe", acks_late=True)
def lane_probe(self: NotificationStep, token: str) -> str:
    """Health probe: records which worker consumed it from which queue."""
    routing_key = (self.request.delivery_info or {}).get("routing_key")
    claim(get_runtime().store, f"probe:{token}:{routing_key}:{self.request.hostname}")
    return token
