"""Validation: the schema (pipeline.domain) plus the business rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from pipeline.domain import Order, OrderStatus, parse_order, reached
from pipeline.errors import InvalidOrder
from pipeline.services.outcome import Record, StepResult, unrecorded
from pipeline.store import ProductRow, Store, reading

POSTCODE_RULES = {
    "US": re.compile(r"^\d{5}(-\d{4})?$"),
    "GB": re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$", re.IGNORECASE),
    "DE": re.compile(r"^\d{5}$"),
    "FR": re.compile(r"^\d{5}$"),
}


@dataclass(frozen=True)
class Rules:
    max_quantity_per_line: int = 100
    max_lines_per_order: int = 50
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP")


def business_problems(order: Order, catalog: Mapping[str, ProductRow],
                      rules: Rules) -> list[str]:
    """Every business rule the order breaks, one message each (empty: valid)."""
    problems: list[str] = []
    if order.currency not in rules.currencies:
        problems.append(f"currency: {order.currency} is not accepted "
                        f"({', '.join(rules.currencies)})")
    if len(order.items) > rules.max_lines_per_order:
        problems.append(f"items: {len(order.items)} lines, at most {rules.max_lines_per_order}")
    seen: set[str] = set()
    expected_total = Decimal("0")
    for index, item in enumerate(order.items):
        where = f"items.{index}"
        if item.product_id in seen:
            problems.append(f"{where}.productId: {item.product_id} appears on more than one line")
        seen.add(item.product_id)
        if item.quantity > rules.max_quantity_per_line:
            problems.append(f"{where}.quantity: {item.quantity} exceeds the maximum of "
                            f"{rules.max_quantity_per_line}")
        product = catalog.get(item.product_id)
        if product is None:
            problems.append(f"{where}.productId: unknown product {item.product_id}")
        else:
            if product.price != item.price:
                problems.append(f"{where}.price: {item.price} does not match the catalog "
                                f"price {product.price:.2f}")
            if product.currency != order.currency:
                problems.append(f"{where}: priced in {product.currency}, order is in "
                                f"{order.currency}")
        expected_total += item.price * item.quantity
    if expected_total != order.total_amount:
        problems.append(f"totalAmount: {order.total_amount} but the lines add up to "
                        f"{expected_total:.2f}")
    address = order.shipping_address
    rule = POSTCODE_RULES.get(address.country)
    if rule is not None and not rule.match(address.postal_code):
        problems.append(f"shippingAddress.postalCode: {address.postal_code!r} is not a valid "
                        f"{address.country} postal code")
    if address.country == "US" and not address.state:
        problems.append("shippingAddress.state: required for US addresses")
    return problems


def validate(store: Store, order_id: str, rules: Rules,
             record: Record = unrecorded) -> StepResult:
    """Check a RECEIVED order; VALIDATED, or COMPENSATING towards REJECTED."""
    with reading(store.engine) as snapshot:  # the order and its products, one read
        row = store.order(order_id, conn=snapshot)
        status = row.status
        if status is not OrderStatus.RECEIVED:
            if reached(status, OrderStatus.VALIDATED):
                return StepResult.go("already validated", repeated=True)
            return StepResult.stop(None, repeated=True, detail=f"order is {status}")
        try:
            order = parse_order(row.document)
            catalog = store.catalog((i.product_id for i in order.items), conn=snapshot)
            problems = business_problems(order, catalog, rules)
        except InvalidOrder as error:  # stored before a schema change, say
            problems = error.problems
    with store.engine.begin() as conn:
        if problems:
            moved = store.transition(order_id, OrderStatus.COMPENSATING,
                                     expected=[OrderStatus.RECEIVED],
                                     outcome=OrderStatus.REJECTED, reasons=problems, conn=conn)
            result = StepResult.stop(OrderStatus.REJECTED, tuple(problems))
        else:
            moved = store.transition(order_id, OrderStatus.VALIDATED,
                                     expected=[OrderStatus.RECEIVED], conn=conn)
            result = StepResult.go("valid")
        if moved:
            return record(conn, result)
    return validate(store, order_id, rules, record)  # a duplicate delivery decided first
