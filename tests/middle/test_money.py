"""Money and stock are right in every order that ends (issue: money truth).

Each test reproduces one way the pipeline of commit 04b8e07 ended an order with
the money wrong and a clean audit, and checks it cannot happen now."""

from __future__ import annotations

from sqlalchemy import select

from config.topology import Task
from pipeline.domain import OrderStatus
from pipeline.ops.audit import order_violations
from pipeline.services.cancellation import Cancellation, cancel
from pipeline.store import schema as t
from tests.middle.conftest import DOWN, Harness

S = OrderStatus


def ledger(harness: Harness, order_id: str) -> list[str]:
    return [p.kind for p in harness.store.payment_entries(order_id)]


def told(harness: Harness, order_id: str) -> list[str]:
    return [n.body for n in harness.store.notifications(order_id)]


def effects(harness: Harness, order_id: str, system: str) -> set[str]:
    with harness.store.engine.connect() as conn:
        keys = conn.execute(select(t.external_effects.c.idempotency_key).where(
            t.external_effects.c.system == system,
            t.external_effects.c.idempotency_key.like(f"{order_id}:%"))).scalars().all()
    return {key.split(":", 1)[1] for key in keys}


def reserved(harness: Harness, sku: str) -> int:
    return next(s.reserved for s in harness.store.stock_levels() if s.sku == sku)


def test_a_void_that_gives_up_leaves_the_order_waiting_and_the_customer_untold(
        harness: Harness) -> None:
    order_id = harness.submit(lines=[("A", 1), ("B", 5)])  # B has 1 in stock
    harness.run_until(order_id, S.COMPENSATING)
    harness.outages["gateway"] = DOWN  # the void's every attempt fails
    harness.run_until(order_id, S.NEEDS_ATTENTION)
    assert ledger(harness, order_id) == ["authorize"]
    assert told(harness, order_id) == []  # nobody says "not charged" while a hold stands
    assert [m for m, _ in harness.broker.dead if m.task is Task.REVERSE_PAYMENT]
    harness.drain()
    assert harness.store.status(order_id) is S.NEEDS_ATTENTION  # it waits, visibly

    harness.outages.clear()
    harness.reconcile()  # or a DLQ redrive: the compensation runs again
    harness.drain()
    assert harness.store.status(order_id) is S.OUT_OF_STOCK
    assert ledger(harness, order_id) == ["authorize", "void"]
    assert any("hold on your card was released" in body for body in told(harness, order_id))
    assert order_violations(harness.store, [order_id]) == {}


def test_a_refund_that_gives_up_never_tells_the_customer_they_were_refunded(
        harness: Harness) -> None:
    order_id = harness.submit(postal_code="00000")  # the carrier refuses it
    harness.run_until(order_id, S.COMPENSATING)
    assert ledger(harness, order_id) == ["authorize", "capture"]
    harness.outages["gateway"] = DOWN
    harness.run_until(order_id, S.NEEDS_ATTENTION)
    assert told(harness, order_id) == []
    harness.outages.clear()
    harness.broker.redrive()
    harness.drain()
    assert harness.store.status(order_id) is S.SHIPPING_FAILED
    assert ledger(harness, order_id) == ["authorize", "capture", "refund"]
    assert any("5.00 USD has been refunded" in body for body in told(harness, order_id))
    assert order_violations(harness.store, [order_id]) == {}


def test_a_cancellation_during_authorization_is_honoured_and_the_hold_voided(
        harness: Harness) -> None:
    order_id = harness.submit()
    harness.deliver(Task.VALIDATE)  # the chain goes on to authorize
    message = harness.next_message(Task.AUTHORIZE)
    harness.store.transition(order_id, S.AUTHORIZING, expected=[S.VALIDATED])
    assert cancel(harness.store, order_id, "changed my mind") is Cancellation.REQUESTED
    harness.broker.deliver(message, harness.context)  # the gateway authorizes, then...
    assert harness.store.status(order_id) is S.COMPENSATING
    harness.drain()
    assert harness.store.status(order_id) is S.CANCELLED
    assert ledger(harness, order_id) == ["authorize", "void"]
    assert effects(harness, order_id, "gateway") == {"authorize", "void"}
    assert order_violations(harness.store, [order_id]) == {}


