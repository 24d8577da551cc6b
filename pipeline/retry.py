"""The retry decision, as a pure function of the error and the attempt.

A step applies the decision (pipeline.steps, tasks/base.py); nothing here
touches SQS or Celery, so the whole table is unit-tested:

* a permanent error (pipeline.errors.PermanentError) gives up at once;
* an open circuit breaker defers the message (put back with SQS's own delay,
  using no attempt) where the queue allows per-message delays, and is
  otherwise retried like any transient error;
* a transient error (the policy's `on`, or a database that is locked or
  unreachable) is retried in place with exponential backoff and full jitter
  while attempts are left, then gives up;
* anything else is a bug or a poison message: it crashes, the message is not
  acked, and the queue's redrive policy moves it to the DLQ.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, OperationalError

from pipeline.errors import CircuitOpen, PermanentError, RetryableError

__all__ = ["Crash", "Decision", "Defer", "GiveUp", "Retry", "RetryPolicy", "backoff_seconds",
           "decide", "is_transient_database_error"]

MAX_SQS_DELAY_S = 900  # DelaySeconds' limit
# SQLSTATE classes that say "try again": connection exception, transaction
# rollback (serialization failure, deadlock), insufficient resources, operator
# intervention (admin shutdown).
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
# ... and single codes of other classes: a lock wait that ran out (lock_timeout, see
# pipeline.store.db) and a session ended for idling in its transaction.
TRANSIENT_SQLSTATES = ("55P03", "25P03")
TRANSIENT_SQLITE_MESSAGES = ("database is locked", "database table is locked", "busy")


@dataclass(frozen=True)
class RetryPolicy:
    """Declared once per task class (`retry = RetryPolicy(...)`).

    `on`: the errors worth another attempt. `max_attempts`: None means one
    below the queue's maxReceiveCount, so the step gives up (with a dead letter
    that carries its reasons) just before SQS's redrive would move the message
    without any. Backoff: exponential from `base_s`, full jitter, capped at
    `cap_s`; waits longer than a few minutes belong to a scheduled job.
    """

    on: tuple[type[BaseException], ...] = (RetryableError,)
    max_attempts: int | None = None
    base_s: float = 1.0
    cap_s: float = 30.0


@dataclass(frozen=True)
class Retry:
    """Run again in place after `delay_s` (the message's visibility becomes the backoff)."""

    delay_s: int
    reason: str


@dataclass(frozen=True)
class Defer:
    """Put the message back with SQS's DelaySeconds as a fresh copy: no attempt used."""

    delay_s: int
    reason: str


@dataclass(frozen=True)
class GiveUp:
    """No attempt will help: the order is compensated or waits, the message is dead-lettered."""

    reason: str
    permanent: bool


@dataclass(frozen=True)
class Crash:
    """Not a failure the step understands: leave the message to the redrive policy."""

    reason: str


Decision = Retry | Defer | GiveUp | Crash


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> int:
    """Exponential backoff with full jitter, in whole seconds (SQS's unit), >= 1."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return max(1, round(rng.uniform(0, ceiling)))


def is_transient_database_error(error: BaseException) -> bool:
    """A locked or unreachable database: worth another attempt. Any other
    database error (a missing table, a value too long) is a bug, not weather."""
    if not isinstance(error, OperationalError | DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if isinstance(sqlstate, str) and (sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
                                      or sqlstate in TRANSIENT_SQLSTATES):
        return True
    text = str(original).lower()
    if type(original).__module__.startswith("sqlite3"):
        return any(message in text for message in TRANSIENT_SQLITE_MESSAGES)
    # psycopg raises OperationalError without a SQLSTATE when it cannot connect.
    return isinstance(error, OperationalError) and sqlstate is None and (
        "connection" in text or "server closed" in text or "timeout" in text)


def _describe(error: BaseException) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {first}"[:500]


def decide(error: BaseException, *, attempt: int, max_attempts: int, policy: RetryPolicy,
           rng: random.Random, can_defer: bool) -> Decision:
    """What to do with `error`, raised by attempt number `attempt` (1-based)."""
    if isinstance(error, PermanentError):
        return GiveUp(_describe(error), permanent=True)
    if isinstance(error, CircuitOpen) and can_defer:
        delay = min(MAX_SQS_DELAY_S, math.ceil(error.retry_after_s + rng.uniform(0, 2)))
        return Defer(delay, _describe(error))
    transient = isinstance(error, policy.on) or is_transient_database_error(error)
    if not transient:
        return Crash(_describe(error))
    if attempt >= max_attempts:
        return GiveUp(f"gave up after {attempt} attempts: {_describe(error)}", permanent=False)
    delay = backoff_seconds(attempt, base=policy.base_s, cap=policy.cap_s, rng=rng)
    if isinstance(error, CircuitOpen):
        delay = max(delay, math.ceil(error.retry_after_s))
    return Retry(delay, _describe(error))
