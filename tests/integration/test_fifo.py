"""Per-product FIFO under contention, transient failures and a SIGKILLed worker.

The inventory lane runs as the Procfile says (more than one execution slot);
every inventory update fails transiently 5 % of the time (tests.fixtures);
several producers interleave orders and restocks over eight products.
"""

from __future__ import annotations

import random
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from pipeline import restock, submit_order
from pipeline.dev.demo import ADDRESS
from pipeline.dev.procfile import read_procfile
from pipeline.ops.audit import audit
from pipeline.store import Store
from pipeline.store import schema as t
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration
PRICE = Decimal("2.50")


def products(tag: str) -> list[str]:
    return [f"{tag}-{i}" for i in range(8)]


def order_document(rng: random.Random, skus: list[str]) -> dict[str, Any]:
    chosen = rng.sample(skus, rng.randint(1, 3))
    items = [{"productId": sku, "quantity": rng.randint(1, 3), "price": str(PRICE)}
             for sku in chosen]
    return {
        "orderId": f"fifo-{uuid.uuid4().hex[:12]}", "customerId": "cust-fifo",
        "items": items, "currency": "USD", "priority": "normal",
        "totalAmount": str(sum(PRICE * i["quantity"] for i in items)),
        "payment": {"token": "tok_visa"}, "shippingAddress": dict(ADDRESS),
        "contact": {"email": "fifo@example.com"},
    }


def produce(seed: int, skus: list[str], orders: int, restocks: int) -> list[str]:
    """One producer: orders and restocks, interleaved."""
    rng = random.Random(seed)
    ids = []
    for n in range(orders):
        ids.append(submit_order(order_document(rng, skus)))
        if n % max(orders // restocks, 1) == 0:
            restock(rng.choice(skus), 4)
    return ids


def settled(store: Store, order_ids: list[str]) -> bool:
    with store.engine.connect() as conn:
        open_orders = conn.execute(select(func.count()).select_from(t.orders).where(
            t.orders.c.id.in_(order_ids), t.orders.c.terminal_at.is_(None))).scalar_one()
    return open_orders == 0 and not store.in_flight()


def applied_per_product(store: Store, skus: list[str]) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.stock_updates.c.sku, func.count())
                            .where(t.stock_updates.c.sku.in_(skus),
                                   t.stock_updates.c.applied_at.is_not(None))
                            .group_by(t.stock_updates.c.sku)).all()
    return {sku: n for sku, n in rows}


def assert_fifo_invariants(store: Store, skus: list[str], order_ids: list[str]) -> None:
    report = audit(store, order_ids=order_ids)
    assert report.clean, report.violations  # includes each product's sequence order
    applied = applied_per_product(store, skus)
    for sku in skus:
        history = store.stock_history(sku)
        sequenced = [int(m.sqs_sequence) for m in history if m.sqs_sequence]
        assert sequenced == sorted(sequenced) and len(set(sequenced)) == len(sequenced), sku
        # exactly one movement per applied update: nothing applied twice or skipped
        assert len(sequenced) == applied.get(sku, 0), sku
        level = next(r for r in store.stock_levels() if r.sku == sku)
        assert min(level.available, level.reserved, level.shipped) >= 0


def test_contention_applies_each_products_updates_in_sequence_order(
        pipeline: Pipeline) -> None:
    store = pipeline.rt.store
    skus = products(f"C{pipeline.backend[:2]}")
    for sku in skus:
        store.set_stock(sku, 25, price=PRICE)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda k: produce(k, skus, 30, 6), range(4)))
    order_ids = [i for batch in batches for i in batch]

    wait_until(lambda: settled(store, order_ids), timeout=240, message="every order settled")

    assert_fifo_invariants(store, skus, order_ids)
    counts = store.count_by_status()
    assert counts.get("COMPLETED", 0) > 0 and counts.get("OUT_OF_STOCK", 0) > 0, counts
    with store.engine.connect() as conn:
        retried = conn.execute(select(func.count()).select_from(t.steps).where(
            t.steps.c.order_id.in_(order_ids), t.steps.c.outcome == "retry",
            t.steps.c.step.like("reserve:%") | t.steps.c.step.like("release:%"),
        )).scalar_one()
    assert retried > 0, "no inventory update was retried: the fault injection is off"


def test_sigkilled_inventory_worker_loses_and_reorders_nothing(pipeline: Pipeline) -> None:
    store = pipeline.rt.store
    skus = products(f"K{pipeline.backend[:2]}")
    for sku in skus:
        store.set_stock(sku, 20, price=PRICE)
    inventory = pipeline.lanes.live("inventory")
    with ThreadPoolExecutor(2) as pool:
        future = pool.submit(lambda: [i for k in (10, 11) for i in produce(k, skus, 25, 5)])
        wait_until(lambda: sum(applied_per_product(store, skus).values()) >= 10, timeout=60,
                   message="some updates applied")
        # main process and pool children
        pipeline.lanes.stop_one(inventory, sig=signal.SIGKILL)
        order_ids = future.result()

    # While the lane is down its products' updates wait, visibly.
    restock(skus[0], 4)
    stuck = wait_until(lambda: [r for r in store.in_flight()
                                if r.sku == skus[0] and r.oldest_age_s > 1],
                       timeout=30, message="an in-flight age for the stalled product")
    assert stuck[0].updates >= 1

    line = next(line for line in read_procfile() if line.name == "inventory")
    pipeline.lanes.start(line)
    # Messages the killed worker held come back after inventory.fifo's 60 s visibility.
    wait_until(lambda: settled(store, order_ids), timeout=240, message="every order settled")
    assert_fifo_invariants(store, skus, order_ids)


def test_a_fifo_publish_without_a_group_is_refused_not_filed_under_default(
        pipeline: Pipeline) -> None:
    from config.topology import Task
    from pipeline.app import app
    from pipeline.errors import FifoGroupMissing

    with pytest.raises(FifoGroupMissing, match="MessageGroupId"):
        app.signature(Task.RESTOCK.value, args=("r-no-group", "SKU-X", 1)).apply_async(
            queue="inventory.fifo")
    with pytest.raises(FifoGroupMissing):
        app.signature(Task.RESTOCK.value, args=("r-default", "SKU-X", 1)).apply_async(
            queue="inventory.fifo", MessageGroupId="default", MessageDeduplicationId="d")
