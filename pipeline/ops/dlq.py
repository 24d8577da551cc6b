"""Dead-letter queues: what is in them, why, and sending it back.

Two ways in: a step that gives up dead-letters its message explicitly, with
reason attributes (tasks.base.OrderStep.dead_letter); a message that crashed
or timed out workers maxReceiveCount times is moved by SQS's redrive policy,
with no reason but its receive count. Both are shown; the order id and task
are read from the Celery message itself when no attribute carries them.

Redrive sends the body unchanged (same Celery task id, same order) back to
the source queue, then deletes the dead letter. A FIFO redrive keeps the
message's group and uses a deduplication id derived from the dead letter, so
repeating a redrive that was cut short is dropped by SQS (within its 5-minute
window); on standard queues a repeat is absorbed by the steps' idempotency.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any

from config.settings import Settings
from config.topology import QUEUES, QueueSpec

__all__ = ["DeadLetter", "depths", "peek", "purge", "redrive", "resolve_queue"]

PEEK_VISIBILITY_S = 30


@dataclass
class DeadLetter:
    message_id: str
    task: str | None
    task_id: str | None
    order_id: str | None
    step: str | None
    reason: str
    attempts: str | None
    first_failure: str | None
    last_failure: str | None
    group_id: str | None
    sent_at: str | None
    receipt_handle: str
    body: str

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["receipt_handle"], data["body"]
        return data


def resolve_queue(name: str) -> QueueSpec:
    """A topology queue by its name or its DLQ's name."""
    for spec in QUEUES:
        if name in (spec.name, spec.dlq_name):
            return spec
    known = ", ".join(spec.name for spec in QUEUES)
    raise ValueError(f"unknown queue {name!r}; expected one of: {known} (or their -dlq)")


def _url(sqs: Any, settings: Settings, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"])


def depths(settings: Settings, sqs: Any) -> list[dict[str, Any]]:
    rows = []
    for spec in QUEUES:
        attrs = sqs.get_queue_attributes(
            QueueUrl=_url(sqs, settings, spec.dlq_name),
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        rows.append({"queue": spec.name, "dlq": spec.dlq_name,
                     "depth": int(attrs.get("ApproximateNumberOfMessages", 0)),
                     "inFlight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))})
    return rows


def _celery_fields(body: str) -> dict[str, Any]:
    """Task name, id and first argument from a kombu/Celery message body, if it is one."""
    try:
        try:
            envelope = json.loads(body)
        except ValueError:  # kombu base64-encodes bodies by default
            envelope = json.loads(base64.b64decode(body, validate=True))
        headers = envelope.get("headers") or {}
        payload = envelope.get("body")
        args: list[Any] = []
        if isinstance(payload, str) and envelope.get("properties", {}).get(
                "body_encoding") == "base64":
            args = json.loads(base64.b64decode(payload))[0]
        return {"task": headers.get("task"), "task_id": headers.get("id"),
                "order_id": str(args[0]) if args else None}
    except Exception:  # a dead letter may be anything at all (deep nesting, bad base64)
        return {}


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    attrs = {k: v.get("StringValue") for k, v in (message.get("MessageAttributes") or {}).items()}
    system = message.get("Attributes") or {}
    fields = _celery_fields(message["Body"])
    if "exception_type" in attrs:
        reason = f"{attrs['exception_type']}: {attrs.get('exception', '')}"
    else:
        reason = ("moved by the redrive policy: received more than maxReceiveCount times "
                  "without an ack (worker crash, timeout or unhandled error)")
    return DeadLetter(
        message_id=message["MessageId"], task=attrs.get("task") or fields.get("task"),
        task_id=fields.get("task_id"), order_id=attrs.get("order_id") or fields.get("order_id"),
        step=attrs.get("step"), reason=reason,
        attempts=attrs.get("attempts") or system.get("ApproximateReceiveCount"),
        first_failure=attrs.get("first_failure"), last_failure=attrs.get("last_failure"),
        group_id=attrs.get("group") or system.get("MessageGroupId"),
        sent_at=system.get("SentTimestamp"), receipt_handle=message["ReceiptHandle"],
        body=message["Body"])


def _receive_all(sqs: Any, url: str, limit: int) -> list[DeadLetter]:
    """Receive up to `limit` dead letters (they stay hidden for PEEK_VISIBILITY_S)."""
    seen: dict[str, DeadLetter] = {}
    while len(seen) < limit:
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)), WaitTimeSeconds=0,
            VisibilityTimeout=PEEK_VISIBILITY_S, MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"])
        messages = response.get("Messages") or []
        if not messages:
            break
        for message in messages:
            seen.setdefault(message["MessageId"], _dead_letter(message))
    return list(seen.values())


def _release(sqs: Any, url: str, letters: list[DeadLetter]) -> None:
    for letter in letters:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=letter.receipt_handle,
                                      VisibilityTimeout=0)


def peek(settings: Settings, sqs: Any, queue: str, *, limit: int = 100) -> list[DeadLetter]:
    """The dead letters of `queue` (a source queue or DLQ name), left in place."""
    spec = resolve_queue(queue)
    url = _url(sqs, settings, spec.dlq_name)
    letters = _receive_all(sqs, url, limit)
    _release(sqs, url, letters)
    return letters


def redrive(settings: Settings, sqs: Any, queue: str, *, order_id: str | None = None,
            limit: int = 1000) -> list[DeadLetter]:
    """Send dead letters (all, or one order's) back to their source queue."""
    spec = resolve_queue(queue)
    dlq_url = _url(sqs, settings, spec.dlq_name)
    source_url = _url(sqs, settings, spec.name)
    letters = _receive_all(sqs, dlq_url, limit)
    chosen = [x for x in letters if order_id is None or x.order_id == order_id]
    _release(sqs, dlq_url, [x for x in letters if x not in chosen])
    for letter in chosen:
        message: dict[str, Any] = {"QueueUrl": source_url, "MessageBody": letter.body}
        if spec.is_fifo:
            if not letter.group_id:
                raise ValueError(f"dead letter {letter.message_id} has no group id; "
                                 "it cannot go back to a FIFO queue in order")
            message["MessageGroupId"] = letter.group_id
            message["MessageDeduplicationId"] = f"redrive-{letter.message_id}"
        sqs.send_message(**message)
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
    return chosen


def purge(settings: Settings, sqs: Any, queue: str) -> str:
    spec = resolve_queue(queue)
    sqs.purge_queue(QueueUrl=_url(sqs, settings, spec.dlq_name))
    return spec.dlq_name
