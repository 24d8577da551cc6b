"""Stock and the per-product FIFO ledger.

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
from typing import NamedTuple

from sqlalchemy import BindParameter, Connection, Engine, bindparam, func, insert, select, update

from pipeline.domain import OrderStatus, StockOp, StockUpdate
from pipeline.errors import OrderNotFound
from pipeline.store import outbox, prepared
from pipeline.store import schema as t
from pipeline.store.clock import aware, now
from pipeline.store.db import reading
from pipeline.store.rows import ProductInFlight, ReservationRow, StockUpdateRow

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
         reserved=t.stock.c.reserved + bindparam("quantity")).returning(t.stock.c.available)
_SHIP_LINES = update(t.reservations).where(
    t.reservations.c.order_id == bindparam("order"), t.reservations.c.state == "RESERVED",
).values(state="SHIPPED", updated_at=bindparam("at")).returning(
    t.reservations.c.sku, t.reservations.c.quantity)
_SHIP_STOCK = update(t.stock).where(t.stock.c.sku == bindparam("product")).values(
    reserved=t.stock.c.reserved - bindparam("quantity"),
    shipped=t.stock.c.shipped + bindparam("quantity"))
_AVAILABLE = select(t.stock.c.available).where(t.stock.c.sku == bindparam("product"))
# What applying a line update is checked against, in one statement: the order's
# status and priority, the quantity of its line for the product (NULL: no such
# line), and whether this update was applied before.
_LINE_CHECK = select(
    t.orders.c.status, t.orders.c.priority, t.order_lines.c.quantity,
    t.stock_updates.c.applied_at,
).select_from(
    t.orders.outerjoin(t.order_lines, (t.order_lines.c.order_id == t.orders.c.id)
                       & (t.order_lines.c.sku == bindparam("sku")))
    .outerjoin(t.stock_updates, t.stock_updates.c.update_id == bindparam("update_id"))
).where(t.orders.c.id == bindparam("order_id"))
# The order's status and every line of it with its reservation's state (NULL: not
# decided yet).
_LINE_DECISIONS = select(t.orders.c.status, t.order_lines.c.sku, t.order_lines.c.quantity,
                         t.reservations.c.state).select_from(
    t.orders.join(t.order_lines, t.order_lines.c.order_id == t.orders.c.id)
    .outerjoin(t.reservations, (t.reservations.c.order_id == t.order_lines.c.order_id)
               & (t.reservations.c.sku == t.order_lines.c.sku))
).where(t.orders.c.id == bindparam("order_id")).order_by(t.order_lines.c.sku)
_LOCK_ORDER = select(t.orders.c.id).where(
    t.orders.c.id == bindparam("order_id")).with_for_update()


class LineDecisions(NamedTuple):
    status: OrderStatus
    lines: tuple[tuple[str, int], ...]  # (product id, quantity), by product
    states: dict[str, str]  # product id -> reservation state, for the decided lines


class LineCheck(NamedTuple):
    status: OrderStatus
    quantity: int | None  # of the order's line for the product (None: no such line)
    applied: bool  # the update was applied before (this delivery repeats it)
    vip: bool


class StockLedger:
    engine: Engine

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
        prepared.insert_all_once(conn, t.stock_updates, [
            {"update_id": u.update_id, "sku": u.sku, "op": u.op.value, "ref": u.ref,
             "quantity": u.quantity, "published_at": stamp} for u in updates])

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

    def line_check(self, order_id: str, sku: str, update_id: str) -> LineCheck:
        """What applying one of an order's stock updates is checked against, in one
        statement: the order's status, its line for `sku`, whether the update was
        applied."""
        with reading(self.engine) as conn:
            row = conn.execute(_LINE_CHECK, {"order_id": order_id, "sku": sku,
                                             "update_id": update_id}).first()
        if row is None:
            raise OrderNotFound(f"no order with id {order_id!r}")
        return LineCheck(OrderStatus(row.status),
                         None if row.quantity is None else int(row.quantity),
                         row.applied_at is not None, row.priority == "vip")

    @staticmethod
    def line_decisions(conn: Connection, order_id: str) -> LineDecisions | None:
        """Inside a line's transaction: the order's status and every line of it with
        its reservation's state (None: undecided); None for an order without lines.

        On PostgreSQL the order's row is locked first, in a statement of its own: of
        two lines of one order decided at once, the later then reads after the
        earlier committed (a lock taken by the reading statement itself would not
        do: READ COMMITTED re-reads only the locked row after the wait, the joined
        reservations stay as of before it). On SQLite, BEGIN IMMEDIATE has
        serialized the two transactions already."""
        params = {"order_id": order_id}
        if conn.dialect.name == "postgresql":
            conn.execute(_LOCK_ORDER, params)
        rows = conn.execute(_LINE_DECISIONS, params).all()
        if not rows:
            return None
        return LineDecisions(OrderStatus(rows[0].status),
                             tuple((r.sku, int(r.quantity)) for r in rows),
                             {r.sku: r.state for r in rows if r.state is not None})

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
            left = None if refuse else conn.execute(
                _TAKE, {"product": sku, "quantity": quantity}).scalar_one_or_none()
            taken = left is not None
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
                self._alert_on_stock(conn, sku, order_id, quantity, left, low_stock_below)
            if within is not None:
                within(conn, state)
        return state

    @staticmethod
    def _alert_on_stock(conn: Connection, sku: str, order_id: str, quantity: int,
                        left: int | None, low_stock_below: int) -> None:
        """Out of stock on a refusal (`left` None); low stock when this reservation
        crossed the line (`left`: what it left available)."""
        if left is None:
            available = int(conn.execute(_AVAILABLE, {"product": sku}).scalar_one_or_none() or 0)
        else:
            available = left
        if left is None:
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
        """Move every reserved line of an order to shipped (inside the caller's transaction):
        three statements whatever the number of lines."""
        stamp = now()
        # Stock rows in product order: two transactions never wait on each other's rows.
        shipped = sorted(conn.execute(_SHIP_LINES, {"order": order_id, "at": stamp}).all())
        if not shipped:
            return
        conn.execute(_SHIP_STOCK, [{"product": sku, "quantity": q} for sku, q in shipped])
        conn.execute(prepared.insert_into(t.stock_movements), [
            {"sku": sku, "kind": "ship", "delta_available": 0, "delta_reserved": -quantity,
             "delta_shipped": quantity, "order_id": order_id, "applied_at": stamp}
            for sku, quantity in shipped])
