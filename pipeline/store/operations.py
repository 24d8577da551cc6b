"""What the operational side reads and claims, kept in the store with the rest of
its SQL: one-time claims, holds past their time, orders without progress (the
reconciler), recent step rows (metrics), lane probes (the demo and the tests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from pipeline.store import schema as t
from pipeline.store.clock import now
from pipeline.store.db import reading

__all__ = ["claim", "claimed_like", "idle_orders", "recent_steps", "stale_holds"]


def claim(engine: Engine, key: str) -> bool:
    """Take a one-time key; True for the one caller that got it."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(t.idempotency_keys).values(key=key, result={},
                                                           created_at=now()))
        return True
    except IntegrityError:
        return False


def claimed_like(engine: Engine, prefix: str) -> list[str]:
    """Every claimed key that starts with `prefix`."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with reading(engine) as conn:
        return list(conn.execute(select(t.idempotency_keys.c.key).where(
            t.idempotency_keys.c.key.like(pattern, escape="\\"))).scalars().all())


def stale_holds(engine: Engine, statuses: Sequence[str]) -> list[str]:
    """Orders in `statuses` holding reserved stock past its hold time."""
    with reading(engine) as conn:
        return list(conn.execute(
            select(t.reservations.c.order_id).distinct()
            .join(t.orders, t.orders.c.id == t.reservations.c.order_id)
            .where(t.reservations.c.state == "RESERVED", t.reservations.c.expires_at < now(),
                   t.orders.c.status.in_(list(statuses)))).scalars().all())


def idle_orders(engine: Engine, *, not_in: Sequence[str], updated_before: datetime,
                limit: int) -> list[tuple[str, str, datetime, datetime | None]]:
    """Orders not in `not_in` last changed before `updated_before`, oldest first:
    (id, status, updated_at, when their last step attempt finished)."""
    last_step = (select(t.steps.c.order_id, func.max(t.steps.c.finished_at).label("at"))
                 .group_by(t.steps.c.order_id).subquery())
    with reading(engine) as conn:
        rows = conn.execute(
            select(t.orders.c.id, t.orders.c.status, t.orders.c.updated_at, last_step.c.at)
            .outerjoin(last_step, last_step.c.order_id == t.orders.c.id)
            .where(t.orders.c.status.not_in(list(not_in)),
                   t.orders.c.updated_at < updated_before)
            .order_by(t.orders.c.updated_at).limit(limit)).all()
    return [(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]


def recent_steps(engine: Engine, limit: int) -> list[Any]:
    """The newest step rows: (step, outcome, started_at, finished_at)."""
    with reading(engine) as conn:
        return list(conn.execute(
            select(t.steps.c.step, t.steps.c.outcome, t.steps.c.started_at,
                   t.steps.c.finished_at)
            .order_by(t.steps.c.id.desc()).limit(limit)).all())
