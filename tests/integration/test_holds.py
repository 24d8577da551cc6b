"""Stale reservation holds expire through compensation; shipment never races an expiry."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipeline import get_order
from pipeline.breaker_state import BreakerConfig
from pipeline.dev.demo import CATALOG, sample_order
from pipeline.domain import OrderStatus, parse_order
from pipeline.services import inventory, shipping
from pipeline.services.breaker import Breaker, GuardedGateway
from pipeline.services.simulators import Faults, SimulatedCarrier, SimulatedGateway
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
S = OrderStatus


def stuck_in_reserved(store: Store, document: dict[str, Any], *, hold_s: int) -> str:
    """An order that reserved its stock and then stalled (its ship message lost)."""
    order = parse_order(document)
    store.create_order(order)
    for old, new in ((S.RECEIVED, S.VALIDATED), (S.VALIDATED, S.AUTHORIZING),
                     (S.AUTHORIZING, S.RESERVING)):
        assert store.transition(order.order_id, new, expected=[old])
    for item in order.items:
        store.reserve_line(order.order_id, item.product_id, item.quantity, sequence=None,
                           hold_s=hold_s)
    assert store.transition(order.order_id, S.RESERVED, expected=[S.RESERVING])
    return order.order_id


@contextmanager
def reconciler_lease_held(store: Store) -> Iterator[None]:
    """The sweep's lease taken by this test (waiting out a sweep that holds it)."""
    holder = "test_holds"
    wait_until(lambda: store.take_lease("reconciler", holder, 300), timeout=120,
               message="the reconciler's lease to be free")
    try:
        yield
    finally:
        store.take_lease("reconciler", holder, 0)  # runs out now: the next sweep takes it


def test_expire_holds_releases_stock_of_a_stalled_order_and_ends_it_failed(
        pipeline: Pipeline) -> None:
    store = pipeline.rt.store
    for sku, (price, quantity) in CATALOG.items():
        store.set_stock(sku, quantity, price=price)
    before = {r.sku: r for r in store.stock_levels()}
    # The beat lane's sweep expires stale holds too, and would win the race to this
    # order now and then; holding its lease keeps the sweep off while the CLI runs.
    with reconciler_lease_held(store):
        order_id = stuck_in_reserved(store, sample_order("single", 1), hold_s=-1)
        result = subprocess.run([sys.executable, "-m", "pipeline", "stock", "expire-holds"],
                                cwd=ROOT, text=True, capture_output=True, timeout=60,
                                env={**os.environ, **pipeline.env})
    assert result.returncode == 0, result.stderr
    assert f"{order_id}: hold expired" in result.stdout
    view = wait_until(lambda: (v := get_order(order_id))["terminal"] and v, timeout=60,
                      message="the expired order to finish")
    assert view["status"] == "FAILED"
    assert [r["state"] for r in view["reservations"]] == ["RELEASED"]
    assert [n["template"] for n in view["notifications"]] == ["order_failed"]
    after = {r.sku: r for r in store.stock_levels()}
    assert after["SKU-BOOK"].available == before["SKU-BOOK"].available
    assert after["SKU-BOOK"].reserved == before["SKU-BOOK"].reserved


class CarrierThatMeetsAnExpiry(SimulatedCarrier):
    """While the carrier works, the order's hold expiry runs (another worker's move)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine, Faults(), random.Random(1))
        self.store = store
        self.expired: list[bool] = []

    def create_shipment(self, key: str, address: dict[str, Any], parcels: int
                        ) -> dict[str, Any]:
        self.expired.append(inventory.expire_hold(self.store, key.split(":")[0]))
        return super().create_shipment(key, address, parcels)


def test_an_expiry_cannot_end_an_order_the_shipping_step_has_claimed(tmp_path: Path) -> None:
    """Regression: ship used to capture and call the carrier before its compare-and-set,
    so an expiry (or a cancellation) meanwhile ended the order with a parcel at the
    carrier and no shipment row. Now the claim (SHIPPING) comes first."""
    store = Store(create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    create_schema(store.engine)
    for sku, (price, quantity) in CATALOG.items():
        store.set_stock(sku, quantity, price=price)
    order_id = stuck_in_reserved(store, sample_order("single", 2), hold_s=-1)
    gateway = GuardedGateway(SimulatedGateway(store.engine, Faults(), random.Random(1)),
                             Breaker(store, "gateway", BreakerConfig()))
    amount = store.order(order_id).total_amount
    auth = gateway.authorize(f"{order_id}:authorize", "tok_visa", amount, "USD")
    with store.engine.begin() as conn:
        store.record_payment(conn, order_id=order_id, kind="authorize",
                             amount=amount, currency="USD",
                             gateway_ref=auth["reference"], key=f"{order_id}:authorize")
    carrier = CarrierThatMeetsAnExpiry(store)
    result = shipping.ship(store, gateway, carrier, order_id)
    assert carrier.expired == [False]
    assert result.proceed and not result.repeated
    assert store.status(order_id) is S.SHIPPED
    assert store.shipment(order_id).tracking_number.startswith("TRK")
    assert [r.state for r in store.reservations(order_id)] == ["SHIPPED"]
