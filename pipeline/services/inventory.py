"""Inventory: reserve and release per line, fan back in once, expire stale holds.

Every reserve/release of a product is one message in the product's FIFO group,
so a product's stock changes in one order: the SQS sequence order. The fan-in
is decided in the store (no chord, no result backend): the line that finds
every line decided flips the order's status with a compare-and-set, and only
the winner continues the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from pipeline.domain import OrderStatus, reached
from pipeline.services.outcome import StepResult
from pipeline.store import Store
from pipeline.store import schema as t
from pipeline.store.db import reading
from pipeline.store.stock import PublishedUpdate, now


class StockOp(StrEnum):
    RESERVE = "reserve"  # an order line takes stock
    RELEASE = "release"  # compensation gives it back
    RESTOCK = "restock"  # a delivery adds stock


@dataclass(frozen=True)
class StockUpdate:
    """One message for inventory.fifo: group = sku, dedup = ref + sku + op.

    `ref` is the order id for reserve/release and the restock id for restock.
    """

    ref: str
    sku: str
    quantity: int
    op: StockOp

    @property
    def group_id(self) -> str:
        return self.sku

    @property
    def deduplication_id(self) -> str:
        return f"{self.ref}:{self.sku}:{self.op.value}"

    def published(self) -> PublishedUpdate:
        return PublishedUpdate(self.deduplication_id, self.sku, self.op.value, self.ref,
                               self.quantity)


class FanIn(StrEnum):
    WAITING = "waiting"  # other lines are still in flight
    WON = "won"  # this line completed the set: continue the workflow
    DONE_BEFORE = "done_before"  # someone completed it already


def reservation_messages(store: Store, order_id: str) -> tuple[StepResult, list[StockUpdate]]:
    """Fan out: move to RESERVING and return one reserve message per line.

    On a redelivery while still RESERVING, the same messages are returned
    again; their deduplication ids make SQS drop the copies.
    """
    status = store.status(order_id)
    if status is OrderStatus.PAYMENT_AUTHORIZED:
        store.transition(order_id, OrderStatus.RESERVING,
                         expected=[OrderStatus.PAYMENT_AUTHORIZED])
    elif status is not OrderStatus.RESERVING:
        if reached(status, OrderStatus.RESERVED):
            return StepResult.go("already reserved", repeated=True), []
        return StepResult.stop(None, repeated=True, detail=f"order is {status}"), []
    messages = [StockUpdate(order_id, line["sku"], line["quantity"], StockOp.RESERVE)
                for line in store.lines(order_id)]
    return StepResult.go(f"{len(messages)} line(s) sent for reservation"), messages


def release_messages(store: Store, order_id: str) -> list[StockUpdate]:
    """Compensation fan-out: one release per line (a no-op for lines not held)."""
    return [StockUpdate(order_id, line["sku"], line["quantity"], StockOp.RELEASE)
            for line in store.lines(order_id)]


def apply_update(store: Store, update: StockUpdate, *, sequence: str | None,
                 hold_s: int, low_stock_below: int = 0) -> str:
    """Apply one update to stock; idempotent. Returns the resulting state."""
    if update.op is StockOp.RESERVE:
        return store.reserve_line(update.ref, update.sku, update.quantity,
                                  sequence=sequence, hold_s=hold_s,
                                  low_stock_below=low_stock_below)
    if update.op is StockOp.RELEASE:
        return store.release_line(update.ref, update.sku, sequence=sequence)
    applied = store.restock(update.ref, update.sku, update.quantity, sequence=sequence)
    return "RESTOCKED" if applied else "RESTOCKED before"


def reservation_fan_in(store: Store, order_id: str) -> FanIn:
    """After a reserve: decide the order once every line is decided."""
    states = store.line_states(order_id)
    skus = [line["sku"] for line in store.lines(order_id)]
    if any(sku not in states for sku in skus):
        return FanIn.WAITING
    short = [sku for sku in skus if states[sku] in ("REJECTED", "RELEASED")]
    if not short:
        won = store.transition(order_id, OrderStatus.RESERVED, expected=[OrderStatus.RESERVING])
    else:
        won = store.transition(order_id, OrderStatus.COMPENSATING,
                               expected=[OrderStatus.RESERVING],
                               outcome=OrderStatus.OUT_OF_STOCK,
                               reasons=[f"{sku}: out of stock" for sku in short])
    return FanIn.WON if won else FanIn.DONE_BEFORE


def release_fan_in(store: Store, order_id: str) -> FanIn:
    """After a release: continue the compensation once every line is let go."""
    states = store.line_states(order_id)
    skus = [line["sku"] for line in store.lines(order_id)]
    if any(states.get(sku) == "RESERVED" or sku not in states for sku in skus):
        return FanIn.WAITING
    return FanIn.WON if claim(store, f"{order_id}:released") else FanIn.DONE_BEFORE


def claim(store: Store, key: str) -> bool:
    """Take a one-time key; True for the one caller that got it."""
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(t.idempotency_keys).values(key=key, result={},
                                                           created_at=now()))
        return True
    except IntegrityError:
        return False


def stale_holds(store: Store) -> list[str]:
    """Orders holding stock past its hold time while stuck before shipment."""
    from sqlalchemy import select

    stamp = now()
    with reading(store.engine) as conn:
        rows = conn.execute(
            select(t.reservations.c.order_id).distinct()
            .join(t.orders, t.orders.c.id == t.reservations.c.order_id)
            .where(t.reservations.c.state == "RESERVED", t.reservations.c.expires_at < stamp,
                   t.orders.c.status.in_([OrderStatus.RESERVING.value,
                                          OrderStatus.RESERVED.value]))).scalars().all()
    return list(rows)


def expire_hold(store: Store, order_id: str) -> bool:
    """Send a stuck order to compensation (its lines are then released through
    inventory.fifo, in each product's order). True if this call moved it."""
    return store.transition(
        order_id, OrderStatus.COMPENSATING,
        expected=[OrderStatus.RESERVING, OrderStatus.RESERVED], outcome=OrderStatus.FAILED,
        reasons=["reservation hold expired before shipment"])
