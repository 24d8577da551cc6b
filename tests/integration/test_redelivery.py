"""At-least-once: a second delivery of any step's message has no second effect."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from config.topology import Task
from pipeline import get_order, submit_order
from pipeline.app import app
from pipeline.dev.demo import CATALOG, sample_order
from pipeline.store import schema as t
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def stocked(pipeline: Pipeline) -> Pipeline:
    for sku, (price, quantity) in CATALOG.items():
        pipeline.rt.store.set_stock(sku, quantity, price=price)
    return pipeline


def effects(pipeline: Pipeline) -> dict[str, int]:
    """Row counts of every table a step has an effect on."""
    with pipeline.rt.store.engine.connect() as conn:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (t.payments, t.notifications, t.shipments, t.reservations,
                              t.stock_movements, t.external_effects)}


def finished(document: dict[str, Any]) -> dict[str, Any]:
    order_id = submit_order(document)
    return wait_until(lambda: (v := get_order(order_id))["terminal"] and v, timeout=60,
                      message=f"order {order_id} to finish")


def deliver_again(order_id: str, task: str, queue: str, args: tuple[Any, ...] = (),
                  **options: Any) -> None:
    app.signature(str(task), args=(order_id, *args)).apply_async(queue=queue, **options)


def finished_steps(view: dict[str, Any]) -> int:
    """Steps that ran to an end; a retry (the suite injects inventory faults) is not
    an end: the step runs again."""
    return sum(1 for s in view["timeline"] if s["outcome"] and s["outcome"] != "retry")


def wait_for_steps(order_id: str, count: int) -> None:
    wait_until(lambda: finished_steps(get_order(order_id)) >= count,
               timeout=30, message=f"{count} finished steps of {order_id}")


def test_each_step_of_a_completed_order_delivered_twice_changes_nothing(
        stocked: Pipeline) -> None:
    view = finished(sample_order("multi", 1))
    assert view["status"] == "COMPLETED"
    order_id, before = view["orderId"], effects(stocked)
    steps_before, rows_before = finished_steps(view), len(view["timeline"])
    deliver_again(order_id, Task.VALIDATE, "orders")
    deliver_again(order_id, Task.AUTHORIZE, "payments")
    deliver_again(order_id, Task.RESERVE, "orders")
    deliver_again(order_id, Task.APPLY_LINE, "inventory.fifo", ("SKU-MUG", 2, "reserve"),
                  MessageGroupId="SKU-MUG", MessageDeduplicationId=f"{order_id}:again")
    deliver_again(order_id, Task.SHIP, "shipping")
    deliver_again(order_id, Task.NOTIFY, "notifications")
    wait_for_steps(order_id, steps_before + 6)
    after = get_order(order_id)
    assert after["status"] == "COMPLETED"
    assert effects(stocked) == before
    repeated = after["timeline"][rows_before:]
    assert {s["outcome"] for s in repeated} <= {"repeated", "ok", "retry"}
    assert [p["kind"] for p in after["payments"]] == ["authorize", "capture"]


def test_compensation_delivered_twice_voids_and_releases_once(stocked: Pipeline) -> None:
    stocked.rt.store.set_stock("SKU-RARE", 0)
    view = finished(sample_order("out_of_stock", 2))
    assert view["status"] == "OUT_OF_STOCK"
    order_id, before = view["orderId"], effects(stocked)
    steps_before = finished_steps(view)
    deliver_again(order_id, Task.REVERSE_PAYMENT, "payments")
    deliver_again(order_id, Task.APPLY_LINE, "inventory.fifo", ("SKU-PEN", 1, "release"),
                  MessageGroupId="SKU-PEN", MessageDeduplicationId=f"{order_id}:again")
    wait_for_steps(order_id, steps_before + 2)
    assert effects(stocked) == before
    assert [p["kind"] for p in get_order(order_id)["payments"]] == ["authorize", "void"]
