"""The middle tier: services, store and steps against a real database, no workers.

Deliveries go through pipeline.steps exactly as the workers run them, with
pipeline.testing.InMemoryBroker in place of SQS, so a test chooses the
interleaving and injects faults at the gateway and the carrier.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.domain import OrderStatus
from pipeline.inmemory import InMemoryPipeline
from pipeline.ops.reconcile import NEXT_STEPS, reconcile
from pipeline.services.simulators import Faults
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.testing import postgres_database, postgres_reachable
from tests.fixtures import POSTGRES_ADMIN_URL

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "state": "IL", "postalCode": "62701",
           "country": "US"}
DOWN = Faults(transient_error_rate=1.0)


class Harness(InMemoryPipeline):
    """One store, an in-memory broker, switchable outages, and its own products."""

    def __init__(self, store: Store, stock: dict[str, int] | None = None, seed: int = 3) -> None:
        self.tag = uuid.uuid4().hex[:6]
        super().__init__(store, seed=seed, name=self.tag)
        self.stock = {f"{self.tag}-{sku}": n for sku, n in (stock or {"A": 50, "B": 1}).items()}
        for sku, quantity in self.stock.items():
            self.store.set_stock(sku, quantity, price=Decimal("5.00"))

    def document(self, *, lines: list[tuple[str, int]] | None = None, token: str = "tok_visa",
                 postal_code: str = "62701") -> dict[str, Any]:
        items = [{"productId": f"{self.tag}-{sku}", "quantity": q, "price": "5.00"}
                 for sku, q in (lines or [("A", 1)])]
        return {"orderId": f"{self.tag}-{uuid.uuid4().hex[:8]}", "customerId": "c1",
                "items": items,
                "totalAmount": str(sum(Decimal("5.00") * i["quantity"] for i in items)),
                "currency": "USD", "payment": {"token": token},
                "shippingAddress": dict(ADDRESS, postalCode=postal_code),
                "contact": {"email": "c1@example.com"}}

    def submit(self, **kwargs: Any) -> str:
        return self.submit_document(self.document(**kwargs))

    def run_until(self, order_id: str, *statuses: OrderStatus, limit: int = 100) -> None:
        """Deliver messages in publish order until the order is in one of `statuses`."""
        for _ in range(limit):
            if self.store.status(order_id) in statuses:
                return
            self.deliver()
        raise AssertionError(f"{order_id} is {self.store.status(order_id)}, not {statuses}")

    def reconcile(self) -> None:
        reconcile(self.context(), {status: 0.0 for status in NEXT_STEPS})


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("middle") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    return path


@pytest.fixture
def store(template_db: Path, tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "store.db"
    shutil.copyfile(template_db, path)
    store = Store(create_db_engine(f"sqlite:///{path}"))
    yield store
    store.engine.dispose()


@pytest.fixture
def harness(store: Store) -> Harness:
    return Harness(store)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store = Store(create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
        create_schema(store.engine)
        yield store
        store.engine.dispose()
        return
    store = Store(create_db_engine(request.getfixturevalue("postgres_url")))
    create_schema(store.engine)
    yield store
    store.engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (skipped when unreachable)."""
    why = postgres_reachable(POSTGRES_ADMIN_URL)
    if why:
        pytest.skip(f"PostgreSQL not reachable ({why})")
    with postgres_database(POSTGRES_ADMIN_URL) as url:
        yield url

