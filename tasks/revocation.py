"""A revoked order step cancels its order (`celery control revoke`, Flower's revoke).

Celery discards a revoked task's message and, with it, the rest of the
order's chain; left alone the order would wait. The handler hangs off
Celery's `task_revoked` signal and goes through the same cancellation as
`pipeline cancel`. When the order cannot be cancelled (it is being shipped,
or it is compensating already) the revoked step is sent again under a new
id, so the order still ends: a revoke never strands an order.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_revoked

from config.topology import Task
from pipeline.api import cancel_order
from pipeline.domain import StockOp, StockUpdate
from pipeline.errors import OrderNotFound
from pipeline.runtime import get_runtime
from pipeline.services.cancellation import Cancellation
from tasks.base import OrderStep

log = logging.getLogger("pipeline.revocation")


@task_revoked.connect
def _cancel_the_order(sender: Any = None, request: Any = None, **_: Any) -> None:
    if not isinstance(sender, OrderStep) or request is None or not request.args:
        return
    ref = str(request.args[0])[:64]
    if sender.name == Task.RESTOCK.value:  # a delivery, not an order: no longer in flight
        try:
            update = StockUpdate(ref, str(request.args[1]), int(request.args[2]),
                                 StockOp.RESTOCK)
            get_runtime().store.mark_dead_lettered(update.update_id, result="REVOKED")
        except (IndexError, ValueError, TypeError):
            return
        log.warning("restock %s revoked before it was applied", ref)
        return
    try:
        outcome = cancel_order(ref, reason=f"step {sender.name} revoked ({request.id})")
    except OrderNotFound:
        return
    log.warning("order %s: step %s[%s] revoked -> %s", ref, sender.name, request.id, outcome)
    if outcome in (Cancellation.TOO_LATE.value, Cancellation.ALREADY_ENDING.value) and not (
            get_runtime().store.status(ref).terminal):
        sender.signature(args=request.args, kwargs=request.kwargs).apply_async(
            queue=(request.delivery_info or {}).get("routing_key"),
            **_fifo_options(sender, request))
        log.warning("order %s cannot be cancelled now (%s); %s sent again", ref, outcome,
                    sender.name)


def _fifo_options(sender: Any, request: Any) -> dict[str, str]:
    """A FIFO step sent again keeps its product's group (a fresh deduplication id)."""
    if sender.name != Task.APPLY_LINE.value or len(request.args) < 4:
        return {}
    return {"MessageGroupId": str(request.args[1]),
            "MessageDeduplicationId": f"revoked-{request.id}"[:128]}
