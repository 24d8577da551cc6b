"""The embedded emulator: loopback only, URLs on its own host, state that survives a restart."""

from __future__ import annotations

import uuid
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


@pytest.mark.parametrize(("mode", "first", "while_in_flight"), [("aws", 5, 0), ("fauxqs", 1, 0)])
def test_fifo_receives_take_several_messages_of_a_group_as_aws_does(
        mode: str, first: int, while_in_flight: int) -> None:
    """AWS returns up to ten messages of one group per receive (in order) and then
    none while they are in flight; fauxqs alone returns one."""
    emulator = start_emulator(0, fifo_receive=mode)
    try:
        sqs = boto3.client("sqs", endpoint_url=emulator.endpoint, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")
        url = sqs.create_queue(QueueName=f"g-{uuid.uuid4().hex[:6]}.fifo", Attributes={
            "FifoQueue": "true", "VisibilityTimeout": "30"})["QueueUrl"]
        for n in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", MessageGroupId="g",
                             MessageDeduplicationId=f"d{n}")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert [m["Body"] for m in got] == [f"m{n}" for n in range(first)]
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert len(again) == while_in_flight  # the group is locked while they are out
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert [m["Body"] for m in rest] == [f"m{n}" for n in range(first, 5)][:10 if
                                                                              mode == "aws" else 1]
    finally:
        emulator.stop()


def test_fifo_groups_are_not_left_locked_after_a_restart_on_persisted_state(
        tmp_path: Path) -> None:
    """Regression: with several messages of a group in flight at a restart, fauxqs's
    lock counter drifted and the group stayed locked with nothing in flight: every
    receive came back empty and the inventory lane stood still (the chaos run)."""
    emulator = start_emulator(0, data_dir=tmp_path)
    port = emulator.port
    sqs = client(emulator.endpoint)
    url = sqs.create_queue(QueueName="g.fifo", Attributes={  # type: ignore[attr-defined]
        "FifoQueue": "true", "VisibilityTimeout": "1"})["QueueUrl"]
    for n in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}",  # type: ignore[attr-defined]
                         MessageGroupId=f"g{n % 2}", MessageDeduplicationId=f"d{n}")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)  # type: ignore[attr-defined]
    assert len(got["Messages"]) == 6
    emulator.stop()
    emulator = start_emulator(port, data_dir=tmp_path)
    try:
        sqs = client(emulator.endpoint)
        seen: set[str] = set()

        def receive_all() -> bool:
            reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,  # type: ignore[attr-defined]
                                        WaitTimeSeconds=1)
            for m in reply.get("Messages", []):
                seen.add(m["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])  # type: ignore[attr-defined]
            return len(seen) == 6

        wait_until(receive_all, timeout=20, message="every message again after the restart")
    finally:
        emulator.stop()


@pytest.mark.parametrize("restart", [False, True])
def test_a_message_made_visible_again_is_never_lost_with_persistence(
        tmp_path: Path, restart: bool) -> None:
    """Regression: fauxqs 2.4.1 lost every message made visible again (visibility 0)
    when it kept state on disk (a NOT NULL column written NULL), which is how a
    hand-back after a killed worker became an order stuck in RECEIVED."""
    emulator = start_emulator(0, data_dir=tmp_path)
    port = emulator.port
    try:
        sqs = client(emulator.endpoint)
        url = sqs.create_queue(QueueName="handback", Attributes={  # type: ignore[attr-defined]
            "VisibilityTimeout": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="step")  # type: ignore[attr-defined]
        (message,) = sqs.receive_message(QueueUrl=url)["Messages"]  # type: ignore[attr-defined]
        if restart:
            emulator.stop()
            emulator = start_emulator(port, data_dir=tmp_path)
            sqs = client(emulator.endpoint)
        sqs.change_message_visibility(  # type: ignore[attr-defined]
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)  # type: ignore[attr-defined]
        assert [m["Body"] for m in again.get("Messages", [])] == ["step"]
    finally:
        emulator.stop()
