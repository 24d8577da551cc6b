"""Two concurrent submissions of one orderId with different documents: the database
decides, and exactly one is told "accepted" (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.domain import parse_order
from pipeline.errors import OrderConflict
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.testing import postgres_database, postgres_reachable
from tests.fixtures import POSTGRES_ADMIN_URL
from tests.middle.conftest import ADDRESS

PAIRS = 40


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store = Store(create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
        create_schema(store.engine)
        yield store
        store.engine.dispose()
        return
    why = postgres_reachable(POSTGRES_ADMIN_URL)
    if why:
        pytest.skip(f"PostgreSQL not reachable ({why})")
    with postgres_database(POSTGRES_ADMIN_URL) as url:
        store = Store(create_db_engine(url))
        create_schema(store.engine)
        yield store
        store.engine.dispose()


def document(order_id: str, quantity: int) -> dict[str, object]:
    return {"orderId": order_id, "customerId": "c1",
            "items": [{"productId": "SKU-X", "quantity": quantity, "price": "1.00"}],
            "totalAmount": str(Decimal(quantity)), "currency": "USD",
            "payment": {"token": "tok_visa"}, "shippingAddress": ADDRESS}


def test_concurrent_submitters_of_one_id_get_one_acceptance(any_store: Store) -> None:
    def race(order_id: str) -> list[str]:
        barrier = threading.Barrier(2)

        def submit(quantity: int) -> str:
            order = parse_order(document(order_id, quantity))
            barrier.wait()
            try:
                return "accepted" if any_store.create_order(order) else "duplicate"
            except OrderConflict:
                return "conflict"

        with ThreadPoolExecutor(2) as pool:
            return sorted(pool.map(submit, (1, 2)))

    outcomes = [race(f"dup-{uuid.uuid4().hex[:10]}") for _ in range(PAIRS)]
    assert outcomes == [["accepted", "conflict"]] * PAIRS


def test_the_same_document_twice_is_one_order(any_store: Store) -> None:
    order = parse_order(document(f"same-{uuid.uuid4().hex[:8]}", 3))
    assert any_store.create_order(order) is True
    assert any_store.create_order(order) is False
    assert len(any_store.lines(order.order_id)) == 1
