"""A message whose task is still running stays invisible past its visibility timeout."""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import pytest

from pipeline.sqs.emulator import Emulator
from pipeline.sqs.heartbeat import VisibilityKeeper
from pipeline.testing import wait_until

pytestmark = pytest.mark.integration

# The keeper extends at half of it: the margin a busy box's scheduler gets before a
# kept message would show again. 2 s left it 1 s, and the keeper's thread built its
# boto3 client inside that second.
VISIBILITY_S = 4
KEPT_FOR_S = 2.5 * VISIBILITY_S  # two extensions and a half


def client(emulator: Emulator) -> Any:
    return boto3.client("sqs", endpoint_url=emulator.endpoint, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def receive(sqs: Any, url: str) -> list[dict[str, Any]]:
    return list(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") or [])


def test_a_kept_message_is_not_redelivered_until_released(emulator: Emulator) -> None:
    sqs = client(emulator)
    url = sqs.create_queue(QueueName=f"keep-{uuid.uuid4().hex[:8]}",
                           Attributes={"VisibilityTimeout": str(VISIBILITY_S)})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="slow task")
    (message,) = receive(sqs, url)
    keeper = VisibilityKeeper(lambda: sqs)  # a worker's keeper has its client by then

    with keeper.keep(url, message["ReceiptHandle"], VISIBILITY_S):
        deadline = time.monotonic() + KEPT_FOR_S
        while time.monotonic() < deadline:
            assert receive(sqs, url) == [], "delivered again while its task still ran"
            time.sleep(0.25)

    again = wait_until(lambda: receive(sqs, url), timeout=10,
                       message="redelivery once no longer kept")
    assert again[0]["Body"] == "slow task"


def test_without_the_keeper_the_same_message_comes_back(emulator: Emulator) -> None:
    """The control: the emulator does redeliver after the visibility timeout."""
    sqs = client(emulator)
    url = sqs.create_queue(QueueName=f"nokeep-{uuid.uuid4().hex[:8]}",
                           Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="slow task")
    assert len(receive(sqs, url)) == 1
    assert wait_until(lambda: receive(sqs, url), timeout=30, message="redelivery")


def test_a_held_message_waiting_to_run_is_not_redelivered_until_released(
        emulator: Emulator) -> None:
    """The FIFO gate holds the messages waiting behind their product's running one."""
    sqs = client(emulator)
    url = sqs.create_queue(QueueName=f"hold-{uuid.uuid4().hex[:8]}.fifo", Attributes={
        "FifoQueue": "true", "VisibilityTimeout": str(VISIBILITY_S)})["QueueUrl"]
    for n in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", MessageGroupId="p",
                         MessageDeduplicationId=f"d{n}")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["m0", "m1"]  # AWS-like: both in one receive
    keeper = VisibilityKeeper(lambda: sqs)
    tokens = [keeper.hold(url, m["ReceiptHandle"], VISIBILITY_S) for m in got]
    deadline = time.monotonic() + KEPT_FOR_S
    while time.monotonic() < deadline:
        assert receive(sqs, url) == [], "delivered again while held"
        time.sleep(0.25)
    for token in tokens:
        keeper.release(token)
    again = wait_until(lambda: receive(sqs, url), timeout=10, message="redelivery once released")
    assert again[0]["Body"] == "m0"
