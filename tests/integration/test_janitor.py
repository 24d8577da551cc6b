"""The janitor alone, on an emulator of its own (no worker or Flower sweeping beside it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from pipeline.monitoring.janitor import fanout_topics, sweep
from pipeline.sqs.emulator import Emulator, start_emulator
from pipeline.sqs.transient import LEASE_TAG

pytestmark = pytest.mark.integration
PREFIX = "jan-"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = start_emulator(0)
    yield emu
    emu.stop()


def clients(emulator: Emulator) -> tuple[Any, Any]:
    options = {"endpoint_url": emulator.endpoint, "region_name": "us-east-1",
               "aws_access_key_id": "local", "aws_secret_access_key": "local"}
    return boto3.client("sqs", **options), boto3.client("sns", **options)


def queue_with_lease(sqs: Any, sns: Any, topic: str, name: str, until: float) -> str:
    url: str = sqs.create_queue(QueueName=name, tags={LEASE_TAG: str(int(until))})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]
                                   )["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true"})
    return url


def test_expired_leases_go_with_their_subscriptions_and_live_ones_stay(
        emulator: Emulator) -> None:
    sqs, sns = clients(emulator)
    topic = sns.create_topic(Name=f"{PREFIX}celeryev")["TopicArn"]
    now = time.time()
    queue_with_lease(sqs, sns, topic, f"{PREFIX}celeryev-dead", now - 1)
    queue_with_lease(sqs, sns, topic, f"{PREFIX}orders_vm-celery-pidbox", now - 1)
    queue_with_lease(sqs, sns, topic, f"{PREFIX}celeryev-alive", now + 600)
    work = sqs.create_queue(QueueName=f"{PREFIX}orders")["QueueUrl"]  # never transient

    report = sweep(sqs, sns, prefix=PREFIX, lease_s=180,
                   topics=fanout_topics(PREFIX, ["celeryev", "celery.pidbox"]))

    assert sorted(report.queues_deleted) == [f"{PREFIX}celeryev-dead",
                                             f"{PREFIX}orders_vm-celery-pidbox"]
    assert report.queues_kept == 1 and len(report.subscriptions_removed) == 2
    left = {u.rsplit("/", 1)[-1] for u in sqs.list_queues(QueueNamePrefix=PREFIX)["QueueUrls"]}
    assert left == {f"{PREFIX}celeryev-alive", f"{PREFIX}orders"}
    endpoints = [s["Endpoint"].rsplit(":", 1)[-1]
                 for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]]
    assert endpoints == [f"{PREFIX}celeryev-alive"]
    assert sqs.get_queue_attributes(QueueUrl=work, AttributeNames=["QueueArn"])
    again = sweep(sqs, sns, prefix=PREFIX, lease_s=180, topics=[f"{PREFIX}celeryev"])
    assert again.queues_deleted == [] and again.subscriptions_removed == []
