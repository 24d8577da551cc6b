"""What a step does with its result: continue, or end its chain and compensate."""

from __future__ import annotations

from pipeline import workflow
from pipeline.domain import OrderStatus
from pipeline.runtime import get_runtime
from pipeline.services.outcome import StepResult
from tasks.base import OrderStep


def follow(task: OrderStep, order_id: str, result: StepResult) -> None:
    if result.proceed:
        return
    task.stop_chain()
    rt = get_runtime()
    if not result.repeated and result.outcome is not None:
        workflow.compensate(order_id, vip=task.is_vip(rt, order_id))
    elif task.attempt > 1 and rt.store.status(order_id) is OrderStatus.COMPENSATING:
        # A redelivery of the step that started compensating: its first run
        # may have died before publishing the compensation. Compensation is
        # idempotent, so publishing it again is safe.
        workflow.compensate(order_id, vip=task.is_vip(rt, order_id))
