"""Acks as DeleteMessageBatch: one per short window, or per event-loop turn on FIFO.

A mixin of pipeline.sqs.transport.Channel, whose basic_ack queues the deletes
(`_acks`) and schedules their flush on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from pipeline.sqs.eventloop import run_soon

__all__ = ["ACK_BATCH_WINDOW_S", "ACK_RETRY_PAUSE_S", "ACK_RETRY_S", "BatchedAcks"]

log = logging.getLogger("pipeline.sqs")
ACK_RETRY_S = 15.0
ACK_RETRY_PAUSE_S = 0.5
# Deletes of acked messages wait this long to go out together. Nothing waits on
# them: the prefetch slot is freed at once and the next step was published before
# the ack; a crash in the window only means a redelivery, which steps absorb.
ACK_BATCH_WINDOW_S = 0.1


class BatchedAcks:
    """The pending deletes of a channel (its basic_ack queues them) and their flushes."""

    qos: Any
    hub: Any

    def _init_acks(self) -> None:
        # by "is FIFO": queue URL -> (queue name, receipts) of acks not yet deleted
        self._acks: dict[bool, dict[str, tuple[str | None, list[str]]]] = {True: {}, False: {}}
        self._ack_flush_scheduled: set[bool] = set()
        self._ack_lock = threading.Lock()

    if TYPE_CHECKING:  # the channel's
        def sqs(self, queue: str | None = None) -> Any: ...

    def flush_acks(self) -> None:
        for fifo in (True, False):
            self._flush_acks_of(fifo)

    def _flush_acks_of(self, fifo: bool) -> None:
        with self._ack_lock:
            pending, self._acks[fifo] = self._acks[fifo], {}
            self._ack_flush_scheduled.discard(fifo)
        for url, (queue, receipts) in pending.items():
            for start in range(0, len(receipts), 10):
                self._delete_batch(url, queue, receipts[start:start + 10])

    def _delete_batch(self, url: str, queue: str | None, receipts: list[str],
                      deadline: float | None = None) -> None:
        """Delete acked messages; a connection failure is retried for ACK_RETRY_S, on
        a timer when there is an event loop (it must keep receiving meanwhile)."""
        entries = [{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts)]
        deadline = time.monotonic() + ACK_RETRY_S if deadline is None else deadline
        while True:
            try:
                reply = self.sqs(queue=queue).delete_message_batch(QueueUrl=url, Entries=entries)
                for failed in reply.get("Failed", []):  # e.g. a receipt from before a restart
                    log.warning("SQS refused to delete an acked message: %s", failed)
                return
            except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as error:
                if time.monotonic() > deadline:
                    log.error("could not delete %d acked message(s) (%s); they come back after "
                              "their visibility timeout and their steps absorb the repeat",
                              len(entries), error)
                    return
                hub = getattr(self, "hub", None)
                if hub is not None:
                    run_soon(hub, hub.call_later, ACK_RETRY_PAUSE_S, self._delete_batch,
                             url, queue, receipts, deadline)
                    return
                time.sleep(ACK_RETRY_PAUSE_S)  # no event loop here (Flower, a CLI)
            except ClientError as error:
                log.warning("SQS refused to delete %d acked message(s): %s", len(entries),
                            error)
                return
