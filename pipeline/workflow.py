"""The order workflow, as the business process reads it.

    validate ─▶ authorize payment ─▶ reserve inventory ══▶ ship (capture) ─▶ notify
                       │                  │ one message per line on
                       │                  │ inventory.fifo, group = product id,
                       │                  │ fanned back in by the store (no chord)
    compensation:      ▼                  ▼
         reverse payment (void/refund) ◀─ release every reserved line ◀─ any step's failure
                       └──────────────▶ notify (the order ends in its failure status)

Each step's compensation is declared beside it in STEPS. Steps are chained as
Celery canvases; a step that ends the business process early (rejected,
declined, out of stock, refused) stops its chain and starts the compensation
canvas. VIP orders run every non-FIFO step on the priority lane.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from celery import Signature, chain

from config.topology import lane_for
from pipeline.app import app
from pipeline.services.inventory import StockOp, StockUpdate
from pipeline.store import Store

VALIDATE = "tasks.validation.validate_order"
AUTHORIZE = "tasks.payment.authorize_payment"
REVERSE_PAYMENT = "tasks.payment.reverse_payment"
RESERVE = "tasks.inventory.reserve_inventory"
APPLY_LINE = "tasks.inventory.apply_line"
RESTOCK = "tasks.inventory.restock"
RELEASE = "tasks.inventory.release_inventory"
SHIP = "tasks.shipping.ship_order"
NOTIFY = "tasks.notification.notify_customer"


@dataclass(frozen=True)
class Step:
    name: str
    task: str
    undo: str | None  # the compensation that undoes this step's effect


STEPS: tuple[Step, ...] = (
    Step("validate", VALIDATE, undo=None),
    Step("authorize_payment", AUTHORIZE, undo=REVERSE_PAYMENT),  # void the authorization
    Step("reserve_inventory", RESERVE, undo=RELEASE),  # release every reserved line
    Step("ship", SHIP, undo=REVERSE_PAYMENT),  # refund the capture
    Step("notify", NOTIFY, undo=None),
)


def _sig(task: str, order_id: str, *, vip: bool) -> Signature:
    return app.signature(task, args=(order_id,), immutable=True).set(
        queue=lane_for(task, vip=vip))


def _chain(tasks: Iterable[str], order_id: str, *, vip: bool) -> Signature:
    return chain(*(_sig(task, order_id, vip=vip) for task in tasks))


def start(order_id: str, *, vip: bool) -> None:
    """Up to the inventory fan-out; the fan-in continues with after_reservation."""
    _chain((VALIDATE, AUTHORIZE, RESERVE), order_id, vip=vip).apply_async()


def after_reservation(order_id: str, *, vip: bool) -> None:
    _chain((SHIP, NOTIFY), order_id, vip=vip).apply_async()


def compensate(order_id: str, *, vip: bool) -> None:
    """Undo in reverse: release lines (fan-out), then after_release."""
    _sig(RELEASE, order_id, vip=vip).apply_async()


def after_release(order_id: str, *, vip: bool) -> None:
    _chain((REVERSE_PAYMENT, NOTIFY), order_id, vip=vip).apply_async()


def publish_stock_updates(store: Store, updates: Iterable[StockUpdate]) -> None:
    """One FIFO message per update: the product's group keeps its stock in order.

    Each is noted in the store first (so it counts as in flight until
    applied); a repeat publishes the same deduplication ids, which SQS drops.
    """
    updates = list(updates)
    if not updates:
        return
    store.record_published(u.published() for u in updates)
    for u in updates:
        args: tuple[str | int, ...]
        if u.op is StockOp.RESTOCK:
            task, args = RESTOCK, (u.ref, u.sku, u.quantity)
        else:
            task, args = APPLY_LINE, (u.ref, u.sku, u.quantity, u.op.value)
        app.signature(task, args=args).apply_async(
            queue=lane_for(task, vip=False),
            MessageGroupId=u.group_id,
            MessageDeduplicationId=u.deduplication_id,
        )
