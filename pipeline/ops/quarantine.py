"""Send a message that cannot be run to its queue's DLQ, with the reason.

Used for garbage (a body that is not a task message, an unknown task, wrong
arguments, an oversized body) and by steps that give up. Pure boto3, so any
process can call it with the raw SQS message it received.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from config.topology import queue_by_name
from pipeline.runtime import Runtime

log = logging.getLogger("pipeline.quarantine")

# Our task messages carry ids only (a few KiB at most); anything this large is
# not one of ours. SQS caps a message at 256 KiB, so a dead letter keeps this much.
MAX_TASK_BODY = 64 * 1024


def queue_name_of(routing_key: str | None, prefix: str) -> str | None:
    if not routing_key:
        return None
    name = routing_key.removeprefix(prefix)
    try:
        return queue_by_name(name).name
    except KeyError:
        return None


def send_to_dlq(rt: Runtime, queue: str, body: str, attributes: dict[str, str], *,
                dead_id: str) -> None:
    """Dead-letter `body` from topology queue `queue` with reason `attributes`."""
    spec = queue_by_name(queue)
    url = rt.sqs.get_queue_url(QueueName=rt.settings.queue_prefix + spec.dlq_name)["QueueUrl"]
    if len(body) > MAX_TASK_BODY:
        attributes = {**attributes, "truncated_from_bytes": str(len(body))}
        body = body[:MAX_TASK_BODY]
    attributes = {"source_queue": spec.name, **attributes}
    message: dict[str, Any] = {
        "QueueUrl": url, "MessageBody": body or "(empty body)",
        "MessageAttributes": {k: {"DataType": "String", "StringValue": (v or "-")[:1000]}
                              for k, v in attributes.items()},
    }
    if spec.is_fifo:
        # Dead letters need no order among themselves; a group of their own
        # keeps each one listable (a shared group hides all but its head).
        message["MessageGroupId"] = dead_id[:128]
        message["MessageDeduplicationId"] = dead_id[:128]
    rt.sqs.send_message(**message)
    log.error("dead-lettered a message from %s: %s", spec.name, attributes)
    from pipeline.store.outbox import SYSTEM_HEALTH, record_now

    try:
        record_now(rt.store.engine, SYSTEM_HEALTH, "health.dead_letter",
                   {"queue": spec.name, "deadLetterQueue": spec.dlq_name, **attributes},
                   severity="error", queue=spec.name)
    except Exception as error:  # the dead letter itself is safe in its DLQ
        log.warning("dead letter from %s not announced on system-health: %s", spec.name, error)


def garbage_reason(kind: str, error: BaseException | None) -> dict[str, str]:
    stamp = datetime.now(UTC).isoformat()
    return {"exception_type": kind,
            "exception": f"{type(error).__name__}: {error}" if error else kind,
            "first_failure": stamp, "last_failure": stamp, "attempts": "1"}
