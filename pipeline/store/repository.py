"""Store operations. The only code that changes an order's status.

Every write that a redelivered step could repeat is guarded by a unique key
or a conditional UPDATE, so repeating it has no second effect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, RowMapping, Update, func, select, update

from pipeline.domain import IN_PROGRESS, WINDING_DOWN, Order, OrderStatus, can_transition
from pipeline.errors import OrderConflict, OrderNotFound
from pipeline.store import outbox, prepared
from pipeline.store import schema as t
from pipeline.store.catalog import Catalog
from pipeline.store.clock import aware_or_none, now
from pipeline.store.coordination import Coordination
from pipeline.store.db import reading
from pipeline.store.prepared import insert_once
from pipeline.store.rows import (
    Claim,
    LineRow,
    NotificationRow,
    OrderRow,
    OrderSummary,
    PaymentRow,
    ShipmentRow,
    StepRow,
)
from pipeline.store.stock import StockLedger
from pipeline.workflow import OrderState


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class _Change(NamedTuple):
    """One compare-and-set of an order's status, with the event that announces it."""

    stmt: Update
    params: dict[str, Any]
    order_id: str
    to: OrderStatus
    outcome: OrderStatus | None
    reasons: list[str] | None

    @classmethod
    def of(cls, order_id: str, to: OrderStatus, expected: Iterable[OrderStatus], *,
           outcome: OrderStatus | None = None, reasons: Sequence[str] | None = None,
           unless_cancel_requested: bool = False, returning: bool = False) -> _Change:
        expected = list(expected)
        allowed = [s.value for s in expected if can_transition(s, to)]
        if not allowed:
            raise ValueError(f"no transition to {to} from {expected}")
        params: dict[str, Any] = {"order_id": order_id, "to": to.value, "at": now()}
        if outcome is not None:
            params["new_outcome"] = outcome.value
        bounded = None if reasons is None else outbox.bounded_reasons(reasons)
        if bounded is not None:
            params["new_reasons"] = bounded
        stmt = prepared.transition(
            tuple(allowed), outcome=outcome is not None, reasons=bounded is not None,
            terminal=to.terminal,
            compensating_from=to is OrderStatus.COMPENSATING and not set(expected) & WINDING_DOWN,
            unless_cancel_requested=unless_cancel_requested, returning=returning)
        return cls(stmt, params, order_id, to, outcome, bounded)

    def moved(self, conn: Connection) -> bool:
        return self._announce(conn, conn.execute(self.stmt, self.params).rowcount == 1)

    def moved_row(self, conn: Connection) -> RowMapping | None:
        """With `returning`: the order as moved, or None."""
        row = conn.execute(self.stmt, self.params).mappings().first()
        self._announce(conn, row is not None)
        return row

    def _announce(self, conn: Connection, moved: bool) -> bool:
        if moved:  # announced with the change itself (transactional outbox)
            outbox.status_changed(conn, self.order_id, self.to.value, terminal=self.to.terminal,
                                  outcome=self.outcome.value if self.outcome else None,
                                  reasons=self.reasons)
        return moved


