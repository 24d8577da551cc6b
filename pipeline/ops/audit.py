"""Invariants computed from the raw ledgers (what `pipeline audit` prints).

Per terminal order (`order_violations`, also used by the model test):

* money: COMPLETED took exactly one capture of the order's total and nothing
  was voided or refunded; any other ending took no money: every authorization
  voided or captured, every capture refunded in full. The same is checked in
  the gateway's own books (its effects per idempotency key), and the two agree:
  every effect the gateway had is in the ledger with the same reference.
* stock: every reservation of a COMPLETED order shipped; of any other ending,
  released or refused; no reservation without an order line.
* shipment: the carrier has a live shipment of the order exactly when it
  COMPLETED, and then the store holds its tracking number.
* the customer was told, and nothing the ledger contradicts ("not charged"
  while money is taken or held, "refunded" without a full refund).

Across the store: at most one effect per idempotency key, one notification
per order/template/channel, stock conserved and never negative, each product's
updates applied in SQS sequence order, and (strict mode) every order terminal
and every stock update applied, a dead-lettered one included.

The gateway's and carrier's books are the simulators' tables here; against
real ones the same comparison runs on their reports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, true

from pipeline.domain import TERMINAL, OrderStatus
from pipeline.keys import payment_key, shipment_key
from pipeline.store import Store
from pipeline.store import schema as t
from pipeline.store.db import reading
from pipeline.workflow import money_settled

__all__ = ["AuditReport", "audit", "order_violations"]

S = OrderStatus


@dataclass
class AuditReport:
    orders_by_status: dict[str, int]
    not_terminal: int
    max_captures_per_order: int
    max_charges_per_key: int
    max_notifications_per_slot: int
    stock: list[dict[str, Any]]
    violations: list[str] = field(default_factory=list)
    orders: dict[str, list[str]] = field(default_factory=dict)  # order id -> what is wrong

    @property
    def clean(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean, "violations": self.violations, "orders": self.orders,
            "ordersByStatus": self.orders_by_status, "notTerminal": self.not_terminal,
            "maxCapturesPerOrder": self.max_captures_per_order,
            "maxGatewayEffectsPerKey": self.max_charges_per_key,
            "maxNotificationsPerOrderTemplateChannel": self.max_notifications_per_slot,
            "stock": self.stock,
        }


@dataclass
class _Books:
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


def _load(store: Store, order_ids: Iterable[str] | None) -> dict[str, _Books]:
    wanted = None if order_ids is None else list(order_ids)

    def only(column: Any) -> Any:
        return true() if wanted is None else column.in_(wanted)

    books: dict[str, _Books] = {}
    with reading(store.engine) as conn:
        def rows(query: Any) -> list[Any]:
            return list(conn.execute(query).mappings())

        for r in rows(select(t.orders.c.id, t.orders.c.status, t.orders.c.total_amount)
                      .where(only(t.orders.c.id))):
            books[r["id"]] = _Books(OrderStatus(r["status"]), Decimal(r["total_amount"]))
        for r in rows(select(t.payments).where(only(t.payments.c.order_id))
                      .order_by(t.payments.c.id)):
            if r["order_id"] in books:
                books[r["order_id"]].payments.append(dict(r))
        for r in rows(select(t.external_effects)):
            order_id = str(r["idempotency_key"]).partition(":")[0]
            if order_id in books:
                side = books[order_id].gateway if r["system"] == "gateway" else \
                    books[order_id].carrier
                side[r["idempotency_key"]] = dict(r)
        for r in rows(select(t.order_lines).where(only(t.order_lines.c.order_id))):
            if r["order_id"] in books:
                books[r["order_id"]].lines[r["sku"]] = r["quantity"]
        for r in rows(select(t.reservations).where(only(t.reservations.c.order_id))):
            if r["order_id"] in books:
                books[r["order_id"]].reservations[r["sku"]] = r["state"]
        for r in rows(select(t.shipments).where(only(t.shipments.c.order_id))):
            if r["order_id"] in books:
                books[r["order_id"]].shipment = dict(r)
        for r in rows(select(t.notifications).where(only(t.notifications.c.order_id))):
            if r["order_id"] in books:
                books[r["order_id"]].notifications.append(dict(r))
    return books


def _money(order_id: str, b: _Books) -> list[str]:
    problems = []
    kinds = [p["kind"] for p in b.payments]
    ledger = tuple((p["kind"], str(p["amount"])) for p in b.payments)
    captured = [Decimal(p["amount"]) for p in b.payments if p["kind"] == "capture"]
    if b.status is S.COMPLETED:
        if captured != [b.total]:
            problems.append(f"completed with captures {captured}, total {b.total}")
        if {"void", "refund"} & set(kinds):
            problems.append(f"completed but the ledger has {kinds}")
    elif not money_settled(ledger):
        problems.append(f"{b.status} but money is taken or held: ledger {kinds}")
    # The gateway's own books, and the ledger beside them.
    effects = {op: b.gateway.get(payment_key(order_id, op))
               for op in ("authorize", "capture", "void", "refund")}
    approved = effects["authorize"] is not None and effects["authorize"]["result"].get("approved")
    if b.status is S.COMPLETED:
        capture = effects["capture"]
        if capture is None or Decimal(capture["amount"]) != b.total:
            problems.append("the gateway holds no capture of the order's total")
        if effects["void"] or effects["refund"]:
            problems.append("the gateway voided or refunded a completed order")
    else:
        if approved and not (effects["void"] or effects["capture"]):
            problems.append("the gateway holds an authorization that was never voided")
        capture = effects["capture"]
        refund = effects["refund"]
        if capture is not None and (refund is None or Decimal(refund["amount"] or 0) !=
                                    Decimal(capture["amount"])):
            problems.append("the gateway captured money that was not refunded in full")
    in_ledger = {p["gateway_ref"] for p in b.payments}
    for op, effect in effects.items():
        if effect is not None and (op != "authorize" or approved) and \
                effect["reference"] not in in_ledger:
            problems.append(f"the gateway's {op} {effect['reference']} is not in the ledger")
    return problems


def _stock_and_shipment(order_id: str, b: _Books) -> list[str]:
    problems = []
    for sku in set(b.reservations) - set(b.lines):
        problems.append(f"reservation of {sku} matches no order line")
    wanted = {"SHIPPED"} if b.status is S.COMPLETED else {"RELEASED", "REJECTED"}
    wrong = {sku: state for sku, state in b.reservations.items() if state not in wanted}
    if wrong:
        problems.append(f"{b.status} with reservations {wrong}")
    ship = b.carrier.get(shipment_key(order_id))
    live = ship if ship is not None and ship["result"].get("accepted") and \
        b.carrier.get(f"{shipment_key(order_id)}:cancel") is None else None
    if b.status is S.COMPLETED:
        if live is None:
            problems.append("completed without a live shipment at the carrier")
        elif b.shipment is None or b.shipment["tracking_number"] != live["reference"]:
            problems.append("the carrier's tracking number is not stored")
    elif live is not None:
        problems.append(f"{b.status} but the carrier holds a live shipment")
    return problems


def _told(b: _Books) -> list[str]:
    """The customer was told, and nothing the ledger contradicts."""
    if not b.notifications:
        return ["the customer was not told"]
    ledger = tuple((p["kind"], str(p["amount"])) for p in b.payments)
    captured = sum((Decimal(a) for k, a in ledger if k == "capture"), Decimal(0))
    refunded = sum((Decimal(a) for k, a in ledger if k == "refund"), Decimal(0))
    problems = []
    for note in b.notifications:
        body = str(note["body"])
        if "not been charged" in body and (captured or not money_settled(ledger)):
            problems.append(f"told {note['channel']} 'not charged', but the ledger shows "
                            f"{[k for k, _ in ledger]}")
        if "refunded" in body and not (captured and refunded == captured):
            problems.append(f"told {note['channel']} 'refunded', but the ledger shows "
                            f"{[k for k, _ in ledger]}")
    return problems


def order_violations(store: Store, order_ids: Iterable[str] | None = None
                     ) -> dict[str, list[str]]:
    """What is wrong with each terminal order (only those with a problem)."""
    found: dict[str, list[str]] = {}
    for order_id, b in _load(store, order_ids).items():
        if not b.status.terminal:
            continue
        problems = _money(order_id, b) + _stock_and_shipment(order_id, b) + _told(b)
        if problems:
            found[order_id] = problems
    return found


def _max(conn: Any, query: Any) -> int:
    return int(conn.execute(select(func.coalesce(func.max(query.c.n), 0))).scalar_one())


def audit(store: Store, *, require_terminal: bool = True,
          order_ids: Iterable[str] | None = None) -> AuditReport:
    """The whole store, or (`order_ids`) those orders beside the store-wide checks."""
    wanted = None if order_ids is None else list(order_ids)
    with reading(store.engine) as conn:
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
    violations: list[str] = []
    not_terminal = sum(n for s, n in by_status.items() if s not in {x.value for x in TERMINAL})
    if require_terminal and not_terminal:
        violations.append(f"{not_terminal} order(s) not terminal")
    if require_terminal and unapplied:
        parked = defaultdict(list)
        for update_id, quantity, result in unapplied:
            parked[result or "in flight"].append(f"{update_id} (x{quantity})")
        for why, ids in parked.items():
            violations.append(f"{len(ids)} stock update(s) never applied ({why}): "
                              f"{', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
    if max_captures > 1:
        violations.append(f"an order was captured {max_captures} times")
    if max_charges > 1:
        violations.append(f"an idempotency key had {max_charges} effects at the gateway/carrier")
    if max_notes > 1:
        violations.append(f"a notification was sent {max_notes} times")
    orders = order_violations(store, wanted)
    for order_id, problems in sorted(orders.items()):
        violations.extend(f"order {order_id}: {p}" for p in problems)
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
                       max_captures, max_charges, max_notes, stock, violations, orders)
