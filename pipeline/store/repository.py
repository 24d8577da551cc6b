"""Store operations. The only code that changes an order's status.

Every write that a redelivered step could repeat is guarded by a unique key
or a conditional UPDATE, so repeating it has no second effect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pipeline.domain import Order, OrderStatus, can_transition
from pipeline.errors import OrderConflict, OrderNotFound
from pipeline.store import schema as t


def now() -> datetime:
    return datetime.now(UTC)


def _insert_once(conn: Connection, table: Any, values: dict[str, Any]) -> bool:
    """Insert unless a row with the same unique key exists; True if inserted."""
    try:
        with conn.begin_nested():
            conn.execute(insert(table).values(**values))
        return True
    except IntegrityError:
        return False


class Store:
    """Orders, their timeline and ledgers, catalog and stock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---------------------------------------------------------------- orders
    def create_order(self, order: Order) -> bool:
        """Store a new order in RECEIVED. False if the same order already exists."""
        document = order.document()
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        stamp = now()
        with self.engine.begin() as conn:
            existing = conn.execute(
                select(t.orders.c.document_hash).where(t.orders.c.id == order.order_id)
            ).scalar_one_or_none()
            if existing is not None:
                if existing != digest:
                    raise OrderConflict(
                        f"order {order.order_id} already exists with different content"
                    )
                return False
            inserted = _insert_once(conn, t.orders, {
                "id": order.order_id, "customer_id": order.customer_id,
                "priority": order.priority, "status": OrderStatus.RECEIVED.value,
                "reasons": [], "currency": order.currency, "total_amount": order.total_amount,
                "document": document, "document_hash": digest,
                "created_at": stamp, "updated_at": stamp,
            })
            if not inserted:
                return False
            # Lines with the same product are merged by validation's rule
            # (duplicates are rejected), so the first wins here.
            seen: set[str] = set()
            for item in order.items:
                if item.product_id in seen:
                    continue
                seen.add(item.product_id)
                conn.execute(insert(t.order_lines).values(
                    order_id=order.order_id, sku=item.product_id,
                    quantity=item.quantity, price=item.price,
                ))
        return True

    def order(self, order_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.orders).where(t.orders.c.id == order_id)).mappings().first()
        if row is None:
            raise OrderNotFound(f"no order with id {order_id!r}")
        return dict(row)

    def status(self, order_id: str) -> OrderStatus:
        return OrderStatus(self.order(order_id)["status"])

    def lines(self, order_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.order_lines).where(t.order_lines.c.order_id == order_id)
                .order_by(t.order_lines.c.sku)
            ).mappings().all()
        return [dict(r) for r in rows]

    def transition(
        self,
        order_id: str,
        to: OrderStatus,
        *,
        expected: Iterable[OrderStatus],
        outcome: OrderStatus | None = None,
        reasons: Sequence[str] | None = None,
        conn: Connection | None = None,
    ) -> bool:
        """Move an order from one of `expected` to `to`; False if it was not there.

        The WHERE clause makes this a compare-and-set, so of two workers racing
        on the same order exactly one wins.
        """
        allowed = [s.value for s in expected if can_transition(s, to)]
        if not allowed:
            raise ValueError(f"no transition to {to} from {list(expected)}")
        values: dict[str, Any] = {"status": to.value, "updated_at": now()}
        if outcome is not None:
            values["outcome"] = outcome.value
        if reasons is not None:
            values["reasons"] = list(reasons)
        if to.terminal:
            values["terminal_at"] = values["updated_at"]
        stmt = (update(t.orders)
                .where(t.orders.c.id == order_id, t.orders.c.status.in_(allowed))
                .values(**values))
        if conn is not None:
            return conn.execute(stmt).rowcount == 1
        with self.engine.begin() as own:
            return own.execute(stmt).rowcount == 1

    def list_orders(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = select(t.orders.c.id, t.orders.c.status, t.orders.c.priority,
                       t.orders.c.total_amount, t.orders.c.currency, t.orders.c.created_at,
                       t.orders.c.terminal_at).order_by(t.orders.c.created_at).limit(limit)
        if status:
            query = query.where(t.orders.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count_by_status(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.orders.c.status, func.count()).group_by(t.orders.c.status)
            ).all()
        return {status: count for status, count in rows}

    # -------------------------------------------------------------- timeline
    def begin_step(self, order_id: str, step: str, attempt: int, worker: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(t.steps).values(
                order_id=order_id, step=step, attempt=attempt, started_at=now(), worker=worker,
            ))
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_step(self, step_id: int, outcome: str, detail: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t.steps).where(t.steps.c.id == step_id)
                         .values(finished_at=now(), outcome=outcome, detail=detail))

    def step_done(self, order_id: str, step: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(select(t.steps.c.id).where(
                t.steps.c.order_id == order_id, t.steps.c.step == step,
                t.steps.c.outcome.in_(["ok", "repeated"])).limit(1)).first()
        return found is not None

    def timeline(self, order_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.steps).where(t.steps.c.order_id == order_id)
                                .order_by(t.steps.c.id)).mappings().all()
        return [dict(r) for r in rows]

    # --------------------------------------------------------- catalog/stock
    def set_stock(self, sku: str, quantity: int, *, price: Decimal | None = None,
                  name: str | None = None, currency: str = "USD") -> dict[str, int]:
        """Set a product's available stock (adding the product when unknown)."""
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

    def catalog(self, skus: Iterable[str]) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.products).where(t.products.c.sku.in_(list(skus))))
            return {r.sku: dict(r._mapping) for r in rows}

    def stock_levels(self) -> list[dict[str, Any]]:
        query = (select(t.products.c.sku, t.products.c.price, t.stock.c.available,
                        t.stock.c.reserved, t.stock.c.shipped)
                 .join(t.stock, t.stock.c.sku == t.products.c.sku).order_by(t.products.c.sku))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def stock_history(self, sku: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.stock_movements).where(t.stock_movements.c.sku == sku)
                                .order_by(t.stock_movements.c.id)).mappings().all()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------ inventory
    def reserve_line(self, order_id: str, sku: str, quantity: int, *,
                     sequence: str | None, hold_s: int) -> str:
        """Reserve one line; returns the line's state (RESERVED or REJECTED).

        Idempotent: a line already decided keeps its decision. The stock
        UPDATE carries its own `available >= quantity` guard, so stock can
        never go negative whatever the delivery order.
        """
        stamp = now()
        with self.engine.begin() as conn:
            state = conn.execute(select(t.reservations.c.state).where(
                t.reservations.c.order_id == order_id, t.reservations.c.sku == sku)
            ).scalar_one_or_none()
            if state is not None:
                return str(state)
            taken = conn.execute(
                update(t.stock).where(t.stock.c.sku == sku, t.stock.c.available >= quantity)
                .values(available=t.stock.c.available - quantity,
                        reserved=t.stock.c.reserved + quantity)
            ).rowcount == 1
            state = "RESERVED" if taken else "REJECTED"
            conn.execute(insert(t.reservations).values(
                order_id=order_id, sku=sku, quantity=quantity, state=state,
                reserve_sequence=sequence, updated_at=stamp,
                expires_at=stamp + timedelta(seconds=hold_s) if taken else None))
            if taken:
                conn.execute(insert(t.stock_movements).values(
                    sku=sku, kind="reserve", delta_available=-quantity, delta_reserved=quantity,
                    delta_shipped=0, order_id=order_id, sqs_sequence=sequence, applied_at=stamp))
        return state

    def release_line(self, order_id: str, sku: str, *, sequence: str | None,
                     kind: str = "release") -> str:
        """Give a reserved line back to stock; idempotent. Returns the line's state."""
        stamp = now()
        with self.engine.begin() as conn:
            row = conn.execute(select(t.reservations).where(
                t.reservations.c.order_id == order_id, t.reservations.c.sku == sku)
            ).mappings().first()
            if row is None:
                # Never reserved (a release overtook nothing): record the
                # decision so a late reserve of this line is refused.
                conn.execute(insert(t.reservations).values(
                    order_id=order_id, sku=sku, quantity=0, state="RELEASED",
                    release_sequence=sequence, updated_at=stamp))
                return "RELEASED"
            if row["state"] != "RESERVED":
                return str(row["state"])
            quantity = row["quantity"]
            conn.execute(update(t.reservations).where(
                t.reservations.c.order_id == order_id, t.reservations.c.sku == sku,
                t.reservations.c.state == "RESERVED",
            ).values(state="RELEASED", release_sequence=sequence, updated_at=stamp))
            conn.execute(update(t.stock).where(t.stock.c.sku == sku).values(
                available=t.stock.c.available + quantity, reserved=t.stock.c.reserved - quantity))
            conn.execute(insert(t.stock_movements).values(
                sku=sku, kind=kind, delta_available=quantity, delta_reserved=-quantity,
                delta_shipped=0, order_id=order_id, sqs_sequence=sequence, applied_at=stamp))
        return "RELEASED"

    def line_states(self, order_id: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.reservations.c.sku, t.reservations.c.state).where(
                t.reservations.c.order_id == order_id)).all()
        return {sku: state for sku, state in rows}

    def reservations(self, order_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.reservations).where(
                t.reservations.c.order_id == order_id).order_by(t.reservations.c.sku))
            return [dict(r) for r in rows.mappings()]

    def ship_lines(self, conn: Connection, order_id: str) -> None:
        """Move every reserved line of an order to shipped (inside the caller's transaction)."""
        rows = conn.execute(select(t.reservations).where(
            t.reservations.c.order_id == order_id, t.reservations.c.state == "RESERVED")
        ).mappings().all()
        stamp = now()
        for row in rows:
            conn.execute(update(t.reservations).where(
                t.reservations.c.order_id == order_id, t.reservations.c.sku == row["sku"],
            ).values(state="SHIPPED", updated_at=stamp))
            conn.execute(update(t.stock).where(t.stock.c.sku == row["sku"]).values(
                reserved=t.stock.c.reserved - row["quantity"],
                shipped=t.stock.c.shipped + row["quantity"]))
            conn.execute(insert(t.stock_movements).values(
                sku=row["sku"], kind="ship", delta_available=0, delta_reserved=-row["quantity"],
                delta_shipped=row["quantity"], order_id=order_id, applied_at=stamp))

    # ---------------------------------------------------------------- ledger
    def record_payment(self, conn: Connection, *, order_id: str, kind: str, amount: Decimal,
                       currency: str, gateway_ref: str | None, key: str) -> bool:
        return _insert_once(conn, t.payments, {
            "order_id": order_id, "kind": kind, "amount": amount, "currency": currency,
            "gateway_ref": gateway_ref, "idempotency_key": key, "created_at": now()})

    def payment_entries(self, order_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.payments).where(t.payments.c.order_id == order_id)
                                .order_by(t.payments.c.id))
            return [dict(r) for r in rows.mappings()]

    def record_shipment(self, conn: Connection, order_id: str, carrier: str,
                        tracking_number: str) -> bool:
        return _insert_once(conn, t.shipments, {
            "order_id": order_id, "carrier": carrier, "tracking_number": tracking_number,
            "created_at": now()})

    def shipment(self, order_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.shipments).where(t.shipments.c.order_id == order_id)
                               ).mappings().first()
        return dict(row) if row else None

    def record_notification(self, conn: Connection, *, order_id: str, template: str,
                            channel: str, recipient: str, body: str) -> bool:
        return _insert_once(conn, t.notifications, {
            "order_id": order_id, "template": template, "channel": channel,
            "recipient": recipient, "body": body, "created_at": now()})

    def notifications(self, order_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.notifications).where(
                t.notifications.c.order_id == order_id).order_by(t.notifications.c.id))
            return [dict(r) for r in rows.mappings()]
