"""Sends held inside sends_batched go out as SendMessageBatch: per queue, in publish
order, ten to a request, a FIFO group at most once per request, refusals re-sent alone."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pipeline.sqs import batching
from pipeline.sqs.batching import capturing, sends_batched


class RecordingSQS:
    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[tuple[str, Any]] = []
        self.refuse = refuse  # bodies a batch refuses

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("one", kwargs["MessageBody"]))
        return {"MessageId": "m"}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]
                           ) -> dict[str, Any]:
        self.calls.append(("batch", [(QueueUrl, e["MessageBody"]) for e in Entries]))
        return {"Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"}
                           for e in reversed(Entries) if e["MessageBody"] in self.refuse]}

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"http://q/{QueueName}"}


def put(client: Any, url: str, body: str, **extra: Any) -> None:
    """What kombu's _put does with the client the channel hands it."""
    capturing(client).send_message(QueueUrl=url, MessageBody=body, **extra)


def test_outside_a_block_every_send_goes_out_at_once() -> None:
    sqs = RecordingSQS()
    put(sqs, "http://q/a", "1")
    assert sqs.calls == [("one", "1")]
    assert capturing(sqs) is sqs


def test_a_block_sends_per_queue_in_publish_order_ten_to_a_request() -> None:
    sqs = RecordingSQS()
    with sends_batched():
        for n in range(12):
            put(sqs, "http://q/a", f"a{n}")
        put(sqs, "http://q/b", "b0")
        assert sqs.calls == []  # nothing leaves before the block ends
        assert capturing(sqs).get_queue_url(QueueName="x") == {"QueueUrl": "http://q/x"}
    assert sqs.calls == [
        ("batch", [("http://q/a", f"a{n}") for n in range(10)]),
        ("batch", [("http://q/a", "a10"), ("http://q/a", "a11")]),
        ("one", "b0"),  # alone on its queue: a plain SendMessage
    ]


def test_a_fifo_group_appears_once_per_request_so_a_resend_keeps_its_place() -> None:
    sqs = RecordingSQS(refuse={"p1-first"})
    with sends_batched():
        put(sqs, "http://q/i.fifo", "p1-first", MessageGroupId="p1", MessageDeduplicationId="1")
        put(sqs, "http://q/i.fifo", "p2", MessageGroupId="p2", MessageDeduplicationId="2")
        put(sqs, "http://q/i.fifo", "p1-second", MessageGroupId="p1",
            MessageDeduplicationId="3")
    assert sqs.calls == [
        ("batch", [("http://q/i.fifo", "p1-first"), ("http://q/i.fifo", "p2")]),
        ("one", "p1-first"),  # refused in the batch: sent alone before p1's next update
        ("one", "p1-second"),
    ]


def test_refused_entries_are_sent_again_alone_in_publish_order() -> None:
    sqs = RecordingSQS(refuse={"b", "d"})
    with sends_batched():
        for body in "abcd":
            put(sqs, "http://q/a", body)
    assert sqs.calls[1:] == [("one", "b"), ("one", "d")]


def test_a_batch_is_split_before_it_outgrows_sqs_payload_limit() -> None:
    sqs = RecordingSQS()
    big = "x" * (batching.MAX_BATCH_BYTES // 3 + 1)
    with sends_batched():
        for n in range(4):
            put(sqs, "http://q/a", f"{n}{big}")
    # two fit under the limit, a third would not
    assert [(kind, [body[0] for _, body in entries]) for kind, entries in sqs.calls] == [
        ("batch", ["0", "1"]), ("batch", ["2", "3"])]


def test_what_a_failing_block_published_is_still_sent() -> None:
    sqs = RecordingSQS()
    with pytest.raises(RuntimeError), sends_batched():
        put(sqs, "http://q/a", "1")
        put(sqs, "http://q/a", "2")
        raise RuntimeError("the step failed after publishing")
    assert sqs.calls == [("batch", [("http://q/a", "1"), ("http://q/a", "2")])]


def test_a_nested_block_leaves_sending_to_the_outer_one() -> None:
    sqs = RecordingSQS()
    with sends_batched():
        put(sqs, "http://q/a", "1")
        with sends_batched():
            put(sqs, "http://q/a", "2")
        assert sqs.calls == []
    assert sqs.calls == [("batch", [("http://q/a", "1"), ("http://q/a", "2")])]


def test_another_threads_sends_are_not_held_by_this_block() -> None:
    sqs = RecordingSQS()
    with sends_batched():
        other = threading.Thread(target=put, args=(sqs, "http://q/a", "other"))
        other.start()
        other.join()
        assert sqs.calls == [("one", "other")]
        put(sqs, "http://q/a", "mine")
    assert sqs.calls == [("one", "other"), ("one", "mine")]
