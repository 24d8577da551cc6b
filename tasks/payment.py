from __future__ import annotations

from pipeline.app import app
from pipeline.services import payment
from tasks.base import OrderStep, RetryPolicy
from tasks.flow import follow


class PaymentStep(OrderStep):
    # The gateway is the slowest dependency: back off longer between attempts.
    retry = RetryPolicy(base_s=2.0, cap_s=60.0)


@app.task(base=PaymentStep, bind=True, name="tasks.payment.authorize_payment")
def authorize_payment(self: PaymentStep, order_id: str) -> str:
    result = self.run_step(order_id, "authorize_payment",
                           lambda rt: payment.authorize(rt.store, rt.gateway, order_id))
    follow(self, order_id, result)
    return order_id


@app.task(base=PaymentStep, bind=True, name="tasks.payment.reverse_payment")
def reverse_payment(self: PaymentStep, order_id: str) -> str:
    """Compensation: void the authorization or refund the capture."""
    self.run_step(order_id, "reverse_payment",
                  lambda rt: payment.reverse(rt.store, rt.gateway, order_id))
    return order_id
