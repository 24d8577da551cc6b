"""Every derived identifier, built in one place.

Stock-update ids (which are also the FIFO MessageDeduplicationId), the
idempotency keys sent to the gateway and the carrier, dead-letter ids and
once-only claim keys are all derived from an order (or restock) id, a
product id and an operation. Building them here means one spelling, and one
check against what AWS accepts: SQS group and deduplication ids are at most
128 characters of alphanumerics and punctuation. (fauxqs accepts longer ones,
so nothing else would notice.) Ids are joined with ':', which no input id may
contain (pipeline.domain's ID_PATTERN), so two different inputs never give
one key.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "ID_PATTERN",
    "MAX_SQS_ID",
    "PAYMENT_OPERATIONS",
    "claim_key",
    "dead_letter_id",
    "handback_key",
    "payment_key",
    "probe_key",
    "shipment_cancel_key",
    "shipment_key",
    "sqs_id",
    "stock_update_id",
]

MAX_SQS_ID = 128
# What an order, product or restock id may be made of: no ':' (the separator),
# no whitespace, nothing SQS refuses in a group or deduplication id.
ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
_SQS_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")


def sqs_id(value: str) -> str:
    """`value` if SQS accepts it as a MessageGroupId/MessageDeduplicationId, else ValueError."""
    if not _SQS_ID.match(value):
        raise ValueError(f"not a valid SQS group/deduplication id ({len(value)} chars): "
                         f"{value[:40]!r}...")
    return value


def _fit(readable: str) -> str:
    """Keep a readable id when it fits SQS's limit; otherwise a shortened form that
    stays unique (a digest of the whole) and still shows where it came from."""
    if len(readable) <= MAX_SQS_ID:
        return readable
    digest = hashlib.sha256(readable.encode()).hexdigest()[:32]
    return f"{readable[:MAX_SQS_ID - len(digest) - 1]}~{digest}"


def stock_update_id(ref: str, sku: str, op: str) -> str:
    """One FIFO stock update: its stock_updates key and its MessageDeduplicationId."""
    return sqs_id(_fit(f"{ref}:{sku}:{op}"))


# The payment operations an order can have at the gateway, each under its own key.
PAYMENT_OPERATIONS = ("authorize", "capture", "void", "refund")


def payment_key(order_id: str, operation: str) -> str:
    """The gateway idempotency key of one payment operation of an order."""
    return f"{order_id}:{operation}"


def shipment_key(order_id: str) -> str:
    """The carrier idempotency key of an order's shipment."""
    return f"{order_id}:shipment"


def shipment_cancel_key(order_id: str) -> str:
    """The carrier idempotency key of the cancellation of an order's shipment."""
    return f"{shipment_key(order_id)}:cancel"


def dead_letter_id(message_id: str) -> str:
    """Group and deduplication id of a FIFO dead letter: one per received SQS message,
    so a second failure after a redrive (a new message) is never dropped as a repeat,
    while a dead-lettering repeated after a crash is."""
    return sqs_id(_fit(f"dead-{message_id}"))


def claim_key(order_id: str, what: str) -> str:
    """A once-only decision about an order (the release fan-in, say)."""
    return f"{order_id}:{what}"


def probe_key(token: str, queue: str = "", host: str = "") -> str:
    """A lane probe's record (`probe:TOKEN:QUEUE:HOST`); with no queue, the prefix
    that every record of `token` starts with."""
    prefix = f"probe:{token[:64]}:"
    return f"{prefix}{queue}:{host}" if queue else prefix


def handback_key(message_id: str, receive: int | None = None) -> str:
    """A FIFO message handed back to SQS unrun, on its `receive`-th receive (behind a
    failed message of its group); with no receive, the prefix of all of them."""
    prefix = f"handback:{message_id[:128]}:"
    return prefix if receive is None else f"{prefix}{receive}"
