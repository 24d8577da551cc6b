"""No order is ever stuck: progress comes from the store, not from the queue."""

from __future__ import annotations

import json
from typing import Any

import pytest

from config.topology import Task
from pipeline.domain import OrderStatus, parse_order
from pipeline.ops.audit import order_violations
from pipeline.ops.reconcile import NEXT_STEPS, deadlines, reconcile, stale_orders
from pipeline.testing import run_cli
from tests.middle.conftest import DOWN, Harness

S = OrderStatus
NOW = {status: 0.0 for status in NEXT_STEPS}


def test_an_order_stored_but_never_started_is_started_by_the_reconciler(
        harness: Harness) -> None:
    """The durable start: a crash between storing the order and publishing its first
    step leaves it RECEIVED; the reconciler publishes the step from its state."""
    order = parse_order(harness.document())
    harness.store.create_order(order)  # ... and the process died here
    assert harness.broker.queue == []
    harness.reconcile()
    harness.drain()
    assert harness.store.status(order.order_id) is S.COMPLETED
    steps = [s.step for s in harness.store.timeline(order.order_id)]
    assert steps[0] == "reconcile" and steps[-1] == "notify"


def test_every_lost_step_is_sent_again_from_the_orders_state(harness: Harness) -> None:
    order_id = harness.submit(lines=[("A", 1), ("B", 1)])
    seen = []
    while not harness.store.status(order_id).terminal:
        if harness.broker.deliverable():
            message = harness.next_message()
            seen.append(message.task)
            harness.broker.queue.remove(message)  # every message is lost once...
            harness.reconcile()  # ... and re-driven from the order's state
            harness.deliver(message.task)
        else:
            harness.reconcile()
    assert harness.store.status(order_id) is S.COMPLETED
    assert {Task.VALIDATE, Task.AUTHORIZE, Task.APPLY_LINE, Task.SHIP, Task.NOTIFY} <= set(seen)


@pytest.mark.parametrize(("order", "outcome", "undos"), [
    ({"lines": [("A", 1), ("B", 5)]}, S.OUT_OF_STOCK,  # B has 1: release A, void
     {Task.APPLY_LINE, Task.REVERSE_PAYMENT}),
    ({"postal_code": "00000"}, S.SHIPPING_FAILED,  # the carrier refuses: release, refund
     {Task.APPLY_LINE, Task.REVERSE_PAYMENT}),
])
def test_every_lost_compensation_step_is_sent_again_until_the_money_is_right(
        harness: Harness, order: dict[str, Any], outcome: S, undos: set[Task]) -> None:
    """A compensation message lost (revoked, purged, expired) does not leave the order
    COMPENSATING: the reconciler sends the undo that is still owed."""
    order_id = harness.submit(**order)
    harness.run_until(order_id, S.COMPENSATING)
    seen = []
    while not harness.store.status(order_id).terminal:
        if harness.broker.deliverable():
            message = harness.next_message()
            seen.append(message.task)
            harness.broker.queue.remove(message)
            harness.reconcile()
            harness.deliver(message.task)
        else:
            harness.reconcile()
    assert harness.store.status(order_id) is outcome
    assert undos <= set(seen)
    assert order_violations(harness.store, [order_id]) == {}


def test_two_reconcilers_sweep_once(harness: Harness) -> None:
    order_id = harness.submit()
    harness.broker.queue.clear()  # its first message lost
    first = reconcile(harness.context(), NOW, holder="beat-a", lease_s=60)
    second = reconcile(harness.context(), NOW, holder="beat-b", lease_s=60)
    assert first.redriven == [order_id] and second.skipped
    assert len(harness.broker.queue) == 1


def test_deadlines_come_from_the_topology_and_stuck_orders_are_listed(
        harness: Harness) -> None:
    limits = deadlines(60, 30)
    assert limits[S.RECEIVED] == 300 * 3 + 60  # orders: visibility x maxReceiveCount + slack
    assert limits[S.AUTHORIZING] == 600 * 5 + 60  # payments
    assert limits[S.NEEDS_ATTENTION] == 30  # nothing in flight: a retry interval
    order_id = harness.submit(lines=[("B", 5)])  # out of stock
    harness.run_until(order_id, S.COMPENSATING)
    harness.outages["gateway"] = DOWN
    harness.run_until(order_id, S.NEEDS_ATTENTION)
    assert [o for o, _, _ in stale_orders(harness.store, {**limits, S.NEEDS_ATTENTION: 0})] \
        == [order_id]
    done = run_cli({"PIPELINE_DATABASE_URL": str(harness.store.engine.url),
                    "PIPELINE_ATTENTION_RETRY_S": "0.001"}, "orders", "--stuck", "--json")
    assert done.returncode == 0, done.stderr
    assert [row["id"] for row in json.loads(done.stdout)] == [order_id]
