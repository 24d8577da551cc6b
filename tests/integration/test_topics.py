"""Business events reach the topology's SNS topics, with attributes that subscription
filter policies match on (outbox + `pipeline relay`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline import get_order, submit_order
from pipeline.dev.demo import sample_order
from pipeline.sqs.signed import SignedSNS
from pipeline.store import outbox
from pipeline.testing import stock_catalog, wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration


class Subscriber:
    """An SQS queue of the test's own, subscribed to a topic with a filter policy."""

    def __init__(self, pipeline: Pipeline, topic: str, policy: dict[str, Any]) -> None:
        rt = pipeline.rt
        self.sqs, self.sns = rt.aws_client("sqs"), rt.aws_client("sns")
        name = f"{rt.settings.queue_prefix}sub-{topic}-{uuid.uuid4().hex[:6]}"
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"]
                                            )["Attributes"]["QueueArn"]
        topic_arn = next(t["TopicArn"] for t in self.sns.list_topics()["Topics"]
                         if t["TopicArn"].endswith(":" + rt.settings.queue_prefix + topic))
        self.subscription = self.sns.subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps(policy)},
        )["SubscriptionArn"]
        self.received: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                           MessageAttributeNames=["All"], WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return self.received
            for m in messages:
                attributes = {k: v["StringValue"] for k, v in
                              (m.get("MessageAttributes") or {}).items()}
                self.received.append({"body": json.loads(m["Body"]), "attributes": attributes})
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def close(self) -> None:
        self.sns.unsubscribe(SubscriptionArn=self.subscription)
        self.sqs.delete_queue(QueueUrl=self.url)


@pytest.fixture
def subscribers(pipeline: Pipeline) -> Iterator[dict[str, Subscriber]]:
    stock_catalog(pipeline.rt.store)
    subs = {
        "finished": Subscriber(pipeline, "order-status", {"terminal": ["true"]}),
        "captures": Subscriber(pipeline, "payment-events", {"kind": ["capture"]}),
        "stockouts": Subscriber(pipeline, "inventory-alerts",
                                {"eventType": ["inventory.out_of_stock"]}),
        "health": Subscriber(pipeline, "system-health", {"severity": ["critical", "error"]}),
    }
    yield subs
    for sub in subs.values():
        sub.close()


def events_for(sub: Subscriber, order_id: str) -> list[dict[str, Any]]:
    return [e for e in sub.drain() if e["body"].get("orderId") == order_id]


def test_each_topic_delivers_what_its_filter_policy_asks_for(
        pipeline: Pipeline, subscribers: dict[str, Subscriber]) -> None:
    # The relay's PublishBatch goes by hand (pipeline.sqs.signed): what the filter
    # policies below match on are the attributes it encodes itself.
    assert isinstance(pipeline.rt.sns_publisher(), SignedSNS)
    pipeline.rt.store.set_stock("SKU-RARE", 0)
    completed = submit_order(sample_order("single", 700))
    short = submit_order(sample_order("out_of_stock", 701))
    for order_id in (completed, short):
        wait_until(lambda o=order_id: get_order(o)["terminal"], timeout=60,
                   message=f"order {order_id} to finish")

    finished = wait_until(lambda: len(events_for(subscribers["finished"], completed)) == 1
                          and events_for(subscribers["finished"], completed), timeout=20,
                          message="the completed order's terminal status event")
    assert finished[0]["body"]["status"] == "COMPLETED"
    assert finished[0]["attributes"] == {"eventType": "order.status_changed",
                                         "status": "COMPLETED", "terminal": "true"}
    short_end = wait_until(lambda: events_for(subscribers["finished"], short), timeout=20,
                           message="the short order's terminal status event")
    assert [e["body"]["status"] for e in short_end] == ["OUT_OF_STOCK"]

    captures = wait_until(lambda: events_for(subscribers["captures"], completed), timeout=20,
                          message="the capture event")
    assert [e["attributes"]["kind"] for e in captures] == ["capture"]
    assert events_for(subscribers["captures"], short) == []  # voided, never captured

    stockout = wait_until(lambda: events_for(subscribers["stockouts"], short), timeout=20,
                          message="the out-of-stock alert")
    assert stockout[0]["body"]["productId"] == "SKU-RARE"
    assert stockout[0]["attributes"]["severity"] == "critical"

    # Only terminal statuses passed the filter: no VALIDATED, RESERVED, ... events.
    statuses = {e["body"]["status"] for e in subscribers["finished"].received}
    assert statuses <= {"COMPLETED", "REJECTED", "PAYMENT_DECLINED", "OUT_OF_STOCK",
                        "SHIPPING_FAILED", "CANCELLED", "FAILED"}
    wait_until(lambda: not outbox.pending(pipeline.rt.store.engine), timeout=20,
               message="the outbox to drain")


def test_every_status_change_is_announced_once_and_in_order(pipeline: Pipeline) -> None:
    """The outbox row is written in the transition's own transaction: one event per
    change, in the order the changes happened."""
    stock_catalog(pipeline.rt.store)
    order_id = submit_order(sample_order("single", 702))
    wait_until(lambda: get_order(order_id)["terminal"], timeout=60, message="the order")
    from sqlalchemy import select

    from pipeline.store import schema as t

    with pipeline.rt.store.engine.connect() as conn:
        bodies = conn.execute(select(t.outbox.c.body).where(
            t.outbox.c.event_type == "order.status_changed").order_by(t.outbox.c.id)
        ).scalars().all()
    statuses = [b["status"] for b in bodies if b["orderId"] == order_id]
    assert statuses == ["VALIDATED", "AUTHORIZING", "RESERVING", "RESERVED", "SHIPPING",
                        "SHIPPED", "COMPLETED"]


def test_an_event_sns_cannot_take_is_parked_and_the_rest_flow_with_two_relays(
        pipeline: Pipeline) -> None:
    """Regression: a 929 kB status event was retried forever ("Message too long");
    and only one relay could run."""
    from pipeline.dev.procfile import read_procfile

    second = pipeline.lanes.start(next(line for line in read_procfile()
                                       if line.name == "relay"))
    subscriber = Subscriber(pipeline, "system-health", {"eventType": ["health.test"]})
    try:
        engine = pipeline.rt.store.engine
        tag = uuid.uuid4().hex[:8]
        outbox.record_now(engine, outbox.SYSTEM_HEALTH, "health.test",
                          {"tag": tag, "blob": "x" * 300_000}, severity="info")
        for n in range(25):
            outbox.record_now(engine, outbox.SYSTEM_HEALTH, "health.test",
                              {"tag": tag, "n": n}, severity="info")
        wait_until(lambda: not outbox.pending(engine), timeout=30,
                   message="every event published or parked")
        assert outbox.parked(engine) >= 1
        wait_until(lambda: len([e for e in subscriber.drain() if e["body"].get("tag") == tag])
                   >= 25, timeout=30, message="the 25 small events at the subscriber")
        mine = sorted(e["body"]["n"] for e in subscriber.drain()
                      if e["body"].get("tag") == tag)
        assert mine == list(range(25)), mine  # each once, though two relays run
    finally:
        subscriber.close()
        pipeline.lanes.stop_one(second)
