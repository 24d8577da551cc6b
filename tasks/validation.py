from __future__ import annotations

from typing import Any

from config.topology import Task
from pipeline.app import app
from tasks.base import OrderStep


@app.task(base=OrderStep, bind=True, name=Task.VALIDATE.value)
def validate_order(self: OrderStep, order_id: str) -> Any:
    """Schema and business rules: VALIDATED, or compensating towards REJECTED."""
    return self.execute((order_id,))
