"""The audit's reads: every ledger's rows as they are, for pipeline.ops.audit to judge.

Read in one transaction per call, with no interpretation here: what is right or
wrong about the rows is the audit's business, where to find them is the store's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, select, true

from pipeline.domain import OrderStatus
from pipeline.keys import PAYMENT_OPERATIONS, payment_key, shipment_cancel_key, shipment_key
from pipeline.store import schema as t
from pipeline.store.db import reading

__all__ = ["PAGE_ORDERS", "OrderBooks", "StockLevel", "StoreTotals", "order_book_pages",
           "store_totals"]


@dataclass
class OrderBooks:
    """One order's rows from every ledger."""

    status: OrderStatus
    total: Decimal
    payments: list[dict[str, Any]] = field(default_factory=list)
    gateway: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> effect
    carrier: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    reservations: dict[str, str] = field(default_factory=dict)
    shipment: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)


# Orders per read transaction. A whole store read at once held every ledger row
# in memory and ran statements as long as the store is big (one read every
# gateway and carrier effect, whatever orders were asked for), past the
# database's statement timeout on a large PostgreSQL store.
PAGE_ORDERS = 500


def order_book_pages(engine: Engine, order_ids: Iterable[str] | None,
                     page: int = PAGE_ORDERS) -> Iterator[dict[str, OrderBooks]]:
    """Every ledger's rows of these orders (all of them when None), by order id, a
    page of at most `page` orders at a time, each page read in one transaction."""
    if page < 1:
        raise ValueError(f"page must be at least 1, not {page}")
    if order_ids is not None:
        wanted = list(dict.fromkeys(order_ids))
        for start in range(0, len(wanted), page):
            with reading(engine) as conn:
                books = _page(conn, wanted[start:start + page])
            yield books
        return
    after = ""  # keyset: the last order id of the previous page
    while True:
        with reading(engine) as conn:
            ids = list(conn.execute(select(t.orders.c.id).where(t.orders.c.id > after)
                                    .order_by(t.orders.c.id).limit(page)).scalars())
            if not ids:
                return
            books = _page(conn, ids)
        yield books
        after = ids[-1]


def _effect_keys(order_id: str) -> list[str]:
    """The idempotency keys of an order's effects at the gateway and the carrier."""
    return [*(payment_key(order_id, op) for op in PAYMENT_OPERATIONS),
            shipment_key(order_id), shipment_cancel_key(order_id)]


def _page(conn: Any, order_ids: list[str]) -> dict[str, OrderBooks]:
    def rows(query: Any) -> list[Any]:
        return list(conn.execute(query).mappings())

    books: dict[str, OrderBooks] = {}
    for r in rows(select(t.orders.c.id, t.orders.c.status, t.orders.c.total_amount)
                  .where(t.orders.c.id.in_(order_ids)).order_by(t.orders.c.id)):
        books[r["id"]] = OrderBooks(OrderStatus(r["status"]), Decimal(r["total_amount"]))
    found = list(books)
    for r in rows(select(t.payments).where(t.payments.c.order_id.in_(found))
                  .order_by(t.payments.c.id)):
        books[r["order_id"]].payments.append(dict(r))
    keys = [key for order_id in found for key in _effect_keys(order_id)]
    for r in rows(select(t.external_effects).where(
            t.external_effects.c.system.in_(("gateway", "carrier")),
            t.external_effects.c.idempotency_key.in_(keys))):
        order_id = str(r["idempotency_key"]).partition(":")[0]
        side = books[order_id].gateway if r["system"] == "gateway" else books[order_id].carrier
        side[r["idempotency_key"]] = dict(r)
    for r in rows(select(t.order_lines).where(t.order_lines.c.order_id.in_(found))):
        books[r["order_id"]].lines[r["sku"]] = r["quantity"]
    for r in rows(select(t.reservations).where(t.reservations.c.order_id.in_(found))):
        books[r["order_id"]].reservations[r["sku"]] = r["state"]
    for r in rows(select(t.shipments).where(t.shipments.c.order_id.in_(found))):
        books[r["order_id"]].shipment = dict(r)
    for r in rows(select(t.notifications).where(t.notifications.c.order_id.in_(found))):
        books[r["order_id"]].notifications.append(dict(r))
    return books


@dataclass(frozen=True)
class StockLevel:
    sku: str
    available: int
    reserved: int
    shipped: int
    # Sums over the product's movements: what the stock row must equal.
    moved: tuple[int, int, int] | None
    supplied: int  # adjustments and restocks


@dataclass(frozen=True)
class StoreTotals:
    orders_by_status: dict[str, int]
    max_captures_per_order: int
    max_effects_per_key: int
    max_notifications_per_slot: int
    stock: list[StockLevel]
    unapplied: list[tuple[str, int, str | None]]  # stock updates never applied: id, qty, why


def _max(conn: Any, query: Any) -> int:
    return int(conn.execute(select(func.coalesce(func.max(query.c.n), 0))).scalar_one())


def store_totals(engine: Engine, order_ids: Iterable[str] | None = None) -> StoreTotals:
    """Store-wide counts (orders by status only of `order_ids` when given)."""
    wanted = None if order_ids is None else list(order_ids)
    with reading(engine) as conn:
        by_status: dict[str, int] = dict(conn.execute(
            select(t.orders.c.status, func.count())
            .where(true() if wanted is None else t.orders.c.id.in_(wanted))
            .group_by(t.orders.c.status)).all())
        captures = (select(func.count().label("n")).select_from(t.payments)
                    .where(t.payments.c.kind == "capture")
                    .group_by(t.payments.c.order_id).subquery())
        charges = (select(func.count().label("n")).select_from(t.external_calls)
                   .where(t.external_calls.c.effect == "applied")
                   .group_by(t.external_calls.c.system, t.external_calls.c.idempotency_key)
                   .subquery())
        notes = (select(func.count().label("n")).select_from(t.notifications)
                 .group_by(t.notifications.c.order_id, t.notifications.c.template,
                           t.notifications.c.channel).subquery())
        max_captures, max_charges, max_notes = (
            _max(conn, captures), _max(conn, charges), _max(conn, notes))
        moved = {row.sku: row for row in conn.execute(
            select(t.stock_movements.c.sku,
                   func.sum(t.stock_movements.c.delta_available).label("a"),
                   func.sum(t.stock_movements.c.delta_reserved).label("r"),
                   func.sum(t.stock_movements.c.delta_shipped).label("s"),
                   func.sum(t.stock_movements.c.delta_available)
                   .filter(t.stock_movements.c.kind.in_(("adjust", "restock")))
                   .label("supplied"))
            .group_by(t.stock_movements.c.sku))}
        levels = conn.execute(select(t.stock)).mappings().all()
        unapplied = conn.execute(select(
            t.stock_updates.c.update_id, t.stock_updates.c.quantity, t.stock_updates.c.result)
            .where(t.stock_updates.c.applied_at.is_(None))).all()
    stock = []
    for level in levels:
        m = moved.get(level["sku"])
        stock.append(StockLevel(
            level["sku"], level["available"], level["reserved"], level["shipped"],
            (int(m.a), int(m.r), int(m.s)) if m else None, int(m.supplied or 0) if m else 0))
    return StoreTotals({str(k): int(v) for k, v in by_status.items()}, max_captures,
                       max_charges, max_notes, stock,
                       [(str(u), int(q), r) for u, q, r in unapplied])
