"""Catalog, stock and the per-product FIFO ledger.

Every stock update that travels through inventory.fifo is recorded twice:
a `stock_updates` row written when it is published (so what is in flight per
product is visible) and stamped when applied, and exactly one
`stock_movements` row when applied (refusals included, with zero deltas), so
each product's movement ids list its updates in the order they were applied
and the audit can compare that with their SQS sequence numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import BindParameter, Connection, Engine, bindparam, func, insert, select, update

from pipeline.domain import OrderStatus, StockOp, StockUpdate
from pipeline.errors import OrderNotFound
from pipeline.store import outbox, prepared
from pipeline.store import schema as t
from pipeline.store.clock import aware, now
from pipeline.store.db import reading
from pipeline.store.rows import (
    MovementRow,
    ProductInFlight,
    ProductRow,
    ReservationRow,
    StockLevelRow,
    StockUpdateRow,
)

# Called inside a line's transaction with the line's resulting state: the step
# writes its timeline row there (pipeline.services.outcome.Record).
Within = Callable[[Connection, str], None]


# The statements of a stock update, built once (see pipeline.store.prepared).
_UPDATE_ID: BindParameter[str] = bindparam("update_id")
_APPLIED = select(t.stock_updates.c.applied_at).where(t.stock_updates.c.update_id == _UPDATE_ID)
# (An UPDATE's bound names must differ from its table's column names.)
_MARK_APPLIED = update(t.stock_updates).where(
    t.stock_updates.c.update_id == bindparam("the_update"), t.stock_updates.c.applied_at.is_(None),
).values(applied_at=bindparam("at"), sqs_sequence=bindparam("sequence"),
         result=bindparam("outcome"))
_LINE_STATE = select(t.reservations.c.state).where(
    t.reservations.c.order_id == bindparam("order_id"), t.reservations.c.sku == bindparam("sku"))
_TAKE = update(t.stock).where(
    t.stock.c.sku == bindparam("product"), t.stock.c.available >= bindparam("quantity"),
).values(available=t.stock.c.available - bindparam("quantity"),
         reserved=t.stock.c.reserved + bindparam("quantity"))
_RESERVED_LINES = select(t.reservations.c.sku, t.reservations.c.quantity).where(
    t.reservations.c.order_id == bindparam("order_id"), t.reservations.c.state == "RESERVED")
_SHIP_LINE = update(t.reservations).where(
    t.reservations.c.order_id == bindparam("order"), t.reservations.c.sku == bindparam("product"),
).values(state="SHIPPED", updated_at=bindparam("at"))
_SHIP_STOCK = update(t.stock).where(t.stock.c.sku == bindparam("product")).values(
    reserved=t.stock.c.reserved - bindparam("quantity"),
    shipped=t.stock.c.shipped + bindparam("quantity"))
_AVAILABLE = select(t.stock.c.available).where(t.stock.c.sku == bindparam("product"))


class LineCheck(NamedTuple):
    status: OrderStatus
    lines: dict[str, int]  # product id -> quantity
    applied: bool  # the update was applied before (this delivery repeats it)


class StockLedger:
    engine: Engine

    # --------------------------------------------------------------- catalog
    def set_stock(self, sku: str, quantity: int, *, price: Decimal | None = None,
                  name: str | None = None, currency: str = "USD") -> dict[str, int]:
        """Set a product's available stock (adding the product when unknown).

        An administrative correction, applied at once; deliveries that must
        keep their place behind reservations go through `restock` instead.
        """
        if quantity < 0:
            raise ValueError("stock quantity must be >= 0")
        with self.engine.begin() as conn:
            product = conn.execute(select(t.products).where(t.products.c.sku == sku)).first()
            if product is None:
                if price is None:
                    raise ValueError(f"{sku} is not in the catalog yet: give it a --price")
                conn.execute(insert(t.products).values(
                    sku=sku, name=name or sku, price=price, currency=currency))
                conn.execute(insert(t.stock).values(sku=sku, available=0, reserved=0, shipped=0))
            elif price is not None:
                conn.execute(update(t.products).where(t.products.c.sku == sku).values(price=price))
            current = conn.execute(select(t.stock.c.available).where(t.stock.c.sku == sku)
                                   ).scalar_one()
            delta = quantity - current
            if delta:
                conn.execute(update(t.stock).where(t.stock.c.sku == sku)
                             .values(available=t.stock.c.available + delta))
                conn.execute(insert(t.stock_movements).values(
                    sku=sku, kind="adjust", delta_available=delta, delta_reserved=0,
                    delta_shipped=0, applied_at=now()))
            row = conn.execute(select(t.stock).where(t.stock.c.sku == sku)).mappings().one()
        return {k: row[k] for k in ("available", "reserved", "shipped")}

    def catalog(self, skus: Iterable[str]) -> dict[str, ProductRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.products).where(t.products.c.sku.in_(list(skus))))
            return {r["sku"]: ProductRow.of(r) for r in rows.mappings()}

    def stock_levels(self) -> list[StockLevelRow]:
        query = (select(t.products.c.sku, t.products.c.price, t.stock.c.available,
                        t.stock.c.reserved, t.stock.c.shipped)
                 .join(t.stock, t.stock.c.sku == t.products.c.sku).order_by(t.products.c.sku))
        with reading(self.engine) as conn:
            return [StockLevelRow.of(r) for r in conn.execute(query).mappings()]

    def stock_history(self, sku: str) -> list[MovementRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.stock_movements).where(t.stock_movements.c.sku == sku)
                                .order_by(t.stock_movements.c.id)).mappings().all()
        return [MovementRow.of(r) for r in rows]

    # ------------------------------------------------------ FIFO update ledger
    def record_published(self, updates: Iterable[StockUpdate],
                         conn: Connection | None = None) -> None:
        """Note updates about to be published (a repeat keeps the first note).

        Given `conn`, inside the caller's transaction: the note then exists
        exactly when the change that made the updates necessary was committed.
        """
        if conn is None:
            with self.engine.begin() as own:
                self.record_published(updates, own)
            return
        stamp = now()
        for u in updates:
            prepared.insert_once(conn, t.stock_updates, {
                "update_id": u.update_id, "sku": u.sku, "op": u.op.value, "ref": u.ref,
                "quantity": u.quantity, "published_at": stamp})

    def stock_update(self, update_id: str) -> StockUpdateRow | None:
        with reading(self.engine) as conn:
            row = conn.execute(select(t.stock_updates).where(
                t.stock_updates.c.update_id == update_id)).mappings().first()
        return StockUpdateRow.of(row) if row else None

    def _mark_applied(self, conn: Connection, u: StockUpdate, *, sequence: str | None,
                      result: str, stamp: datetime) -> None:
        done = conn.execute(_MARK_APPLIED, {"the_update": u.update_id, "at": stamp,
                                            "sequence": sequence, "outcome": result}).rowcount
        if not done:  # a line sent before notes were kept (orders from older releases)
            conn.execute(prepared.insert_into(t.stock_updates), {
                "update_id": u.update_id, "sku": u.sku, "op": u.op.value, "ref": u.ref,
                "quantity": u.quantity, "published_at": stamp, "applied_at": stamp,
                "sqs_sequence": sequence, "result": result})

    @staticmethod
    def _applied(conn: Connection, update_id: str) -> bool:
        return conn.execute(_APPLIED, {"update_id": update_id}).scalar_one_or_none() is not None

    @staticmethod
    def _status_in(conn: Connection, order_id: str) -> OrderStatus:
        status = conn.execute(prepared.ORDER_STATUS, {"order_id": order_id}).scalar_one_or_none()
        if status is None:
            raise OrderNotFound(f"no order with id {order_id!r}")
        return OrderStatus(status)

    def line_check(self, order_id: str, update_id: str) -> LineCheck:
        """What applying one of an order's stock updates is checked against, in one
        read: the order's status, its lines, and whether the update was applied."""
        params = {"order_id": order_id}
        with reading(self.engine) as conn:
            status = self._status_in(conn, order_id)
            lines = conn.execute(prepared.STATE_LINES, params).all()
            applied = self._applied(conn, update_id)
        return LineCheck(status, {sku: int(q) for sku, q in lines}, applied)

    def mark_dead_lettered(self, update_id: str, *, result: str = "DEAD_LETTERED") -> None:
        """An update that will not be applied (dead-lettered or revoked) is no
        longer in flight."""
        with self.engine.begin() as conn:
            conn.execute(update(t.stock_updates).where(
                t.stock_updates.c.update_id == update_id, t.stock_updates.c.applied_at.is_(None),
            ).values(result=result))

    def in_flight(self) -> list[ProductInFlight]:
        """Per product: updates published and not yet applied, and the oldest's age."""
        stamp = now()
        pending = t.stock_updates.c.applied_at.is_(None) & t.stock_updates.c.result.is_(None)
        with reading(self.engine) as conn:
            rows = conn.execute(
                select(t.stock_updates.c.sku, func.count().label("updates"),
                       func.min(t.stock_updates.c.published_at).label("oldest"))
                .where(pending).group_by(t.stock_updates.c.sku).order_by(t.stock_updates.c.sku)
            ).mappings().all()
        return [ProductInFlight(row["sku"], int(row["updates"]),
                                round((stamp - aware(row["oldest"])).total_seconds(), 3))
                for row in rows]

    def ordering_violations(self) -> list[str]:
        """Products whose updates were applied out of their SQS sequence order."""
        with reading(self.engine) as conn:
            rows = conn.execute(
                select(t.stock_movements.c.sku, t.stock_movements.c.sqs_sequence)
                .where(t.stock_movements.c.sqs_sequence.is_not(None))
                .order_by(t.stock_movements.c.sku, t.stock_movements.c.id)).all()
        last: dict[str, int] = {}
        problems = []
        for sku, sequence in rows:
            number = int(sequence)
            if sku in last and number <= last[sku]:
                problems.append(f"{sku}: update with sequence {sequence} applied after "
                                f"{last[sku]}")
            last[sku] = max(number, last.get(sku, number))
        return problems

    # ------------------------------------------------------------ inventory
    def reserve_line(self, order_id: str, sku: str, quantity: int, *,
                     sequence: str | None, hold_s: int, low_stock_below: int = 0,
                     refuse: bool = False, within: Within | None = None) -> str:
        """Reserve one line; returns the line's state (RESERVED or REJECTED).

        Idempotent: a line already decided keeps its decision. The stock
        UPDATE carries its own `available >= quantity` guard, so stock can
        never go negative whatever the delivery order. `refuse`: the order no
        longer wants it (it is winding down): decided REJECTED, stock untouched.
        """
        stamp = now()
        u = StockUpdate(order_id, sku, quantity, StockOp.RESERVE)
        with self.engine.begin() as conn:
            state = conn.execute(_LINE_STATE, {"order_id": order_id, "sku": sku}
                                 ).scalar_one_or_none()
            if state is not None:
                if not self._applied(conn, u.update_id):
                    # Decided before this update came (a release overtook it): nothing
                    # to take, but it is an update of this product, recorded once.
                    conn.execute(insert(t.stock_movements).values(
                        sku=sku, kind="refuse", delta_available=0, delta_reserved=0,
                        delta_shipped=0, order_id=order_id, sqs_sequence=sequence,
                        applied_at=stamp))
                    self._mark_applied(conn, u, sequence=sequence, result=str(state),
                                       stamp=stamp)
                if within is not None:
                    within(conn, str(state))
                return str(state)
            taken = not refuse and conn.execute(
                _TAKE, {"product": sku, "quantity": quantity}).rowcount == 1
            state = "RESERVED" if taken else "REJECTED"
            conn.execute(prepared.insert_into(t.reservations), {
                "order_id": order_id, "sku": sku, "quantity": quantity, "state": state,
                "reserve_sequence": sequence, "updated_at": stamp,
                "expires_at": stamp + timedelta(seconds=hold_s) if taken else None})
            conn.execute(prepared.insert_into(t.stock_movements), {
                "sku": sku, "kind": "reserve" if taken else "refuse",
                "delta_available": -quantity if taken else 0,
                "delta_reserved": quantity if taken else 0, "delta_shipped": 0,
                "order_id": order_id, "sqs_sequence": sequence, "applied_at": stamp})
            self._mark_applied(conn, u, sequence=sequence, result=state, stamp=stamp)
            if not refuse:
                self._alert_on_stock(conn, sku, order_id, quantity, taken, low_stock_below)
            if within is not None:
                within(conn, state)
        return state

    @staticmethod
    def _alert_on_stock(conn: Connection, sku: str, order_id: str, quantity: int,
                        taken: bool, low_stock_below: int) -> None:
        """Out of stock on a refusal; low stock when this reservation crossed the line."""
        available = int(conn.execute(_AVAILABLE, {"product": sku}).scalar_one_or_none() or 0)
        if not taken:
            outbox.stock_alert(conn, "out_of_stock", sku, available=available,
                               order_id=order_id)
        elif available < low_stock_below <= available + quantity:
            outbox.stock_alert(conn, "low_stock", sku, available=available, order_id=order_id)

    def release_line(self, order_id: str, sku: str, *, sequence: str | None,
                     within: Within | None = None) -> str:
        """Give a reserved line back to stock; idempotent. Returns the line's state."""
        stamp = now()
        u = StockUpdate(order_id, sku, 0, StockOp.RELEASE)
        with self.engine.begin() as conn:
            row = conn.execute(select(t.reservations).where(
                t.reservations.c.order_id == order_id, t.reservations.c.sku == sku)
            ).mappings().first()
            if row is not None and row["state"] != "RESERVED":
                # Nothing to give back (refused, shipped or released before),
                # but it is an update of this product: recorded once.
                if not self._applied(conn, u.update_id):
                    self._release_movement(conn, sku, 0, order_id, sequence, stamp)
                    self._mark_applied(conn, u, sequence=sequence, result=str(row["state"]),
                                       stamp=stamp)
                if within is not None:
                    within(conn, str(row["state"]))
                return str(row["state"])
            quantity = 0
            if row is None:
                # Never reserved (a release overtook nothing): record the
                # decision so a late reserve of this line is refused.
                conn.execute(insert(t.reservations).values(
                    order_id=order_id, sku=sku, quantity=0, state="RELEASED",
                    release_sequence=sequence, updated_at=stamp))
            else:
                quantity = row["quantity"]
                conn.execute(update(t.reservations).where(
                    t.reservations.c.order_id == order_id, t.reservations.c.sku == sku,
                    t.reservations.c.state == "RESERVED",
                ).values(state="RELEASED", release_sequence=sequence, updated_at=stamp))
                conn.execute(update(t.stock).where(t.stock.c.sku == sku).values(
                    available=t.stock.c.available + quantity,
                    reserved=t.stock.c.reserved - quantity))
            self._release_movement(conn, sku, quantity, order_id, sequence, stamp)
            self._mark_applied(conn, u, sequence=sequence, result="RELEASED", stamp=stamp)
            if within is not None:
                within(conn, "RELEASED")
        return "RELEASED"

    @staticmethod
    def _release_movement(conn: Connection, sku: str, quantity: int, order_id: str,
                          sequence: str | None, stamp: datetime) -> None:
        conn.execute(insert(t.stock_movements).values(
            sku=sku, kind="release", delta_available=quantity, delta_reserved=-quantity,
            delta_shipped=0, order_id=order_id, sqs_sequence=sequence, applied_at=stamp))

    def restock(self, restock_id: str, sku: str, quantity: int, *,
                sequence: str | None) -> bool:
        """Add delivered stock, in the product's FIFO order; idempotent per restock id.

        True when applied by this call, False when it was applied before.
        """
        stamp = now()
        u = StockUpdate(restock_id, sku, quantity, StockOp.RESTOCK)
        with self.engine.begin() as conn:
            if self._applied(conn, u.update_id):
                return False
            found = conn.execute(update(t.stock).where(t.stock.c.sku == sku).values(
                available=t.stock.c.available + quantity)).rowcount
            if not found:
                raise ValueError(f"restock {restock_id}: {sku} is not in the catalog")
            conn.execute(insert(t.stock_movements).values(
                sku=sku, kind="restock", delta_available=quantity, delta_reserved=0,
                delta_shipped=0, order_id=None, sqs_sequence=sequence, applied_at=stamp))
            self._mark_applied(conn, u, sequence=sequence, result="RESTOCKED", stamp=stamp)
        return True

    def line_states(self, order_id: str) -> dict[str, str]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.reservations.c.sku, t.reservations.c.state).where(
                t.reservations.c.order_id == order_id)).all()
        return {sku: state for sku, state in rows}

    def reservations(self, order_id: str) -> list[ReservationRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.reservations).where(
                t.reservations.c.order_id == order_id).order_by(t.reservations.c.sku))
            return [ReservationRow.of(r) for r in rows.mappings()]

    def ship_lines(self, conn: Connection, order_id: str) -> None:
        """Move every reserved line of an order to shipped (inside the caller's transaction)."""
        rows = conn.execute(_RESERVED_LINES, {"order_id": order_id}).all()
        stamp = now()
        for sku, quantity in rows:
            conn.execute(_SHIP_LINE, {"order": order_id, "product": sku, "at": stamp})
            conn.execute(_SHIP_STOCK, {"product": sku, "quantity": quantity})
            conn.execute(prepared.insert_into(t.stock_movements), {
                "sku": sku, "kind": "ship", "delta_available": 0, "delta_reserved": -quantity,
                "delta_shipped": quantity, "order_id": order_id, "applied_at": stamp})
