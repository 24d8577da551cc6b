"""Short-lived queues that monitoring creates: event queues, pidboxes, reply queues.

On SQS every Flower start, every worker's mailbox and every `celery inspect`
creates a queue (and, for fanout, an SNS subscription) that nothing deletes:
stock kombu leaves them to collect events forever (celery#8348). Here each
one is created with the shortest retention SQS allows and a lease tag its
owner renews; the owner deletes it on a clean exit, and the janitor
(`pipeline.monitoring.janitor`) deletes any whose lease ran out.

Pure naming and lease logic; the transport and the janitor do the I/O.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from config.topology import EVENT_QUEUE_PREFIX

__all__ = [
    "LEASE_TAG",
    "MAX_QUEUE_NAME",
    "TRANSIENT_RETENTION_S",
    "Lease",
    "TransientKind",
    "fit_queue_name",
    "transient_kind",
]

LEASE_TAG = "pipeline-lease-until"  # epoch seconds; the owner renews it
OWNER_TAG = "pipeline-owner"  # host:pid of the process that created it
TRANSIENT_RETENTION_S = 60  # SQS's minimum: a stale event is worth nothing
MAX_QUEUE_NAME = 80  # SQS's limit


class TransientKind:
    EVENTS = "events"  # a monitor's copy of every event (Flower, `celery events`)
    MAILBOX = "mailbox"  # a worker's remote-control mailbox (pidbox)
    REPLIES = "replies"  # a remote-control client's reply queue


def transient_kind(name: str, *, event_prefix: str = EVENT_QUEUE_PREFIX) -> str | None:
    """What kind of transient queue an AMQP-style or SQS queue name is, if any.

    Works on both spellings, since kombu maps '.' to '-':
    ``celeryev.<uuid>`` / ``celeryev-<uuid>``, ``<host>.celery.pidbox``,
    ``<oid>.reply.celery.pidbox``.
    """
    flat = name.replace(".", "-")
    if flat.endswith("-reply-celery-pidbox"):
        return TransientKind.REPLIES
    if flat.endswith("-celery-pidbox"):
        return TransientKind.MAILBOX
    if flat.startswith(event_prefix.replace(".", "-") + "-"):
        return TransientKind.EVENTS
    return None


def fit_queue_name(name: str) -> str:
    """SQS names are at most 80 characters: shorten a longer one deterministically
    (every process computes the same name), keeping a FIFO suffix."""
    if len(name) <= MAX_QUEUE_NAME:
        return name
    suffix = ".fifo" if name.endswith(".fifo") else ""
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    keep = MAX_QUEUE_NAME - len(suffix) - len(digest) - 1
    return f"{name[:keep]}-{digest}{suffix}"


@dataclass(frozen=True)
class Lease:
    """A transient queue lives while its owner keeps pushing `until` forward."""

    duration_s: float

    def tags(self, owner: str, now: float | None = None) -> dict[str, str]:
        until = (time.time() if now is None else now) + self.duration_s
        return {LEASE_TAG: str(int(until)), OWNER_TAG: owner[:256]}

    @property
    def renew_every_s(self) -> float:
        # Three chances to renew before it runs out: one failed call is not fatal.
        return max(self.duration_s / 3, 1.0)

    @staticmethod
    def expired(tags: dict[str, str], created_at: float, now: float,
                duration_s: float) -> bool:
        """A queue without a lease tag (made by stock kombu, or before its first
        tag) counts from its creation time."""
        until = tags.get(LEASE_TAG)
        if until is not None:
            try:
                return float(until) < now
            except ValueError:
                return True
        return created_at + duration_s < now
