"""The order workflow end to end: real workers on the emulator, per database."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from botocore.client import BaseClient

from pipeline import get_order, submit_order, submit_orders
from pipeline.dev.demo import CATALOG, sample_order
from pipeline.errors import InvalidOrder, OrderNotFound
from pipeline.ops.audit import audit
from pipeline.sqs.emulator import Emulator
from pipeline.sqs.signed import SignedCalls
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration

TIMEOUT = 60


@pytest.fixture(autouse=True)
def stocked(pipeline: Pipeline) -> Pipeline:
    for sku, (price, quantity) in CATALOG.items():
        pipeline.rt.store.set_stock(sku, quantity, price=price)
    return pipeline


def run_to_end(document: dict[str, Any]) -> dict[str, Any]:
    order_id = submit_order(document)
    return wait_until(lambda: (view := get_order(order_id))["terminal"] and view,
                      timeout=TIMEOUT, message=f"order {order_id} to finish")


def kinds(view: dict[str, Any], key: str, field: str = "kind") -> list[str]:
    return [entry[field] for entry in view[key]]


def test_single_line_order_completes_with_capture_shipment_and_notification() -> None:
    view = run_to_end(sample_order("single", 1))
    assert view["status"] == "COMPLETED"
    assert kinds(view, "payments") == ["authorize", "capture"]
    assert view["shipment"]["trackingNumber"].startswith("TRK")
    assert [r["state"] for r in view["reservations"]] == ["SHIPPED"]
    assert kinds(view, "notifications", "template") == ["order_shipped"]
    steps = [s["step"] for s in view["timeline"] if s["outcome"] != "retry"]
    assert steps == ["validate", "authorize_payment", "reserve:SKU-BOOK", "ship", "notify"]


def test_multi_line_order_reserves_each_line_in_its_product_group(stocked: Pipeline) -> None:
    before = {r.sku: r for r in stocked.rt.store.stock_levels()}
    view = run_to_end(sample_order("multi", 2))
    assert view["status"] == "COMPLETED"
    assert sorted(r["productId"] for r in view["reservations"]) == [
        "SKU-BOOK", "SKU-MUG", "SKU-PEN"]
    # every reservation came from a FIFO message and carries its sequence number
    assert all(r["reserveSequence"] for r in view["reservations"])
    after = {r.sku: r for r in stocked.rt.store.stock_levels()}
    assert after["SKU-MUG"].shipped - before["SKU-MUG"].shipped == 2
    assert after["SKU-PEN"].available == before["SKU-PEN"].available - 5


def test_a_multi_line_orders_fan_out_is_one_send_message_batch(
        stocked: Pipeline, emulator: Emulator) -> None:
    """authorize publishes the order's three lines in one request (pipeline.sqs.batching);
    nothing else in the pipeline sends batches."""
    emulator.reset_request_counts()
    view = run_to_end(sample_order("multi", 2))
    assert view["status"] == "COMPLETED"
    assert len(view["reservations"]) == 3
    assert emulator.request_counts().get("SQS.SendMessageBatch") == 1


def test_a_step_is_published_without_a_declare_and_with_its_argument_repr() -> None:
    """Queues are provisioned: declaring one per publish cost kombu two entity copies.
    The reprs Flower shows are built from the ids without Celery's saferepr."""
    from celery.signals import before_task_publish

    seen: list[dict[str, Any]] = []

    def record(sender: str | None = None, declare: Any = None, body: Any = None,
               headers: dict[str, Any] | None = None, **_: Any) -> None:
        # the rest of the chain, published by the worker: the same options travel with it
        rest = [(s["task"], s["options"]["declare"], s["options"]["argsrepr"])
                for s in body[2]["chain"]]
        seen.append({"task": sender, "declare": declare, "rest": rest, **{
            k: (headers or {}).get(k) for k in ("argsrepr", "kwargsrepr")}})

    before_task_publish.connect(record, weak=False)
    try:
        order_id = submit_order(sample_order("single", 2))
    finally:
        before_task_publish.disconnect(record)
    assert seen == [{"task": "tasks.validation.validate_order", "declare": [],
                     "argsrepr": f"('{order_id}',)", "kwargsrepr": "{}",
                     "rest": [("tasks.payment.authorize_payment", [], f"('{order_id}',)")]}]
    wait_until(lambda: get_order(order_id)["terminal"], timeout=TIMEOUT,
               message=f"order {order_id} to finish")


def test_workers_log_no_line_per_task_by_default(stocked: Pipeline) -> None:
    """PIPELINE_TASK_LOG is off: Celery's "received" and "succeeded" lines (3 % of a
    lane's CPU) are not written; the workers' own INFO lines still are."""
    logs = [stocked.log_dir / f"{lane}.log" for lane in ("orders", "notifications")]
    sizes = [log.stat().st_size for log in logs]
    view = run_to_end(sample_order("single", 3))
    written = "".join(log.read_bytes()[size:].decode(errors="replace")
                      for log, size in zip(logs, sizes, strict=True))
    assert f"notified order {view['orderId']} via" in written
    assert "] received" not in written and "] succeeded in" not in written


def test_vip_order_runs_every_non_inventory_step_on_the_priority_lane() -> None:
    view = run_to_end(sample_order("vip", 3))
    assert view["status"] == "COMPLETED"
    for step in view["timeline"]:
        expected = "inventory@" if step["step"].startswith("reserve:") else "priority@"
        assert step["worker"].startswith(expected), step


