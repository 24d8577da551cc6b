"""Publishing what the workflow decided, as Celery canvases on SQS.

pipeline.workflow describes what comes next (a chain of steps on an order, or
one FIFO message per stock update); this turns those descriptions into Celery
signatures: a chain for consecutive steps (each on its lane: VIP orders run
every non-FIFO step on `priority`), and for a stock update a task message in
the product's group with its deduplication id. What one call publishes goes out
in SendMessageBatch requests (pipeline.sqs.batching): an order's lines in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import chain

from config.topology import Task, lane_for
from pipeline.domain import StockOp, StockUpdate
from pipeline.sqs.batching import sends_batched
from pipeline.workflow import Chain, Publish

__all__ = ["CeleryPublisher"]


def _lean(args: tuple[str | int, ...]) -> dict[str, Any]:
    """Publish options that take two of Celery's per-message costs out: no declare (kombu
    bound a copy of the queue and its exchange to the channel on every publish, 3 % of
    a lane's CPU, for queues provisioning made and every worker checks at start), and
    the argument reprs Flower shows built from the ids here (Celery's saferepr, 2 %).
    A chain carries them with each of its steps, so its continuations publish alike."""
    return {"declare": [], "argsrepr": repr(args), "kwargsrepr": "{}"}


class CeleryPublisher:
    def __init__(self, app: Any) -> None:
        self.app = app

    def _signature(self, task: Task, order_id: str, *, vip: bool) -> Any:
        return self.app.signature(task.value, args=(order_id,), immutable=True).set(
            queue=lane_for(task, vip=vip), **_lean((order_id,)))

    def publish(self, order_id: str, items: Sequence[Publish], *, vip: bool) -> None:
        with sends_batched():
            for item in items:
                if isinstance(item, Chain):
                    links = [self._signature(task, order_id, vip=vip) for task in item.tasks]
                    (links[0] if len(links) == 1 else chain(*links)).apply_async()
                else:
                    self.stock_updates(item.updates)

    def stock_updates(self, updates: Sequence[StockUpdate]) -> None:
        """One FIFO message per update: the product's group keeps its stock in order.
        The caller has noted each in the store (so it counts as in flight until applied)."""
        # One producer for all of them: Celery acquires one from its pool per publish.
        with sends_batched(), self.app.producer_or_acquire() as producer:
            for u in updates:
                args: tuple[str | int, ...]
                if u.op is StockOp.RESTOCK:
                    task, args = Task.RESTOCK, (u.ref, u.sku, u.quantity)
                else:
                    task, args = Task.APPLY_LINE, (u.ref, u.sku, u.quantity, u.op.value)
                self.app.signature(task.value, args=args).apply_async(
                    queue=lane_for(task, vip=False), MessageGroupId=u.group_id,
                    MessageDeduplicationId=u.update_id, producer=producer, **_lean(args))
