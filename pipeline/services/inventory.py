"""Inventory: apply one stock update, check it first, expire stale holds.

Every reserve/release of a product is one message in the product's FIFO group,
so a product's stock changes in one order: the SQS sequence order. What a
message asks for is checked against the store before anything is applied: a
reserve or release must match a line of an existing order, a restock must
have been recorded by the producer that sent it. A mismatch is a permanent
error, dead-lettered at once, so a forged or corrupted message neither
changes stock nor holds up its product's group.
"""

from __future__ import annotations

from typing import NamedTuple

from pipeline.domain import OrderStatus, StockOp, StockUpdate
from pipeline.errors import InvalidTaskArguments, OrderNotFound
from pipeline.keys import claim_key
from pipeline.store import Store, operations
from pipeline.store.stock import Within

__all__ = ["Checked", "StockOp", "StockUpdate", "apply_update", "check_update", "claim",
           "expire_hold", "parse_op", "stale_holds"]

# A reserve is applied for an order that is still reserving; once the order is
# winding down (or over) it is refused without touching stock, and the release
# behind it in the product's group finds nothing to give back. Before payment
# there is no reservation to make: such a message was never sent by us.
RESERVING_STATUSES = frozenset({OrderStatus.RESERVING, OrderStatus.PAYMENT_AUTHORIZED})
BEFORE_PAYMENT = frozenset({OrderStatus.RECEIVED, OrderStatus.VALIDATED,
                            OrderStatus.AUTHORIZING})


def parse_op(op: object, *, allowed: tuple[StockOp, ...]) -> StockOp:
    try:
        parsed = StockOp(str(op))
    except ValueError:
        parsed = None
    if parsed not in allowed:
        raise InvalidTaskArguments(
            f"unknown stock operation {op!r}; expected one of "
            f"{', '.join(o.value for o in allowed)}")
    return parsed


class Checked(NamedTuple):
    """A stock update found to be one the pipeline sent."""

    status: OrderStatus | None  # the order's, for a line update (None: a restock)
    repeated: bool  # applied before: this delivery repeats it
    vip: bool = False


def check_update(store: Store, update: StockUpdate) -> Checked:
    """Raise InvalidTaskArguments unless `update` is one the pipeline sent."""
    if update.op is StockOp.RESTOCK:
        note = store.stock_update(update.update_id)
        if note is None or note.sku != update.sku or note.quantity != update.quantity:
            raise InvalidTaskArguments(
                f"restock {update.ref} of {update.quantity} x {update.sku} was never "
                "recorded by a producer (pipeline.restock records every restock it sends)")
        return Checked(None, note.applied_at is not None)
    try:
        check = store.line_check(update.ref, update.sku, update.update_id)
    except OrderNotFound:
        raise InvalidTaskArguments(f"{update.op.value} for unknown order {update.ref!r}") \
            from None
    if check.quantity != update.quantity:
        lines = {line.sku: line.quantity for line in store.lines(update.ref)}
        raise InvalidTaskArguments(
            f"{update.op.value} {update.quantity} x {update.sku} matches no line of order "
            f"{update.ref} (its lines: {dict(sorted(lines.items()))})")
    return Checked(check.status, check.applied, check.vip)


def apply_update(store: Store, update: StockUpdate, *, status: OrderStatus | None,
                 sequence: str | None, hold_s: int, low_stock_below: int = 0,
                 within: Within | None = None) -> str:
    """Apply one checked update to stock; idempotent. Returns the resulting state.
    `within` runs inside the update's transaction with that state (a line update)."""
    if update.op is StockOp.RESERVE:
        if status is None or status in BEFORE_PAYMENT:
            raise InvalidTaskArguments(
                f"reserve for order {update.ref} while it is {status}: "
                "lines are reserved only after payment")
        return store.reserve_line(update.ref, update.sku, update.quantity,
                                  sequence=sequence, hold_s=hold_s,
                                  low_stock_below=low_stock_below,
                                  refuse=status not in RESERVING_STATUSES, within=within)
    if update.op is StockOp.RELEASE:
        return store.release_line(update.ref, update.sku, sequence=sequence, within=within)
    applied = store.restock(update.ref, update.sku, update.quantity, sequence=sequence)
    return "RESTOCKED" if applied else "RESTOCKED before"


def claim(store: Store, key: str) -> bool:
    """Take a one-time key; True for the one caller that got it."""
    return operations.claim(store.engine, key)


def claim_release_fan_in(store: Store, order_id: str) -> bool:
    return claim(store, claim_key(order_id, "released"))


def stale_holds(store: Store) -> list[str]:
    """Orders holding stock past its hold time while stuck before shipment."""
    return operations.stale_holds(store.engine, [OrderStatus.RESERVING.value,
                                                 OrderStatus.RESERVED.value])


def expire_hold(store: Store, order_id: str) -> bool:
    """Send a stuck order to compensation (its lines are then released through
    inventory.fifo, in each product's order). True if this call moved it.
    An order being shipped (SHIPPING) is never expired: the shipping step owns it."""
    return store.transition(
        order_id, OrderStatus.COMPENSATING,
        expected=[OrderStatus.RESERVING, OrderStatus.RESERVED], outcome=OrderStatus.FAILED,
        reasons=["reservation hold expired before shipment"])