def test_invalid_order_is_rejected_with_reasons_and_the_customer_is_told() -> None:
    view = run_to_end(sample_order("invalid", 4))
    assert view["status"] == "REJECTED"
    assert any("does not match the catalog price" in r for r in view["reasons"])
    assert view["payments"] == [] and view["reservations"] == []
    assert kinds(view, "notifications", "template") == ["order_rejected"]


def test_declined_payment_ends_without_capture_and_notifies() -> None:
    view = run_to_end(sample_order("declined", 5))
    assert view["status"] == "PAYMENT_DECLINED"
    assert kinds(view, "payments") == ["decline"]
    assert view["reservations"] == []
    assert kinds(view, "notifications", "template") == ["payment_declined"]


def test_out_of_stock_releases_reserved_lines_and_voids_the_authorization(
        stocked: Pipeline) -> None:
    stocked.rt.store.set_stock("SKU-RARE", 0)
    pen_before = next(r for r in stocked.rt.store.stock_levels() if r.sku == "SKU-PEN")
    view = run_to_end(sample_order("out_of_stock", 6))
    assert view["status"] == "OUT_OF_STOCK"
    assert view["reasons"] == ["SKU-RARE: out of stock"]
    states = {r["productId"]: r["state"] for r in view["reservations"]}
    assert states == {"SKU-PEN": "RELEASED", "SKU-RARE": "REJECTED"}
    assert kinds(view, "payments") == ["authorize", "void"]
    assert kinds(view, "notifications", "template") == ["out_of_stock"]
    pen_after = next(r for r in stocked.rt.store.stock_levels() if r.sku == "SKU-PEN")
    assert pen_after.available == pen_before.available
    assert pen_after.reserved == pen_before.reserved


def test_permanent_shipping_failure_releases_stock_and_refunds(stocked: Pipeline) -> None:
    view = run_to_end(sample_order("undeliverable", 7))
    assert view["status"] == "SHIPPING_FAILED"
    assert kinds(view, "payments") == ["authorize", "capture", "refund"]
    assert [r["state"] for r in view["reservations"]] == ["RELEASED"]
    assert view["shipment"] is None
    assert kinds(view, "notifications", "template") == ["shipping_failed"]


def test_every_finished_order_leaves_the_ledgers_consistent(stocked: Pipeline) -> None:
    ids = [submit_order(sample_order(kind, 100 + n)) for n, kind in enumerate(
        ["single", "multi", "vip", "declined", "invalid", "undeliverable", "single"])]
    wait_until(lambda: all(get_order(i)["terminal"] for i in ids), timeout=TIMEOUT,
               message="a mixed batch to finish")
    report = audit(stocked.rt.store, order_ids=ids)
    assert report.clean, report.violations
    assert report.max_captures_per_order == 1
    assert report.max_charges_per_key == 1


def sqs_calls_of_this_process(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The SQS API calls this test process makes, counted on their way out.

    The emulator's own counters also see the lanes, which are already sending the
    next steps of these orders on a busy machine; these are only the submitter's,
    through botocore or signed by hand. Every call still goes to the emulator.
    """
    calls: Counter[str] = Counter()
    make_api_call = BaseClient._make_api_call

    def counted(client: BaseClient, operation: str, params: Any) -> Any:
        if client.meta.service_model.service_name == "sqs":
            calls[operation] += 1
        return make_api_call(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counted)
    request = SignedCalls._request

    def counted_by_hand(calls_: SignedCalls, action: str, params: Any) -> Any:
        calls[action] += 1  # pipeline.sqs.signed: sent without botocore
        return request(calls_, action, params)

    monkeypatch.setattr(SignedCalls, "_request", counted_by_hand)
    return calls


def test_submit_orders_sends_the_first_messages_together_and_each_order_runs(
        stocked: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    documents = [sample_order(kind, 200 + n) for n, kind in enumerate(
        ["single", "vip", "single", "declined", "single"])]
    calls = sqs_calls_of_this_process(monkeypatch)
    ids = submit_orders(documents)
    assert ids == [d["orderId"] for d in documents]
    # four normal orders' validations in one batch; the VIP order's is alone on its lane
    assert (calls["SendMessageBatch"], calls["SendMessage"]) == (1, 1)
    monkeypatch.undo()
    wait_until(lambda: all(get_order(i)["terminal"] for i in ids), timeout=TIMEOUT,
               message="the submitted batch to finish")
    assert [get_order(i)["status"] for i in ids] == [
        "COMPLETED", "COMPLETED", "COMPLETED", "PAYMENT_DECLINED", "COMPLETED"]
    assert audit(stocked.rt.store, order_ids=ids).clean
    assert submit_orders(documents) == ids  # again: nothing new runs
    assert all(get_order(i)["terminal"] for i in ids)


def test_submit_orders_stores_nothing_when_one_document_is_invalid(stocked: Pipeline) -> None:
    good, bad = sample_order("single", 300), sample_order("single", 301)
    bad["items"][0]["quantity"] = 0
    with pytest.raises(InvalidOrder, match="order 2 of 2"):
        submit_orders([good, bad])
    with pytest.raises(OrderNotFound):
        stocked.rt.store.status(good["orderId"])


def test_submitting_the_same_document_twice_runs_one_order() -> None:
    document = sample_order("single", 8)
    first = run_to_end(document)
    assert submit_order(document) == first["orderId"]
    again = get_order(first["orderId"])
    assert [s["step"] for s in again["timeline"]] == [s["step"] for s in first["timeline"]]
    assert Decimal(again["totalAmount"]) == Decimal(document["totalAmount"])
