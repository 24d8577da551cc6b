"""Business rules of validation, over many generated orders."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from pipeline.dev.demo import CATALOG, sample_order
from pipeline.domain import parse_order
from pipeline.services.validation import Rules, business_problems
from pipeline.store import ProductRow

CATALOG_ROWS = {sku: ProductRow(sku, sku, price, "USD") for sku, (price, _) in CATALOG.items()}
RULES = Rules(max_quantity_per_line=10)

lines = st.lists(
    st.tuples(st.sampled_from(sorted(CATALOG)), st.integers(min_value=1, max_value=10)),
    min_size=1, max_size=5, unique_by=lambda line: line[0])


def order_with(items: list[tuple[str, int]], *, total_delta: Decimal = Decimal("0"),
               price_delta: Decimal = Decimal("0")) -> dict[str, object]:
    document = sample_order("single", 1)
    document["items"] = [{"productId": sku, "quantity": qty,
                          "price": str(CATALOG[sku][0] + price_delta)} for sku, qty in items]
    total = sum((CATALOG[sku][0] + price_delta) * qty for sku, qty in items)
    document["totalAmount"] = str(total + total_delta)
    return document


@given(lines)
def test_an_order_priced_from_the_catalog_has_no_problem(items: list[tuple[str, int]]) -> None:
    assert business_problems(parse_order(order_with(items)), CATALOG_ROWS, RULES) == []


@given(lines, st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50"), places=2))
def test_a_wrong_total_is_reported_with_the_expected_sum(items: list[tuple[str, int]],
                                                         delta: Decimal) -> None:
    problems = business_problems(parse_order(order_with(items, total_delta=delta)),
                                 CATALOG_ROWS, RULES)
    assert len(problems) == 1 and problems[0].startswith("totalAmount:")


@given(lines)
def test_a_price_that_differs_from_the_catalog_is_reported_per_line(
        items: list[tuple[str, int]]) -> None:
    problems = business_problems(parse_order(order_with(items, price_delta=Decimal("0.01"))),
                                 CATALOG_ROWS, RULES)
    assert sum("does not match the catalog price" in p for p in problems) == len(items)


def test_unknown_products_duplicates_quantity_currency_and_postcode_are_each_reported() -> None:
    document = order_with([("SKU-BOOK", 11), ("SKU-MUG", 1)])
    document["items"].append({"productId": "SKU-MUG", "quantity": 1, "price": "8.00"})
    document["items"].append({"productId": "SKU-NOPE", "quantity": 1, "price": "1.00"})
    document["currency"] = "JPY"
    document["shippingAddress"]["postalCode"] = "ABCDE"
    problems = business_problems(parse_order(document), CATALOG_ROWS, RULES)
    text = "\n".join(problems)
    for expected in ("items.0.quantity: 11 exceeds the maximum of 10",
                     "items.2.productId: SKU-MUG appears on more than one line",
                     "items.3.productId: unknown product SKU-NOPE",
                     "currency: JPY is not accepted",
                     "shippingAddress.postalCode: 'ABCDE' is not a valid US postal code"):
        assert expected in text
