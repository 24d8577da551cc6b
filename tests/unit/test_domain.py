"""The order document and the order life cycle."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.dev.demo import sample_order
from pipeline.domain import (
    TERMINAL,
    TRANSITIONS,
    OrderStatus,
    can_transition,
    parse_order,
)
from pipeline.errors import InvalidOrder


def test_a_seed_format_order_parses_and_round_trips_in_camel_case() -> None:
    document = sample_order("multi", 1)
    order = parse_order(document)
    assert order.order_id == document["orderId"]
    assert order.items[1].product_id == "SKU-MUG"
    assert order.document()["shippingAddress"]["postalCode"] == "62701"
    assert order.document()["totalAmount"] == document["totalAmount"]


def test_an_order_without_an_id_gets_a_generated_one() -> None:
    document = sample_order("single", 1)
    del document["orderId"]
    assert parse_order(document).order_id.startswith("ord_")


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["items"][0].update(quantity=0), "items.0.quantity"),
    (lambda d: d.update(items=[]), "items"),
    (lambda d: d["shippingAddress"].pop("city"), "shippingAddress.city"),
    (lambda d: d.update(priority="urgent"), "priority"),
    (lambda d: d["payment"].update(token="4111 1111 1111 1111"), "payment.token"),
    (lambda d: d.update(surprise=1), "surprise"),
    (lambda d: d["contact"].update(email="not-an-email"), "contact.email"),
])
def test_schema_errors_name_the_field(change: Any, field: str) -> None:
    document = sample_order("single", 1)
    change(document)
    with pytest.raises(InvalidOrder) as caught:
        parse_order(document)
    assert any(p.startswith(f"{field}:") for p in caught.value.problems), caught.value.problems


def test_a_non_object_is_refused_with_its_type() -> None:
    with pytest.raises(InvalidOrder, match="expected a JSON object, got list"):
        parse_order([1, 2])


def test_terminal_statuses_have_no_way_out_and_every_status_is_declared() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert status.terminal


def test_every_status_can_reach_a_terminal_one() -> None:
    for start in OrderStatus:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, start


@given(st.sampled_from(list(OrderStatus)), st.sampled_from(list(OrderStatus)))
def test_can_transition_agrees_with_the_table(a: OrderStatus, b: OrderStatus) -> None:
    assert can_transition(a, b) == (b in TRANSITIONS[a])


@given(st.decimals(min_value=Decimal("0"), max_value=Decimal("99999"), places=2))
def test_any_two_place_amount_is_accepted_as_money(amount: Decimal) -> None:
    document = sample_order("single", 1)
    document["items"][0]["price"] = str(amount)
    assert parse_order(document).items[0].price == amount
