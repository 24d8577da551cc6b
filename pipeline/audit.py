"""Invariants computed from the raw ledgers (what `pipeline audit` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from pipeline.domain import TERMINAL
from pipeline.store import Store
from pipeline.store import schema as t
from pipeline.store.db import reading


@dataclass
class AuditReport:
    orders_by_status: dict[str, int]
    not_terminal: int
    max_captures_per_order: int
    max_charges_per_key: int
    max_notifications_per_slot: int
    stock: list[dict[str, Any]]
    violations: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean, "violations": self.violations,
            "ordersByStatus": self.orders_by_status, "notTerminal": self.not_terminal,
            "maxCapturesPerOrder": self.max_captures_per_order,
            "maxGatewayEffectsPerKey": self.max_charges_per_key,
            "maxNotificationsPerOrderTemplateChannel": self.max_notifications_per_slot,
            "stock": self.stock,
        }


def _max(conn: Any, query: Any) -> int:
    return int(conn.execute(select(func.coalesce(func.max(query.c.n), 0))).scalar_one())


def audit(store: Store, *, require_terminal: bool = True) -> AuditReport:
    with reading(store.engine) as conn:
        by_status: dict[str, int] = dict(conn.execute(
            select(t.orders.c.status, func.count()).group_by(t.orders.c.status)).all())
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
        held_by_finished = conn.execute(
            select(func.count()).select_from(t.reservations.join(
                t.orders, t.orders.c.id == t.reservations.c.order_id))
            .where(t.reservations.c.state == "RESERVED",
                   t.orders.c.status.in_([s.value for s in TERMINAL]))).scalar_one()
    violations: list[str] = []
    not_terminal = sum(n for s, n in by_status.items() if s not in {x.value for x in TERMINAL})
    if require_terminal and not_terminal:
        violations.append(f"{not_terminal} order(s) not terminal")
    if max_captures > 1:
        violations.append(f"an order was captured {max_captures} times")
    if max_charges > 1:
        violations.append(f"an idempotency key had {max_charges} effects at the gateway/carrier")
    if max_notes > 1:
        violations.append(f"a notification was sent {max_notes} times")
    if held_by_finished:
        violations.append(f"{held_by_finished} reservation(s) still held by finished orders")
    stock = []
    for level in levels:
        m = moved.get(level["sku"])
        supplied = int(m.supplied or 0) if m else 0
        row = {"productId": level["sku"], "supplied": supplied, "available": level["available"],
               "reserved": level["reserved"], "shipped": level["shipped"]}
        stock.append(row)
        if min(level["available"], level["reserved"], level["shipped"]) < 0:
            violations.append(f"{level['sku']}: negative stock {row}")
        if supplied != level["available"] + level["reserved"] + level["shipped"]:
            violations.append(f"{level['sku']}: stock not conserved {row}")
        if m and (int(m.a) != level["available"] or int(m.r) != level["reserved"]
                  or int(m.s) != level["shipped"]):
            violations.append(f"{level['sku']}: movements do not add up to the stock row")
    violations.extend(store.ordering_violations())
    return AuditReport({str(k): int(v) for k, v in by_status.items()}, not_terminal,
                       max_captures, max_charges, max_notes, stock, violations)
