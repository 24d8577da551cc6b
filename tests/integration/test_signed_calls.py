"""The transport's hand-signed sends, receives and batch deletes, through kombu's own
channel against the emulator: what goes out by hand is what a blocking consumer
receives by hand, an ack deletes by hand, and `PIPELINE_SQS_SIGNED_CALLS=false`
leaves botocore alone."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from kombu import Connection, Exchange, Queue

from config.celery import celery_config
from config.settings import Settings
from config.topology import EVENT_EXCHANGE, EVENT_QUEUE_PREFIX
from pipeline.sqs.emulator import Emulator
from pipeline.sqs.signed import SignedCalls, SignedSNS
from pipeline.testing import wait_until

pytestmark = pytest.mark.integration


def _connection(emulator: Emulator, signed: bool) -> Connection:
    settings = Settings(sqs_endpoint_url=emulator.endpoint, sqs_signed_calls=signed,
                        queue_prefix=f"s{uuid.uuid4().hex[:6]}-", wait_time_seconds=1)
    config = celery_config(settings)
    return Connection(config["broker_url"], transport=config["broker_transport"],
                      transport_options=config["broker_transport_options"])


@pytest.fixture
def conn(emulator: Emulator, request: pytest.FixtureRequest) -> Iterator[Connection]:
    connection = _connection(emulator, signed=request.param)
    yield connection
    connection.release()


def _roundtrip(conn: Connection, name: str) -> tuple[Any, list[str], str]:
    queue = Queue(name, Exchange(name), routing_key=name)
    channel = conn.default_channel
    producer = conn.Producer(channel)
    with conn.SimpleQueue(queue) as simple:  # declares the queue
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name,
                             declare=[queue], serializer="json")
        bodies = []
        while len(bodies) < 3:
            message = simple.get(timeout=10)
            bodies.append(str(message.payload["n"]))
            message.ack()
        channel.flush_acks()  # the batch delete, now rather than after its window
        return channel, bodies, channel._new_queue(name)


@pytest.mark.parametrize("conn", [True], indirect=True)
def test_sends_and_acks_go_by_hand_and_arrive(conn: Connection, emulator: Emulator) -> None:
    channel, bodies, url = _roundtrip(conn, f"signed-{uuid.uuid4().hex[:6]}")
    assert isinstance(channel.sqs(), SignedCalls)
    assert sorted(bodies) == ["0", "1", "2"]
    sqs: Any = boto3.client("sqs", endpoint_url=emulator.endpoint, region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")

    def deleted() -> bool:  # the acks' DeleteMessageBatch went out by hand and took
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return all(v == "0" for v in attrs["Attributes"].values())

    wait_until(deleted, timeout=30, message="the acked messages deleted")


@pytest.mark.parametrize("conn", [False], indirect=True)
def test_switched_off_the_channel_hands_out_botocore(conn: Connection) -> None:
    channel, bodies, _ = _roundtrip(conn, f"plain-{uuid.uuid4().hex[:6]}")
    assert sorted(bodies) == ["0", "1", "2"]
    assert not isinstance(channel.sqs(), SignedCalls)
    assert type(channel.sqs()).__name__ == "SQS"  # botocore's generated client class


@pytest.mark.parametrize("conn", [False], indirect=True)
def test_channels_of_a_process_share_one_botocore_client(conn: Connection) -> None:
    """A threads lane opens a channel per thread; each used to build its own client,
    which parses botocore's models again. A forked child builds its own (a pool
    process must not share its parent's sockets)."""
    first, second = conn.channel(), conn.channel()
    try:
        assert first.sqs() is second.sqs()
        assert first is not second
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the child: a channel of its own, and is its client the parent's?
            try:
                with conn.clone() as mine:
                    shared = mine.channel().sqs() is first.sqs()
                os.write(write, b"shared" if shared else b"own")
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 16)
        os.close(read)
        os.waitpid(child, 0)
        assert answer == b"own"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("conn", [True], indirect=True)
def test_a_fanout_publish_goes_by_hand_and_reaches_every_bound_queue(conn: Connection) -> None:
    """Events and remote-control broadcasts are SNS publishes (kombu's fanout): a
    lane's once-a-second batch of task events goes signed by hand too."""
    channel = conn.default_channel
    exchange = Exchange(EVENT_EXCHANGE, type="topic")
    monitors = [Queue(f"{EVENT_QUEUE_PREFIX}.probe-{uuid.uuid4().hex[:8]}", exchange,
                      routing_key="#") for _ in range(2)]
    received: list[tuple[str, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        received.append((message.delivery_info["routing_key"], body))
        message.ack()

    with conn.Consumer(monitors, callbacks=[on_message], accept=["json"]):  # subscribes
        assert isinstance(channel.fanout.get_client(), SignedSNS)
        long_batch = [{"type": "task-succeeded", "n": n, "note": "100% & more; é"}
                      for n in range(300)]  # a long body: the fast form encoding
        conn.Producer(channel).publish(long_batch, exchange=exchange, routing_key="task.multi",
                                       declare=[exchange], serializer="json")

        def both_arrived() -> bool:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
            return len(received) >= 2

        wait_until(both_arrived, timeout=30, message="the batch in both monitors' queues")
    assert [body for _, body in received] == [long_batch, long_batch]
