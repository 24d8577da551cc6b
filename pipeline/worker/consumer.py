"""The worker's consumer: garbage on a queue is dead-lettered with a reason.

Celery acks a message it cannot decode (it is lost) and rejects an unknown
or invalid one (on a queue with a redrive policy it then comes back until
maxReceiveCount, minutes apart, and reaches the DLQ with no reason). Here
each of those is sent to the queue's DLQ with what was wrong, then acked;
the worker carries on. Selected by `worker_consumer` in config.celery.

It also acks on the event loop's own thread without waiting for its next poll
(`call_soon_ack`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from vine import ppartial

from pipeline.ops.quarantine import MAX_TASK_BODY, garbage_reason, queue_name_of, send_to_dlq
from pipeline.runtime import get_runtime
from pipeline.sqs.eventloop import on_loop_thread, run_soon

log = logging.getLogger("pipeline.worker")


def quarantine(message: Any, kind: str, error: BaseException | None) -> None:
    """Dead-letter a received message as `kind`, then ack it."""
    rt = get_runtime()
    info = message.delivery_info or {}
    sqs_message = info.get("sqs_message") or {}
    # The queue URL says where it came from; the body's own routing key is its claim.
    url_name = str(info.get("sqs_queue") or "").rsplit("/", 1)[-1]
    queue = queue_name_of(url_name, rt.settings.queue_prefix) or queue_name_of(
        info.get("routing_key"), rt.settings.queue_prefix)
    if queue is None:
        log.error("cannot dead-letter a %s message from unknown queue %r; leaving it for "
                  "the redrive policy", kind, info.get("routing_key"))
        message.reject(requeue=False)
        return
    body = sqs_message.get("Body") or ""
    send_to_dlq(rt, queue, body, garbage_reason(kind, error),
                dead_id=f"garbage-{sqs_message.get('MessageId', '?')}")
    message.ack()


class Consumer(CeleryConsumer):
    def call_soon_ack(self, p: Any, *args: Any, **kwargs: Any) -> Any:
        """Celery defers every ack and reject with the hub's call_soon. From the loop's
        own thread, inside a timer (where a solo pool runs its task, after a receive
        that completed in curl's timeout check), that waits for the loop's next poll:
        up to a second with nothing else due. On inventory.fifo the ack's delete is
        what unlocks the product's group, so a solo lane ran ~6 updates/s instead of
        hundreds. A zero-delay timer runs before the loop polls again
        (pipeline.sqs.eventloop)."""
        hub = self.hub
        if hub is None or not on_loop_thread(hub):
            return super().call_soon_ack(p, *args, **kwargs)
        callback = ppartial(p, *args, **kwargs)
        run_soon(hub, callback)
        return callback

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        quarantine(message, "UndecodableMessage", exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        quarantine(message, "NotATaskMessage", None)

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        quarantine(message, "UnknownTask", exc)

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        quarantine(message, "InvalidTaskMessage", exc)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handler = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            body = ((message.delivery_info or {}).get("sqs_message") or {}).get("Body") or ""
            if len(body) > MAX_TASK_BODY:
                return quarantine(message, "OversizedMessage", ValueError(
                    f"{len(body)} bytes; task messages here are under {MAX_TASK_BODY}"))
            return handler(message)

        return on_task_received
