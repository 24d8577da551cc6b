from __future__ import annotations

from pipeline.app import app
from pipeline.services import validation
from tasks.base import OrderStep
from tasks.flow import follow


@app.task(base=OrderStep, bind=True, name="tasks.validation.validate_order")
def validate_order(self: OrderStep, order_id: str) -> str:
    result = self.run_step(order_id, "validate",
                           lambda rt: validation.validate(rt.store, order_id, rt.rules))
    follow(self, order_id, result)
    return order_id
