"""What monitoring shows never carries a secret.

Task messages here carry ids only, but Flower shows whatever a task was
called with (its `argsrepr`), what it raised and returned. Payment tokens,
card-like numbers, e-mail addresses and phone numbers are masked in the
task headers monitoring reads (before_task_publish) and in every event
field the dispatcher sends.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "redact", "redact_event_fields", "redact_headers"]

REDACTED = "[redacted]"
_SECRETS = re.compile(
    r"\btok_[A-Za-z0-9_]+"  # payment tokens
    # e-mail addresses; an apostrophe anywhere in the local part but its first character
    # (o'brien, a/'b, 0''), so a repr's opening quote (after a space, bracket or brace,
    # which cannot start the match either) stays outside the mask
    r"|[A-Za-z0-9!#$%&*+/=?^_`|~.-][A-Za-z0-9!#$%&*+/=?^_`{|}~.'-]*"
    r"@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
    r"|\+[1-9]\d{6,14}\b"  # E.164 phone numbers
    r"|\b(?:\d[ -]?){12,18}\d\b"  # card-like digit runs
)
EVENT_FIELDS = ("args", "kwargs", "exception", "traceback", "result")


def redact(text: str) -> str:
    return _SECRETS.sub(REDACTED, text)


def redact_headers(headers: dict[str, Any]) -> None:
    """Mask secrets in the argument reprs Celery puts in a task message's headers."""
    for key in ("argsrepr", "kwargsrepr"):
        value = headers.get(key)
        if isinstance(value, str):
            headers[key] = redact(value)


def redact_event_fields(fields: dict[str, Any]) -> None:
    for key in EVENT_FIELDS:
        value = fields.get(key)
        if isinstance(value, str):
            fields[key] = redact(value)
