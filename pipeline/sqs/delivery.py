"""What SQS told a worker about one delivery, parsed once per request.

kombu hands the raw ReceiveMessage entry and the queue URL to Celery in the
request's delivery_info; everything a step needs from it (its attempt number,
its FIFO sequence number and group, the receipt for visibility changes, the
body for a dead letter) is read here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.topology import QueueSpec, queue_by_name

__all__ = ["Delivery"]


@dataclass(frozen=True)
class Delivery:
    routing_key: str  # the topology queue name (kombu's routing key)
    queue_url: str | None = None
    receipt: str | None = None
    message_id: str | None = None
    body: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    # Receives that never ran the step: a FIFO message handed back behind a failed
    # one of its group (tasks.fifo). They are not attempts.
    returned: int = 0

    @classmethod
    def of(cls, request: Any, prefix: str) -> Delivery:
        info = (request.properties or {}).get("delivery_info") or {}
        message = info.get("sqs_message") or {}
        # Where the message really came from is its queue URL; the routing key in
        # the message is only what its sender claimed.
        url_name = str(info.get("sqs_queue") or "").rsplit("/", 1)[-1]
        routing = url_name.removeprefix(prefix) if url_name.startswith(prefix) else ""
        if not routing:
            routing = str((request.delivery_info or {}).get("routing_key") or "")
        return cls(str(routing), info.get("sqs_queue"), message.get("ReceiptHandle"),
                   message.get("MessageId"), message.get("Body"),
                   {str(k): str(v) for k, v in (message.get("Attributes") or {}).items()})

    @property
    def spec(self) -> QueueSpec | None:
        try:
            return queue_by_name(self.routing_key)
        except KeyError:
            return None

    @property
    def receives(self) -> int:
        try:
            return max(1, int(self.attributes.get("ApproximateReceiveCount") or 1))
        except ValueError:
            return 1

    @property
    def attempt(self) -> int:
        """This run's attempt number: the receives that ran the step, this one included."""
        return max(1, self.receives - self.returned)

    @property
    def sequence(self) -> str | None:
        return self.attributes.get("SequenceNumber")

    @property
    def group(self) -> str | None:
        return self.attributes.get("MessageGroupId")

    @property
    def can_defer(self) -> bool:
        """SQS takes a per-message delay on standard queues only."""
        spec = self.spec
        return bool(spec and not spec.is_fifo and self.body is not None and self.queue_url)
