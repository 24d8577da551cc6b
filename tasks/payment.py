from __future__ import annotations

from typing import Any

from config.topology import Task
from pipeline.app import app
from tasks.base import OrderStep, RetryPolicy


class PaymentStep(OrderStep):
    # The gateway is the slowest dependency: back off longer between attempts.
    retry = RetryPolicy(base_s=2.0, cap_s=60.0)


@app.task(base=PaymentStep, bind=True, name=Task.AUTHORIZE.value)
def authorize_payment(self: PaymentStep, order_id: str) -> Any:
    """Authorize the total, then send every line for reservation."""
    return self.execute((order_id,))


@app.task(base=PaymentStep, bind=True, name=Task.REVERSE_PAYMENT.value)
def reverse_payment(self: PaymentStep, order_id: str) -> Any:
    """Compensation: void the authorization or refund the capture."""
    return self.execute((order_id,))
