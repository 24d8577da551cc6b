"""The reconciler: an order whose messages were lost is re-driven from its state.

At-least-once delivery plus idempotent steps is not enough on its own: a
message can still be lost (a stale receipt, an operator's purge, a retention
expiry, a crash between storing an order and publishing its first step). So
progress is guaranteed from the store: every non-terminal order whose last
progress (a status change or a finished step attempt) is older than its
deadline gets the step that should run next published again
(pipeline.steps.resume), and the re-drive is written to its timeline.

Deadlines come from the topology, not from a number picked here: the queue
of the step that should run next may legitimately keep a message out of sight
for up to `visibility_timeout x maxReceiveCount` (each attempt's worker may
die and SQS then waits a full visibility timeout), plus slack. Re-driving
sooner would only send duplicates of a message SQS still holds; steps absorb
duplicates anyway, so a deadline that is too short costs work, never money.

An order waiting for attention (NEEDS_ATTENTION) is retried the same way: its
compensation runs again until the money and stock are right.

Safe when two reconcilers run by mistake: the sweep is taken under a lease in
the store (`leases`), so one of them re-drives and the other skips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from config.topology import TASK_QUEUE, QueueSpec, Task, queue_by_name
from pipeline import steps, tracing
from pipeline.domain import TERMINAL, OrderStatus
from pipeline.store import Store, operations
from pipeline.store.clock import aware, now

__all__ = ["ReconcileReport", "deadlines", "reconcile", "stale_orders"]

log = logging.getLogger("pipeline.reconcile")
S = OrderStatus

# Which step should run next in each non-terminal status (compensation: any of
# its steps; the slowest queue among them bounds the wait).
NEXT_STEPS: dict[OrderStatus, tuple[Task, ...]] = {
    S.RECEIVED: (Task.VALIDATE,),
    S.VALIDATED: (Task.AUTHORIZE,),
    S.AUTHORIZING: (Task.AUTHORIZE,),
    S.PAYMENT_AUTHORIZED: (Task.RESERVE,),
    S.RESERVING: (Task.APPLY_LINE,),
    S.RESERVED: (Task.SHIP,),
    S.SHIPPING: (Task.SHIP,),
    S.SHIPPED: (Task.NOTIFY,),
    S.COMPENSATING: (Task.CANCEL_SHIPMENT, Task.APPLY_LINE, Task.REVERSE_PAYMENT, Task.NOTIFY),
    S.NEEDS_ATTENTION: (Task.CANCEL_SHIPMENT, Task.APPLY_LINE, Task.REVERSE_PAYMENT),
}


def deadlines(slack_s: float, attention_retry_s: float,
              visibility: Callable[[QueueSpec], int] = lambda q: q.visibility_timeout,
              ) -> dict[OrderStatus, float]:
    """Seconds without progress after which an order in each status is re-driven.

    An order waiting for attention has no message in flight (its step gave up,
    was dead-lettered and acked), so it is retried after `attention_retry_s`.
    """
    found = {}
    for status, tasks in NEXT_STEPS.items():
        specs = [queue_by_name(TASK_QUEUE[task]) for task in tasks]
        # Each attempt's message may be out of sight for a visibility timeout, and the
        # receive after the last attempt's; a hand-back (tasks.fifo) hides nothing.
        found[status] = max(visibility(q) * (q.attempts + 1) for q in specs) + slack_s
    found[S.NEEDS_ATTENTION] = attention_retry_s
    return found


@dataclass
class ReconcileReport:
    examined: int = 0
    redriven: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the sweep did not run (another holds the lease)


def stale_orders(store: Store, limits: Mapping[OrderStatus, float], *,
                 limit: int = 500) -> list[tuple[str, OrderStatus, float]]:
    """Non-terminal orders past their deadline: (id, status, seconds since progress)."""
    stamp = now()
    rows = operations.idle_orders(
        store.engine, not_in=[s.value for s in TERMINAL],
        updated_before=stamp - timedelta(seconds=min(limits.values())), limit=limit)
    stale = []
    for order_id, status, updated, stepped in rows:
        last = max(aware(updated), aware(stepped)) if stepped is not None else aware(updated)
        idle = (stamp - last).total_seconds()
        if idle >= limits[OrderStatus(status)]:
            stale.append((str(order_id), OrderStatus(status), idle))
    return stale


def reconcile(ctx: steps.StepContext, limits: Mapping[OrderStatus, float], *,
              holder: str = "", lease_s: float = 60.0) -> ReconcileReport:
    """One sweep: re-drive every order past its deadline."""
    report = ReconcileReport()
    store = ctx.store
    if holder and not store.take_lease("reconciler", holder, lease_s):
        report.skipped = "another reconciler holds the lease"
        return report
    for order_id, status, idle in stale_orders(store, limits):
        report.examined += 1
        if status is S.NEEDS_ATTENTION:
            store.resume_compensation(order_id)
        ctx.store.record_step(order_id, "reconcile", 1, ctx.worker or holder,
                              started=now(), outcome="reconciled",
                              detail=f"no progress for {idle:.0f}s in {status}: re-driven")
        try:
            with tracing.continued("reconcile.redrive", order_id,
                                   partial(store.trace_context, order_id)):
                steps.resume(ctx, order_id)
        except Exception as error:  # one order must not stop the sweep
            log.warning("could not re-drive order %s: %s: %s", order_id,
                        type(error).__name__, error)
            continue
        report.redriven.append(order_id)
        log.warning("reconciled order %s: %s for %.0fs, re-driven", order_id, status, idle)
    return report
