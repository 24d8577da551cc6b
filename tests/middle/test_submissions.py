"""Two concurrent submissions of one orderId with different documents: the database
decides, and exactly one is told "accepted"; what the store reads back is typed
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline.breaker_state import BreakerRow, BreakerState
from pipeline.domain import OrderStatus, StockOp, StockUpdate, parse_order
from pipeline.errors import OrderConflict
from pipeline.store import (
    ConsumerAge,
    LineRow,
    MovementRow,
    OrderSummary,
    ProductInFlight,
    ProductRow,
    StepRow,
    StockLevelRow,
    Store,
)
from tests.middle.conftest import ADDRESS

PAIRS = 40


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


def test_insert_once_skips_only_a_duplicate_key_and_a_broken_row_still_raises(
        any_store: Store) -> None:
    from sqlalchemy.exc import IntegrityError

    from pipeline.store import schema as t
    from pipeline.store.prepared import insert_once

    row = {"name": f"lease-{uuid.uuid4().hex[:8]}", "holder": "a",
           "until": datetime.now(UTC) + timedelta(seconds=5)}
    with any_store.engine.begin() as conn:
        assert insert_once(conn, t.leases, row) is True
        assert insert_once(conn, t.leases, {**row, "holder": "b"}) is False
    with any_store.engine.begin() as conn:  # the first insert, untouched
        assert conn.execute(select(t.leases.c.holder).where(
            t.leases.c.name == row["name"])).scalar_one() == "a"
    # A savepoint round a plain INSERT took any IntegrityError for "exists".
    with pytest.raises(IntegrityError), any_store.engine.begin() as conn:
        insert_once(conn, t.leases, {**row, "name": f"x-{row['name']}", "holder": None})


def test_insert_once_on_sqlite_loads_no_other_dialect(tmp_path: Path) -> None:
    """Regression: the first insert_once in a SQLite process imported SQLAlchemy's
    PostgreSQL dialect too (~17 ms of CPU in each pool process's first orders)."""
    probe = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from pipeline.store import schema as t\n"
        "from pipeline.store.db import create_db_engine\n"
        "from pipeline.store.prepared import insert_once\n"
        f"engine = create_db_engine('sqlite:///{tmp_path / 'probe.db'}')\n"
        "t.leases.create(engine)  # not the migrations: alembic loads every dialect\n"
        "row = {'name': 'probe', 'holder': 'a', 'until': datetime.now(UTC)}\n"
        "with engine.begin() as conn:\n"
        "    assert insert_once(conn, t.leases, row) is True\n"
        "print(sorted(m for m in sys.modules if m.startswith('sqlalchemy.dialects.')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "sqlalchemy.dialects.sqlite" in loaded
    assert "sqlalchemy.dialects.postgresql" not in loaded, loaded


def test_the_same_document_twice_is_one_order(any_store: Store) -> None:
    order = parse_order(document(f"same-{uuid.uuid4().hex[:8]}", 3))
    assert any_store.create_order(order) is True
    assert any_store.create_order(order) is False
    assert len(any_store.lines(order.order_id)) == 1


def test_a_stored_order_reads_back_typed_and_the_same_on_both_databases(
        any_store: Store) -> None:
    order = parse_order({**document(f"typed-{uuid.uuid4().hex[:8]}", 2), "items": [
        {"productId": "SKU-X", "quantity": 2, "price": "1.00"},
        {"productId": "SKU-Y", "quantity": 1, "price": "0.50"}], "totalAmount": "2.50"})
    assert any_store.create_order(order, trace_context="00-ab-cd-01") is True
    row = any_store.order(order.order_id)
    assert (row.id, row.status, row.outcome, row.reasons, row.total_amount, row.currency) == (
        order.order_id, OrderStatus.RECEIVED, None, (), Decimal("2.50"), "USD")
    # SQLite hands timestamps back naive; the row is aware on both.
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
    assert row.terminal_at is None and row.trace_context == "00-ab-cd-01"
    assert row.document == order.document()
    assert any_store.lines(order.order_id) == [
        LineRow("SKU-X", 2, Decimal("1.00")), LineRow("SKU-Y", 1, Decimal("0.50"))]


def test_every_read_of_the_store_returns_typed_rows_with_aware_times(any_store: Store) -> None:
    """Regression: the timeline, stock, update notes, breakers and consumer reports were
    dicts, and on SQLite their timestamps came back naive (an aware `isoformat()` and a
    naive one do not compare)."""
    sku = f"SKU-T{uuid.uuid4().hex[:6]}"
    any_store.set_stock(sku, 5, price=Decimal("2.50"))
    assert any_store.catalog([sku]) == {sku: ProductRow(sku, sku, Decimal("2.50"), "USD")}
    assert StockLevelRow(sku, Decimal("2.50"), 5, 0, 0) in any_store.stock_levels()
    [movement] = any_store.stock_history(sku)
    assert isinstance(movement, MovementRow) and movement.delta_available == 5
    assert movement.applied_at.utcoffset() == timedelta(0)

    update = StockUpdate(f"restock-{uuid.uuid4().hex[:8]}", sku, 3, StockOp.RESTOCK)
    any_store.record_published([update])
    note = any_store.stock_update(update.update_id)
    assert note is not None and (note.sku, note.quantity, note.applied_at) == (sku, 3, None)
    assert note.published_at.utcoffset() == timedelta(0)
    [waiting] = [p for p in any_store.in_flight() if p.sku == sku]
    assert isinstance(waiting, ProductInFlight) and waiting.updates == 1
    assert waiting.as_json()["productId"] == sku

    order = parse_order(document(f"rows-{uuid.uuid4().hex[:8]}", 1))
    any_store.create_order(order)
    started = any_store.order(order.order_id).created_at
    any_store.record_step(order.order_id, "validate", 1, "w@host", started=started,
                          outcome="ok")
    [step] = any_store.timeline(order.order_id)
    assert isinstance(step, StepRow) and (step.step, step.attempt, step.outcome) == (
        "validate", 1, "ok")
    assert step.started_at == started and step.finished_at is not None
    assert step.finished_at.utcoffset() == timedelta(0)
    [summary] = [o for o in any_store.list_orders(OrderStatus.RECEIVED)
                 if o.id == order.order_id]
    assert isinstance(summary, OrderSummary) and summary.total_amount == Decimal("1")
    assert summary.created_at == started

    opened = BreakerRow(BreakerState.OPEN, 3, started)
    assert any_store.breaker_swap("gateway", BreakerRow(), opened)
    assert any_store.breakers() == {"gateway": opened}
    any_store.record_consumers("host:1", "orders", {"orders.fifo": 2.0})
    [consumer] = any_store.consumer_ages()
    assert isinstance(consumer, ConsumerAge) and consumer.queue == "orders.fifo"
    assert consumer.age_s >= 2.0
