"""Receives that fill up: under load, wait for several free prefetch slots.

kombu asks SQS for min(10, free prefetch slots) messages. A busy worker frees
its slots one ack at a time, so it received ~1 message per ReceiveMessage
under load (issue #16: 4.4 receives per order of 6 messages, against 1 for
hand-written loops), each receive costing a request and ~1 ms of CPU.

So while the worker still holds at least FILL messages it has received and
not acked (its pool has work queued), it does not poll until FILL slots are
free; then one receive brings up to FILL messages. A worker holding fewer
polls at once, as before: at low load nothing waits, and a busy worker only
delays messages its pool could not have started yet anyway. Nor does a queue
wait more than MAX_FILL_WAIT_S since its last receive: a pool stuck on slow
steps still receives (and so still looks alive to pipeline.sqs.liveness).
"""

from __future__ import annotations

__all__ = ["MAX_FILL_WAIT_S", "SQS_MAX_MESSAGES", "fill_for", "worth_polling"]

SQS_MAX_MESSAGES = 10  # per ReceiveMessage
MAX_FILL_WAIT_S = 0.5


def fill_for(prefetch_count: int) -> int:
    """Free slots worth one receive: ten, or half the window of a small one."""
    return max(1, min(SQS_MAX_MESSAGES, prefetch_count // 2))


def worth_polling(prefetch_count: int, held: int) -> bool:
    """Whether to receive now, holding `held` received and unacked messages of a
    `prefetch_count` window (0: unlimited)."""
    if prefetch_count <= 0:
        return True
    fill = fill_for(prefetch_count)
    free = prefetch_count - held
    return free >= fill or held < fill
