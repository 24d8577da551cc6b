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

from pipeline.domain import TERMINAL, OrderStatus
from pipeline.keys import PAYMENT_OPERATIONS, payment_key, shipment_cancel_key, shipment_key
from pipeline.store import Store
from pipeline.store.books import PAGE_ORDERS, OrderBooks, order_book_pages, store_totals
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


def _money(order_id: str, b: OrderBooks) -> list[str]:
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
               for op in PAYMENT_OPERATIONS}
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


def _stock_and_shipment(order_id: str, b: OrderBooks) -> list[str]:
    problems = []
    for sku in set(b.reservations) - set(b.lines):
        problems.append(f"reservation of {sku} matches no order line")
    wanted = {"SHIPPED"} if b.status is S.COMPLETED else {"RELEASED", "REJECTED"}
    wrong = {sku: state for sku, state in b.reservations.items() if state not in wanted}
    if wrong:
        problems.append(f"{b.status} with reservations {wrong}")
    ship = b.carrier.get(shipment_key(order_id))
    live = ship if ship is not None and ship["result"].get("accepted") and \
        b.carrier.get(shipment_cancel_key(order_id)) is None else None
    if b.status is S.COMPLETED:
        if live is None:
            problems.append("completed without a live shipment at the carrier")
        elif b.shipment is None or b.shipment["tracking_number"] != live["reference"]:
            problems.append("the carrier's tracking number is not stored")
    elif live is not None:
        problems.append(f"{b.status} but the carrier holds a live shipment")
    return problems


def _told(b: OrderBooks) -> list[str]:
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


def order_violations(store: Store, order_ids: Iterable[str] | None = None,
                     page: int = PAGE_ORDERS) -> dict[str, list[str]]:
    """What is wrong with each terminal order (only those with a problem), read a
    page of orders at a time: a store of any size in bounded memory and statements."""
    found: dict[str, list[str]] = {}
    for books in order_book_pages(store.engine, order_ids, page):
        for order_id, b in books.items():
            if not b.status.terminal:
                continue
            problems = _money(order_id, b) + _stock_and_shipment(order_id, b) + _told(b)
            if problems:
                found[order_id] = problems
    return found


def audit(store: Store, *, require_terminal: bool = True,
          order_ids: Iterable[str] | None = None, page: int = PAGE_ORDERS) -> AuditReport:
    """The whole store, or (`order_ids`) those orders beside the store-wide checks."""
    wanted = None if order_ids is None else list(order_ids)
    totals = store_totals(store.engine, wanted)
    by_status = totals.orders_by_status
    max_captures = totals.max_captures_per_order
    max_charges = totals.max_effects_per_key
    max_notes = totals.max_notifications_per_slot
    violations: list[str] = []
    not_terminal = sum(n for s, n in by_status.items() if s not in {x.value for x in TERMINAL})
    if require_terminal and not_terminal:
        violations.append(f"{not_terminal} order(s) not terminal")
    if require_terminal and totals.unapplied:
        parked = defaultdict(list)
        for update_id, quantity, result in totals.unapplied:
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
    orders = order_violations(store, wanted, page)
    for order_id, problems in sorted(orders.items()):
        violations.extend(f"order {order_id}: {p}" for p in problems)
    stock = []
    for level in totals.stock:
        row = {"productId": level.sku, "supplied": level.supplied,
               "available": level.available, "reserved": level.reserved,
               "shipped": level.shipped}
        stock.append(row)
        if min(level.available, level.reserved, level.shipped) < 0:
            violations.append(f"{level.sku}: negative stock {row}")
        if level.supplied != level.available + level.reserved + level.shipped:
            violations.append(f"{level.sku}: stock not conserved {row}")
        if level.moved and level.moved != (level.available, level.reserved, level.shipped):
            violations.append(f"{level.sku}: movements do not add up to the stock row")
    violations.extend(store.ordering_violations())
    return AuditReport(by_status, not_terminal, max_captures, max_charges, max_notes, stock,
                       violations, orders)
