from __future__ import annotations

from typing import Any

from config.topology import Task
from pipeline.app import app
from pipeline.keys import probe_key
from pipeline.runtime import get_runtime
from pipeline.services.inventory import claim
from tasks.base import OrderStep, RetryPolicy


class NotificationStep(OrderStep):
    retry = RetryPolicy(base_s=1.0, cap_s=10.0)


@app.task(base=NotificationStep, bind=True, name=Task.NOTIFY.value)
def notify_customer(self: NotificationStep, order_id: str) -> Any:
    """Tell the customer what the ledger shows, and end the order."""
    return self.execute((order_id,))


@app.task(bind=True, name=Task.LANE_PROBE.value, acks_late=True)
def lane_probe(self: Any, token: str) -> str:
    """Health probe: records which worker consumed it from which queue."""
    routing_key = (self.request.delivery_info or {}).get("routing_key")
    claim(get_runtime().store, probe_key(str(token), str(routing_key), self.request.hostname))
    return token
