"""A revoked order step cancels its order (`celery control revoke`, Flower's revoke).

Celery discards a revoked task's message and, with it, the rest of the
order's chain; left alone the order would wait forever. The handler hangs off
Celery's `task_revoked` signal and goes through the same cancellation as
`pipeline cancel`. A step of a shipped order cannot cancel it: that step is
sent again under a new id, so the order still ends.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_revoked

from pipeline.api import cancel_order
from pipeline.errors import OrderNotFound
from pipeline.runtime import get_runtime
from pipeline.services.cancellation import Cancellation
from tasks.base import OrderStep

log = logging.getLogger("pipeline.revocation")
RESTOCK = "tasks.inventory.restock"


@task_revoked.connect
def _cancel_the_order(sender: Any = None, request: Any = None, **_: Any) -> None:
    if not isinstance(sender, OrderStep) or request is None or not request.args:
        return
    ref = str(request.args[0])
    if sender.name == RESTOCK:  # a delivery, not an order: it no longer counts as in flight
        get_runtime().store.mark_dead_lettered(f"{ref}:{request.args[1]}:restock",
                                               result="REVOKED")
        log.warning("restock %s revoked before it was applied", ref)
        return
    try:
        outcome = cancel_order(ref, reason=f"step {sender.name} revoked ({request.id})")
    except OrderNotFound:
        return
    log.warning("order %s: step %s[%s] revoked -> %s", ref, sender.name, request.id, outcome)
    if outcome == Cancellation.TOO_LATE.value:
        sender.signature(args=request.args, kwargs=request.kwargs).apply_async(
            queue=(request.delivery_info or {}).get("routing_key"))
        log.warning("order %s has shipped and cannot be cancelled; %s sent again", ref,
                    sender.name)
