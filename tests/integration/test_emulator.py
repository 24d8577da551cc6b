"""The embedded emulator: loopback only, URLs on its own host, state that survives a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.sqs.emulator import start_emulator
from pipeline.testing import wait_until

pytestmark = pytest.mark.integration


def client(endpoint: str) -> object:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def test_a_restart_on_persisted_state_loses_no_message(tmp_path: Path) -> None:
    first = start_emulator(0, data_dir=tmp_path / "state")
    try:
        sqs = client(first.endpoint)
        url = sqs.create_queue(QueueName="persist-me")["QueueUrl"]  # type: ignore[attr-defined]
        assert url.startswith(first.endpoint + "/"), url
        sqs.send_message(QueueUrl=url, MessageBody="order-42")  # type: ignore[attr-defined]
        port = first.port
    finally:
        first.stop()
    second = start_emulator(port, data_dir=tmp_path / "state")
    try:
        sqs = client(second.endpoint)
        url = sqs.get_queue_url(QueueName="persist-me")["QueueUrl"]  # type: ignore[attr-defined]
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)  # type: ignore[attr-defined]
        assert [m["Body"] for m in got["Messages"]] == ["order-42"]
    finally:
        second.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on `port`, from the kernel's table."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_it_listens_on_loopback_only() -> None:
    emulator = start_emulator(0)
    try:
        assert emulator.endpoint.startswith("http://127.0.0.1:")
        assert listening_addresses(emulator.port) == {"0100007F"}  # 127.0.0.1, nothing else
    finally:
        emulator.stop()


def test_counts_follow_the_clock_without_a_consumer() -> None:
    """A message whose visibility ran out counts as visible again, as on AWS, even when
    nothing polls the queue (stock fauxqs recounts only on a receive)."""
    emulator = start_emulator(0)
    try:
        sqs: Any = client(emulator.endpoint)
        url = sqs.create_queue(QueueName="recount", Attributes={"VisibilityTimeout": "600"}
                               )["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="retry-me")
        receipt = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=1)

        def counts() -> tuple[int, int]:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            ])["Attributes"]
            return (int(attrs["ApproximateNumberOfMessages"]),
                    int(attrs["ApproximateNumberOfMessagesNotVisible"]))

        assert counts() == (0, 1)
        assert wait_until(lambda: counts() == (1, 0), timeout=5,
                          message="the expired message to count as visible")
    finally:
        emulator.stop()