def test_a_cancellation_cannot_end_an_order_the_shipping_step_claimed(
        harness: Harness) -> None:
    order_id = harness.submit()
    harness.run_until(order_id, S.RESERVED)
    harness.store.transition(order_id, S.SHIPPING, expected=[S.RESERVED])  # ship claimed it
    assert cancel(harness.store, order_id, "too late?") is Cancellation.TOO_LATE
    harness.drain()
    assert harness.store.status(order_id) is S.COMPLETED
    assert harness.store.shipment(order_id).tracking_number.startswith("TRK")
    assert order_violations(harness.store, [order_id]) == {}


def test_an_authorization_whose_response_was_lost_is_found_and_voided(
        harness: Harness) -> None:
    order_id = harness.submit()
    harness.deliver(Task.VALIDATE)
    harness.outages["gateway"] = DOWN  # half the failures come after the effect
    while harness.store.status(order_id) is not S.COMPENSATING:
        harness.deliver(Task.AUTHORIZE)
    harness.outages.clear()
    harness.drain()
    assert harness.store.status(order_id) is S.FAILED
    if "authorize" in effects(harness, order_id, "gateway"):  # the lost response did land
        assert ledger(harness, order_id) == ["authorize", "void"]
    assert order_violations(harness.store, [order_id]) == {}


def test_a_shipment_whose_response_was_lost_is_voided_at_the_carrier(
        harness: Harness) -> None:
    order_id = harness.submit()
    harness.run_until(order_id, S.RESERVED)
    harness.outages["carrier"] = DOWN
    harness.run_until(order_id, S.COMPENSATING)
    harness.outages.clear()
    harness.drain()
    assert harness.store.status(order_id) is S.FAILED
    assert ledger(harness, order_id) == ["authorize", "capture", "refund"]
    carrier = effects(harness, order_id, "carrier")
    assert carrier in (set(), {"shipment", "shipment:cancel"}), carrier
    assert order_violations(harness.store, [order_id]) == {}


def test_forged_line_updates_are_dead_lettered_at_once_and_change_no_stock(
        harness: Harness) -> None:
    from pipeline.domain import StockOp, StockUpdate
    from pipeline.inmemory import QueuedMessage

    before = harness.store.stock_levels()
    sku = f"{harness.tag}-A"
    harness.broker.stock_updates([StockUpdate("ghost-order", sku, 7, StockOp.RESERVE)])
    assert harness.deliver(Task.APPLY_LINE) == "dead"
    harness.broker._put(QueuedMessage(Task.APPLY_LINE, ("ghost-order", sku, 7, "bogus"),
                                      group=sku, dedup="x"))
    assert harness.deliver(Task.APPLY_LINE) == "dead"  # the first receive: no retries
    assert [m.receives for m, _ in harness.broker.dead] == [1, 1]
    assert harness.store.stock_levels() == before
    assert harness.store.reservations("ghost-order") == []
    # The product's group is not held up: a real order for it completes.
    order_id = harness.submit()
    harness.drain()
    assert harness.store.status(order_id) is S.COMPLETED


def test_a_stock_release_that_gives_up_leaves_the_order_waiting_until_it_is_released(
        harness: Harness) -> None:
    from pipeline import steps

    order_id = harness.submit(lines=[("A", 2), ("B", 5)])  # B has 1 in stock: compensation
    harness.run_until(order_id, S.COMPENSATING)
    releases = [m for m in harness.broker.deliverable()
                if m.task is Task.APPLY_LINE and m.args[3] == "release"]
    while not releases:  # the compensation's undos come one by one, newest first
        harness.deliver()
        releases = [m for m in harness.broker.deliverable()
                    if m.task is Task.APPLY_LINE and m.args[3] == "release"]
    release = releases[0]
    # Every attempt failed: the worker gives up and dead-letters it.
    harness.broker.queue.remove(release)
    harness.broker.dead.append((release, "RuntimeError: the store went away"))
    steps.give_up(harness.context(attempt=3), Task.APPLY_LINE, release.args,
                  RuntimeError("the store went away"), "RuntimeError: the store went away")
    harness.drain()
    assert harness.store.status(order_id) is S.NEEDS_ATTENTION  # not ended with A held
    assert reserved(harness, release.args[1]) == 2
    assert harness.store.line_states(order_id)[release.args[1]] == "RESERVED"
    assert told(harness, order_id) == []

    harness.reconcile()
    harness.drain()
    assert harness.store.status(order_id) is S.OUT_OF_STOCK
    assert reserved(harness, release.args[1]) == 0
    assert harness.store.line_states(order_id)[release.args[1]] == "RELEASED"
    assert order_violations(harness.store, [order_id]) == {}
