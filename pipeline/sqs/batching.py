"""Several task messages in one SendMessageBatch.

Celery publishes one message per `apply_async`, and kombu sends each with its
own SendMessage: ~1 ms of botocore CPU and one SQS request apiece. Where one
piece of code publishes several at once (an order's lines fanned out on
inventory.fifo, a bulk submit), `sends_batched()` holds the sends this thread
makes inside it and sends them when it ends: per queue, in order, ten to a
request. The messages are Celery's own, built by Celery and kombu exactly as
before (group and deduplication ids, attributes, base64 body); only the last
call changes (pipeline.sqs.transport.Channel.sqs hands kombu a `Capture`).

Nothing is sent before the block ends, and everything held is sent when it
ends, also when the block raised (what it published before the error was
sent before this module existed too). An entry SQS refuses in a batch is sent
again on its own, so its error surfaces as SendMessage's would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["MAX_BATCH", "MAX_BATCH_BYTES", "Capture", "capturing", "send_all", "sends_batched"]

MAX_BATCH = 10  # entries per SendMessageBatch (SQS's limit)
# SQS's limit on a batch's total payload is 256 KiB (1 MiB on AWS since 2025; the
# emulator and older regions: 256 KiB). Celery's messages here are ~2-4 KiB.
MAX_BATCH_BYTES = 256 * 1024 - 8 * 1024  # room for attribute names and types

_local = threading.local()


@contextmanager
def sends_batched() -> Iterator[None]:
    """Hold this thread's task-message sends until the block ends, then batch them."""
    if getattr(_local, "held", None) is not None:  # nested: the outermost block sends
        yield
        return
    _local.held = []
    try:
        yield
    finally:
        held, _local.held = _local.held, None
        send_all(held)


class Capture:
    """A botocore SQS client whose send_message is held for the batch; any other
    call (a queue-URL lookup, say) goes to the client."""

    def __init__(self, client: Any, held: list[tuple[Any, dict[str, Any]]]) -> None:
        self._client = client
        self._held = held

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self._held.append((self._client, kwargs))
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def capturing(client: Any) -> Any:
    """`client`, or a Capture of it while this thread is inside `sends_batched`."""
    held = getattr(_local, "held", None)
    return client if held is None else Capture(client, held)


def _size(kwargs: dict[str, Any]) -> int:
    attributes = kwargs.get("MessageAttributes") or {}
    return len(kwargs["MessageBody"].encode()) + sum(
        len(name) + len(str(value)) for name, value in attributes.items())


def _chunks(sends: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Batches in publish order. A group appears at most once per batch, so an entry
    sent again on its own (below) cannot land behind a later one of its group."""
    chunk: list[dict[str, Any]] = []
    groups: set[str] = set()
    size = 0
    for kwargs in sends:
        this, group = _size(kwargs), kwargs.get("MessageGroupId")
        if chunk and (len(chunk) == MAX_BATCH or size + this > MAX_BATCH_BYTES
                      or (group is not None and group in groups)):
            yield chunk
            chunk, groups, size = [], set(), 0
        chunk.append(kwargs)
        size += this
        if group is not None:
            groups.add(group)
    if chunk:
        yield chunk


def send_all(held: list[tuple[Any, dict[str, Any]]]) -> None:
    """Send what was held: per client and queue, in the order it was published."""
    by_queue: dict[tuple[int, str], tuple[Any, list[dict[str, Any]]]] = {}
    for client, kwargs in held:
        by_queue.setdefault((id(client), kwargs["QueueUrl"]), (client, []))[1].append(kwargs)
    for client, sends in by_queue.values():
        for chunk in _chunks(sends):
            if len(chunk) == 1:
                client.send_message(**chunk[0])
                continue
            url = chunk[0]["QueueUrl"]
            entries = [{"Id": str(n), **{k: v for k, v in kwargs.items() if k != "QueueUrl"}}
                       for n, kwargs in enumerate(chunk)]
            reply = client.send_message_batch(QueueUrl=url, Entries=entries)
            for failed in sorted(reply.get("Failed") or [], key=lambda f: int(f["Id"])):
                client.send_message(**chunk[int(failed["Id"])])