class Store(StockLedger, Catalog, Coordination):
    """Orders, their timeline and ledgers, catalog and stock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---------------------------------------------------------------- orders
    def create_order(self, order: Order, *, trace_context: str | None = None) -> bool:
        """Store a new order in RECEIVED. False if the same order already exists.

        The primary key decides between concurrent submitters (on SQLite and on
        PostgreSQL alike): the loser of the insert compares the stored
        document's hash and raises OrderConflict when it differs.
        """
        document = order.document()
        digest = document_hash(document)
        stamp = now()
        with self.engine.begin() as conn:
            inserted = insert_once(conn, t.orders, {
                "id": order.order_id, "customer_id": order.customer_id,
                "priority": order.priority, "status": OrderStatus.RECEIVED.value,
                "reasons": [], "currency": order.currency, "total_amount": order.total_amount,
                "document": document, "document_hash": digest,
                "created_at": stamp, "updated_at": stamp, "trace_context": trace_context,
            })
            if not inserted:
                existing = conn.execute(select(t.orders.c.document_hash).where(
                    t.orders.c.id == order.order_id)).scalar_one()
                if existing != digest:
                    raise OrderConflict(
                        f"order {order.order_id} already exists with different content")
                return False
            # Lines with the same product are merged by validation's rule
            # (duplicates are rejected), so the first wins here.
            lines: dict[str, dict[str, Any]] = {}
            for item in order.items:
                lines.setdefault(item.product_id, {
                    "order_id": order.order_id, "sku": item.product_id,
                    "quantity": item.quantity, "price": item.price})
            if lines:  # parse_order requires one; an Order built by hand might not
                conn.execute(prepared.insert_into(t.order_lines), list(lines.values()))
        return True

    def order(self, order_id: str, *, conn: Connection | None = None) -> OrderRow:
        params = {"order_id": order_id}
        if conn is not None:
            row = conn.execute(prepared.ORDER_ROW, params).mappings().first()
        else:
            with reading(self.engine) as own:
                row = own.execute(prepared.ORDER_ROW, params).mappings().first()
        if row is None:
            raise OrderNotFound(f"no order with id {order_id!r}")
        return OrderRow.of(row)

    def order_state(self, order_id: str) -> OrderState:
        """Everything the workflow decides on, read in one snapshot."""
        params = {"order_id": order_id}
        with reading(self.engine) as conn:
            row = conn.execute(prepared.STATE_ORDER, params).first()
            if row is None:
                raise OrderNotFound(f"no order with id {order_id!r}")
            lines = conn.execute(prepared.STATE_LINES, params).all()
            states = conn.execute(prepared.STATE_RESERVATIONS, params).all()
            updates = conn.execute(prepared.STATE_UPDATES, params).all()
            done = conn.execute(prepared.STATE_DONE, params).scalars().all()
            payments = conn.execute(prepared.STATE_PAYMENTS, params).all()
        return OrderState(
            order_id=order_id, status=OrderStatus(row.status),
            outcome=OrderStatus(row.outcome) if row.outcome else None,
            compensating_from=(OrderStatus(row.compensating_from)
                               if row.compensating_from else None),
            vip=row.priority == "vip",
            lines=tuple((sku, int(quantity)) for sku, quantity in lines),
            line_states={sku: str(state) for sku, state in states},
            published=frozenset(u for u, _ in updates),
            applied=frozenset(u for u, applied in updates if applied is not None),
            done=frozenset(str(step) for step in done),
            payments=tuple((str(kind), str(amount)) for kind, amount in payments))

    def status(self, order_id: str) -> OrderStatus:
        with reading(self.engine) as conn:
            return self._status_in(conn, order_id)

    def lines(self, order_id: str) -> list[LineRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(prepared.ORDER_LINES, {"order_id": order_id}).mappings().all()
        return [LineRow.of(r) for r in rows]

    def transition(
        self,
        order_id: str,
        to: OrderStatus,
        *,
        expected: Iterable[OrderStatus],
        outcome: OrderStatus | None = None,
        reasons: Sequence[str] | None = None,
        conn: Connection | None = None,
        unless_cancel_requested: bool = False,
    ) -> bool:
        """Move an order from one of `expected` to `to`; False if it was not there.

        The WHERE clause makes this a compare-and-set, so of two workers racing
        on the same order exactly one wins. Entering COMPENSATING from the
        forward path records the status it left (`compensating_from`: what
        there is to undo); `unless_cancel_requested` makes the move lose to a
        cancellation recorded meanwhile.
        """
        change = _Change.of(order_id, to, expected, outcome=outcome, reasons=reasons,
                            unless_cancel_requested=unless_cancel_requested)
        if conn is not None:
            return change.moved(conn)
        with self.engine.begin() as own:
            return change.moved(own)

    def claim(self, conn: Connection, order_id: str, to: OrderStatus, *,
              expected: OrderStatus) -> OrderRow | None:
        """`transition` that returns the order it moved (as moved), or None: a step
        claims its order and reads it in one statement."""
        row = _Change.of(order_id, to, [expected], returning=True).moved_row(conn)
        return None if row is None else OrderRow.of(row)

    def claim_with_lines(self, order_id: str, to: OrderStatus, *, expected: OrderStatus,
                         payments: bool = False) -> Claim | None:
        """Claim the order and read its lines (and its ledger) in one transaction; None
        when it was not in `expected` (the caller reads it to see why)."""
        with self.engine.begin() as conn:
            row = self.claim(conn, order_id, to, expected=expected)
            if row is None:
                return None
            params = {"order_id": order_id}
            lines = [LineRow.of(r) for r in conn.execute(prepared.ORDER_LINES, params).mappings()]
            ledger = ([PaymentRow.of(r) for r in conn.execute(prepared.PAYMENTS, params).mappings()]
                      if payments else [])
        return Claim(row, lines, ledger)

    def resume_compensation(self, order_id: str) -> bool:
        """A compensation step runs again for an order that was waiting for attention."""
        return self.transition(order_id, OrderStatus.COMPENSATING,
                               expected=[OrderStatus.NEEDS_ATTENTION])

    def order_resumed(self, order_id: str) -> OrderRow:
        """The order, for a compensation step: one that was waiting for attention
        resumes compensating first. The write happens only then, so the common
        case costs a read, not a write transaction."""
        row = self.order(order_id)
        if row.status is not OrderStatus.NEEDS_ATTENTION:
            return row
        self.resume_compensation(order_id)
        return self.order(order_id)

    def request_cancel(self, order_id: str, reason: str, *, while_in: OrderStatus) -> bool:
        """Record a cancellation for the step that owns the order to honour; False
        when the order is no longer in `while_in` (or one was recorded already)."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(t.orders).where(
                t.orders.c.id == order_id, t.orders.c.status == while_in.value,
                t.orders.c.cancel_requested.is_(None),
            ).values(cancel_requested=reason[:500], updated_at=now())).rowcount == 1)

    def cancel_requested(self, conn: Connection, order_id: str) -> str | None:
        return conn.execute(select(t.orders.c.cancel_requested).where(
            t.orders.c.id == order_id)).scalar_one_or_none()

    def trace_context(self, order_id: str) -> str | None:
        """The traceparent of the order's root span (pipeline.tracing); None when off."""
        with reading(self.engine) as conn:
            value = conn.execute(select(t.orders.c.trace_context).where(
                t.orders.c.id == order_id)).scalar_one_or_none()
        return str(value) if value is not None else None

    def list_orders(self, status: OrderStatus | None = None,
                    limit: int = 1000) -> list[OrderSummary]:
        query = select(t.orders.c.id, t.orders.c.status, t.orders.c.priority,
                       t.orders.c.total_amount, t.orders.c.currency, t.orders.c.created_at,
                       t.orders.c.terminal_at).order_by(t.orders.c.created_at).limit(limit)
        if status:
            query = query.where(t.orders.c.status == status.value)
        with reading(self.engine) as conn:
            return [OrderSummary.of(r) for r in conn.execute(query).mappings()]

    def count_by_status(self) -> dict[str, int]:
        with reading(self.engine) as conn:
            rows = conn.execute(
                select(t.orders.c.status, func.count()).group_by(t.orders.c.status)
            ).all()
        return {status: count for status, count in rows}

    def orders_in_progress(self) -> int:
        """Orders admitted and not yet ended (pipeline.worker.intake), by the status index."""
        with reading(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(t.orders).where(
                t.orders.c.status.in_(sorted(IN_PROGRESS)))).scalar_one())

    # -------------------------------------------------------------- timeline
    def record_step(self, order_id: str, step: str, attempt: int, worker: str, *,
                    started: datetime, outcome: str, detail: str | None = None,
                    conn: Connection | None = None) -> None:
        """One attempt of a step, written when it ends (given `conn`, inside the
        transaction that made the step's change)."""
        row = {"order_id": order_id, "step": step, "attempt": attempt, "started_at": started,
               "finished_at": now(), "outcome": outcome, "detail": detail, "worker": worker}
        if conn is not None:
            conn.execute(prepared.insert_into(t.steps), row)
            return
        with self.engine.begin() as own:
            own.execute(prepared.insert_into(t.steps), row)

    def step_done(self, order_id: str, step: str) -> bool:
        with reading(self.engine) as conn:
            found = conn.execute(select(t.steps.c.id).where(
                t.steps.c.order_id == order_id, t.steps.c.step == step,
                t.steps.c.outcome.in_(["ok", "repeated"])).limit(1)).first()
        return found is not None

    def first_failure(self, order_id: str, step: str) -> datetime | None:
        """When this step of the order first failed (retry, failure or error)."""
        with reading(self.engine) as conn:
            stamp = conn.execute(select(func.min(t.steps.c.started_at)).where(
                t.steps.c.order_id == order_id, t.steps.c.step == step,
                t.steps.c.outcome.in_(("retry", "failed", "error")))).scalar_one_or_none()
        return aware_or_none(stamp)

    def timeline(self, order_id: str) -> list[StepRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.steps).where(t.steps.c.order_id == order_id)
                                .order_by(t.steps.c.id)).mappings().all()
        return [StepRow.of(r) for r in rows]

    # ---------------------------------------------------------------- ledger
    def record_payment(self, conn: Connection, *, order_id: str, kind: str, amount: Decimal,
                       currency: str, gateway_ref: str | None, key: str) -> bool:
        inserted = insert_once(conn, t.payments, {
            "order_id": order_id, "kind": kind, "amount": amount, "currency": currency,
            "gateway_ref": gateway_ref, "idempotency_key": key, "created_at": now()})
        if inserted:
            outbox.payment_recorded(conn, order_id, kind, amount, currency, gateway_ref)
        return inserted

    def payment_entries(self, order_id: str, *,
                        conn: Connection | None = None) -> list[PaymentRow]:
        params = {"order_id": order_id}
        if conn is not None:
            return [PaymentRow.of(r) for r in conn.execute(prepared.PAYMENTS, params).mappings()]
        with reading(self.engine) as own:
            return [PaymentRow.of(r) for r in own.execute(prepared.PAYMENTS, params).mappings()]

    def record_shipment(self, conn: Connection, order_id: str, carrier: str,
                        tracking_number: str) -> bool:
        return insert_once(conn, t.shipments, {
            "order_id": order_id, "carrier": carrier, "tracking_number": tracking_number,
            "created_at": now()})

    def cancel_shipment(self, conn: Connection, order_id: str) -> bool:
        return bool(conn.execute(update(t.shipments).where(
            t.shipments.c.order_id == order_id, t.shipments.c.cancelled_at.is_(None),
        ).values(cancelled_at=now())).rowcount)

    def shipment(self, order_id: str) -> ShipmentRow | None:
        with reading(self.engine) as conn:
            row = conn.execute(select(t.shipments).where(t.shipments.c.order_id == order_id)
                               ).mappings().first()
        return ShipmentRow.of(row) if row else None

    def record_notification(self, conn: Connection, *, order_id: str, template: str,
                            channel: str, recipient: str, body: str) -> bool:
        return insert_once(conn, t.notifications, {
            "order_id": order_id, "template": template, "channel": channel,
            "recipient": recipient, "body": body, "created_at": now()})

    def notifications(self, order_id: str) -> list[NotificationRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.notifications).where(
                t.notifications.c.order_id == order_id).order_by(t.notifications.c.id))
            return [NotificationRow.of(r) for r in rows.mappings()]
