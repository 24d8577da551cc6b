"""The outbox: business events recorded with the change they report.

Events and their SNS message attributes (what subscription filter policies
match on) are decided here, next to the writes; `pipeline relay` moves them
to SNS. Every writer passes its open connection, so an event exists exactly
when its change was committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update

from pipeline import tracing
from pipeline.store import prepared
from pipeline.store import schema as t
from pipeline.store.clock import aware_or_none, now
from pipeline.store.db import reading

__all__ = ["OutboxEvent", "mark_published", "oldest_pending", "park", "parked", "pending",
           "purge_published", "record"]

MAX_REASONS = 20
MAX_REASON_CHARS = 300

ORDER_STATUS = "order-status"
PAYMENT_EVENTS = "payment-events"
INVENTORY_ALERTS = "inventory-alerts"
SYSTEM_HEALTH = "system-health"


def record(conn: Connection, topic: str, event_type: str, body: dict[str, Any],
           **attributes: str) -> None:
    stamp = now()
    event_id = uuid.uuid4().hex
    conn.execute(prepared.insert_into(t.outbox), {
        "event_id": event_id, "topic": topic, "event_type": event_type,
        "body": {"eventId": event_id, "eventType": event_type, "at": stamp.isoformat(), **body},
        "attributes": {"eventType": event_type, **attributes}, "created_at": stamp,
        "traceparent": tracing.current_traceparent()})


def record_now(engine: Engine, topic: str, event_type: str, body: dict[str, Any],
               **attributes: str) -> None:
    """For an event with no transaction of its own (a dead letter)."""
    with engine.begin() as conn:
        record(conn, topic, event_type, body, **attributes)


def bounded_reasons(reasons: Sequence[str]) -> list[str]:
    """At most MAX_REASONS reasons of at most MAX_REASON_CHARS characters each: what a
    customer, an event subscriber and SNS's 256 KiB can all take."""
    kept = [str(r)[:MAX_REASON_CHARS] for r in list(reasons)[:MAX_REASONS]]
    if len(reasons) > MAX_REASONS:
        kept.append(f"... and {len(reasons) - MAX_REASONS} more")
    return kept


# --- what each change announces ------------------------------------------------
def status_changed(conn: Connection, order_id: str, status: str, *, outcome: str | None,
                   reasons: Sequence[str] | None, terminal: bool) -> None:
    record(conn, ORDER_STATUS, "order.status_changed",
           {"orderId": order_id, "status": status, "outcome": outcome,
            "reasons": bounded_reasons(reasons or [])},
           status=status, terminal=str(terminal).lower())


def payment_recorded(conn: Connection, order_id: str, kind: str, amount: Any,
                     currency: str, reference: str | None) -> None:
    record(conn, PAYMENT_EVENTS, f"payment.{kind}",
           {"orderId": order_id, "kind": kind, "amount": str(amount), "currency": currency,
            "reference": reference},
           kind=kind, currency=currency)


def stock_alert(conn: Connection, kind: str, sku: str, *, available: int,
                order_id: str | None = None) -> None:
    record(conn, INVENTORY_ALERTS, f"inventory.{kind}",
           {"productId": sku, "available": available, "orderId": order_id},
           productId=sku, severity="critical" if kind == "out_of_stock" else "warning")


def health(conn: Connection, kind: str, body: dict[str, Any], severity: str) -> None:
    record(conn, SYSTEM_HEALTH, f"health.{kind}", body, severity=severity)


# --- the relay's side ----------------------------------------------------------
class OutboxEvent(dict[str, Any]):
    """A pending row: id, event_id, topic, event_type, body, attributes."""


def pending(engine: Engine, limit: int = 100) -> list[OutboxEvent]:
    with reading(engine) as conn:
        rows = conn.execute(select(t.outbox).where(t.outbox.c.published_at.is_(None),
                                                   t.outbox.c.parked_reason.is_(None))
                            .order_by(t.outbox.c.id).limit(limit)).mappings().all()
    return [OutboxEvent(row) for row in rows]


def oldest_pending(engine: Engine) -> datetime | None:
    """When the oldest event still waiting for the relay was recorded."""
    with reading(engine) as conn:
        stamp = conn.execute(select(func.min(t.outbox.c.created_at)).where(
            t.outbox.c.published_at.is_(None), t.outbox.c.parked_reason.is_(None))
        ).scalar_one_or_none()
    return aware_or_none(stamp)


def park(engine: Engine, event_id: int, reason: str) -> None:
    """An event that can never be published: set aside with why, the rest flow on."""
    with engine.begin() as conn:
        conn.execute(update(t.outbox).where(t.outbox.c.id == event_id)
                     .values(parked_reason=reason[:1000]))


def parked(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(t.outbox).where(
            t.outbox.c.parked_reason.is_not(None))).scalar_one())


def mark_published(engine: Engine, ids: Sequence[int]) -> None:
    if ids:
        with engine.begin() as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.id.in_(list(ids)))
                         .values(published_at=now()))


def purge_published(engine: Engine, older_than: timedelta) -> int:
    cutoff: datetime = now() - older_than
    with engine.begin() as conn:
        return int(conn.execute(delete(t.outbox).where(
            t.outbox.c.published_at.is_not(None), t.outbox.c.published_at < cutoff)).rowcount)
