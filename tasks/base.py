"""The base class every workflow step runs on: timeline, retries, dead letters.

Retry policy, declared once here and tuned per task class:
* Retryable errors (pipeline.errors.RetryableError) are retried *in place*:
  the message is not re-published; its visibility timeout becomes the backoff
  (exponential, full jitter, capped) and the message is left unacked. So a
  retry can never run beside its own copy, never leaves a worker holding an
  ETA message, and on FIFO queues keeps its place in its group.
* Attempts are SQS's own ApproximateReceiveCount. The last attempt allowed is
  one below the queue's maxReceiveCount; a step that still fails then is
  failed for good: its order goes to compensation (outcome FAILED) and the
  message is dead-lettered explicitly with its reasons, then acked.
* Any other exception is a bug or a poison message: it is not acked, so SQS
  redelivers it after the visibility timeout and its redrive policy moves it
  to the DLQ after maxReceiveCount receives.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Reject
from sqlalchemy.exc import OperationalError

from config.topology import queue_by_name
from pipeline.domain import OrderStatus, can_transition
from pipeline.errors import (
    CircuitOpen,
    OrderNotFound,
    PermanentError,
    RetryableError,
    StoreUnavailable,
)
from pipeline.runtime import Runtime, get_runtime
from pipeline.services.outcome import StepResult

log = logging.getLogger("pipeline.tasks")
MAX_SQS_DELAY_S = 900
T = TypeVar("T")


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> int:
    """Exponential backoff with full jitter, in whole seconds (SQS's unit), >= 1."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return max(1, round(rng.uniform(0, ceiling)))


class Deferred(Exception):
    """The step's message was put back with a delay; this delivery is done."""


@dataclass(frozen=True)
class RetryPolicy:
    """Declared once per task class (`retry = RetryPolicy(...)`).

    `on`: the errors worth another attempt. `max_attempts`: None means one
    below the queue's maxReceiveCount, so the step gives up (compensation plus
    an explicit dead letter with reasons) just before SQS's redrive would move
    the message without any. Backoff: exponential from `base_s`, full jitter,
    capped at `cap_s`. The cap stays far below SQS's limits (visibility up to
    12 h); a wait longer than that belongs in a scheduled job, not a retry.
    """

    on: tuple[type[Exception], ...] = (RetryableError,)
    max_attempts: int | None = None
    base_s: float = 1.0
    cap_s: float = 30.0


class OrderStep(Task):
    """A workflow step on an order."""

    abstract = True
    acks_late = True
    typing = True
    retry = RetryPolicy()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A message with the wrong arguments fails the same way every time:
        # dead-letter it with the reason now rather than let it crash
        # maxReceiveCount times (Celery checks arguments only when sending).
        signature = self.__dict__.get("_run_signature")
        if signature is None:
            signature = self.__dict__["_run_signature"] = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            if not self.request.called_directly:
                self._quarantine_call(args, error)
                return None
            raise
        return super().__call__(*args, **kwargs)

    def _quarantine_call(self, args: tuple[Any, ...], error: TypeError) -> None:
        from pipeline.quarantine import garbage_reason, send_to_dlq

        sqs = self._sqs()
        queue = self.queue_name
        if not queue or not sqs["message"]:
            raise error
        reason = garbage_reason("WrongArguments", error)
        reason |= {"task": self.name, "order_id": str(args[0]) if args else "-"}
        send_to_dlq(get_runtime(), queue, sqs["message"].get("Body") or "", reason,
                    dead_id=f"{self.request.id}:dead")

    # --- what SQS told us about this delivery -------------------------------
    def _sqs(self) -> dict[str, Any]:
        info = (self.request.properties or {}).get("delivery_info") or {}
        return {"message": info.get("sqs_message") or {}, "queue_url": info.get("sqs_queue")}

    def sqs_attribute(self, name: str) -> str | None:
        value = self._sqs()["message"].get("Attributes", {}).get(name)
        return str(value) if value is not None else None

    @property
    def attempt(self) -> int:
        return int(self.sqs_attribute("ApproximateReceiveCount") or 1)

    @property
    def queue_name(self) -> str:
        routing_key = (self.request.delivery_info or {}).get("routing_key") or ""
        return str(routing_key)

    def max_attempts(self) -> int:
        if self.retry.max_attempts is not None:
            return self.retry.max_attempts
        try:
            return queue_by_name(self.queue_name).max_receive_count - 1 or 1
        except KeyError:
            return 1

    # --- running a step ---------------------------------------------------
    def run_step(self, order_id: str, step: str,
                 body: Callable[[Runtime], StepResult]) -> StepResult:
        """Run one attempt of a step and leave one timeline row for it.

        The row is written once, when the attempt ends (one transaction, not
        two): an attempt whose worker died leaves no row, and the next
        attempt's number (SQS's receive count) shows the gap.
        """
        rt = get_runtime()
        attempt = self.attempt
        started = datetime.now(UTC)

        def record(outcome: str, detail: str | None) -> None:
            rt.store.record_step(order_id, step, attempt, self.request.hostname or "",
                                 started=started, outcome=outcome, detail=detail)

        try:
            result = self.attempt_or_retry(rt, body, on_retry=lambda note: record("retry", note))
        except RetryableError as error:
            record("failed", f"gave up after {attempt} attempts: {error}")
            self.give_up(rt, order_id, step, error)
            return StepResult.stop(OrderStatus.FAILED, (str(error),))
        except Deferred as deferral:
            record("deferred", str(deferral))
            self.stop_chain()  # the chain travels on in the deferred copy
            return StepResult.stop(None, repeated=True, detail=str(deferral))
        except PermanentError as error:  # another attempt would fail the same way
            record("failed", f"{type(error).__name__}: {error}")
            self.give_up(rt, order_id, step, error)
            return StepResult.stop(OrderStatus.FAILED, (str(error),))
        except Reject:  # retrying in place: the step row already says so
            raise
        except Exception as error:
            record("error", f"{type(error).__name__}: {error}")
            raise
        outcome = "repeated" if result.repeated else ("ok" if result.proceed else "stopped")
        record(outcome, result.detail)
        return result

    def attempt_or_retry(self, rt: Runtime, body: Callable[[Runtime], T], *,
                         on_retry: Callable[[str], None] = lambda note: None) -> T:
        """Run `body`; on a retryable error with attempts left, retry in place.

        Raises the RetryableError when no attempt is left (the caller gives up).
        """
        attempt = self.attempt
        retryable: Exception
        try:
            with self._kept_invisible(rt):
                return body(rt)
        except CircuitOpen as error:
            if self._defer(rt, error):
                raise Deferred(str(error)) from error
            retryable = error
        except OperationalError as error:  # the store is locked or unreachable
            retryable = StoreUnavailable(f"order store: {str(error).splitlines()[0]}")
        except self.retry.on as error:
            retryable = error
        if attempt < self.max_attempts():
            delay = backoff_seconds(attempt, base=self.retry.base_s, cap=self.retry.cap_s,
                                    rng=rt.rng)
            if isinstance(retryable, CircuitOpen):
                delay = max(delay, math.ceil(retryable.retry_after_s))
            on_retry(f"{retryable} (next attempt in {delay}s)")
            self._retry_in_place(rt, delay, retryable)
        raise retryable

    def _defer(self, rt: Runtime, error: CircuitOpen) -> bool:
        """Put the message back with SQS's own delay, as a fresh message.

        A refusal by an open breaker is not a failure of this order, so it
        must not use up an attempt (ApproximateReceiveCount): the body goes
        back unchanged (same task id, same chain) with DelaySeconds, and this
        delivery is acked. A crash between the two leaves two copies, which
        the step's idempotency absorbs. FIFO queues take no per-message
        delay: there the caller retries in place instead (False).
        """
        sqs = self._sqs()
        body = sqs["message"].get("Body")
        try:
            spec = queue_by_name(self.queue_name)
        except KeyError:
            return False
        if body is None or spec.is_fifo or not sqs["queue_url"]:
            return False
        delay = min(MAX_SQS_DELAY_S, math.ceil(error.retry_after_s + rt.rng.uniform(0, 2)))
        rt.sqs.send_message(QueueUrl=sqs["queue_url"], MessageBody=body, DelaySeconds=delay)
        log.warning("%s[%s]: %s; deferred %ss without using an attempt", self.name,
                    self.request.id, error, delay)
        return True

    def _kept_invisible(self, rt: Runtime) -> AbstractContextManager[None]:
        sqs = self._sqs()
        receipt = sqs["message"].get("ReceiptHandle")
        try:
            visibility = queue_by_name(self.queue_name).visibility_timeout
        except KeyError:
            return nullcontext()
        if not receipt or not sqs["queue_url"]:
            return nullcontext()
        return rt.visibility.keep(sqs["queue_url"], receipt, visibility)

    def _retry_in_place(self, rt: Runtime, delay: int, error: Exception) -> None:
        sqs = self._sqs()
        receipt = sqs["message"].get("ReceiptHandle")
        if receipt and sqs["queue_url"]:
            rt.sqs.change_message_visibility(QueueUrl=sqs["queue_url"], ReceiptHandle=receipt,
                                             VisibilityTimeout=delay)
        log.warning("%s[%s] attempt %d: %s; retrying in %ss", self.name, self.request.id,
                    self.attempt, error, delay)
        raise Reject(f"retry in {delay}s: {error}", requeue=False)

    def give_up(self, rt: Runtime, order_id: str, step: str, error: Exception) -> None:
        """Retries exhausted: compensate the order and dead-letter the message."""
        from pipeline import workflow

        reason = (f"{step} failed after {self.attempt} attempts: {error}"
                  if not isinstance(error, PermanentError) else f"{step} failed: {error}")
        try:
            status = rt.store.status(order_id)
        except OrderNotFound:  # nothing to compensate; the message still goes to the DLQ
            self.dead_letter(rt, order_id, step, error)
            return
        # A shipped order is not undone because its notification failed: the
        # message goes to the DLQ and the order waits there for a redrive.
        if can_transition(status, OrderStatus.COMPENSATING):
            moved = rt.store.transition(
                order_id, OrderStatus.COMPENSATING, expected=[status],
                outcome=OrderStatus.FAILED, reasons=[reason])
            if moved:
                workflow.compensate(order_id, vip=self.is_vip(rt, order_id))
        self.dead_letter(rt, order_id, step, error)

    def dead_letter(self, rt: Runtime, order_id: str, step: str, error: Exception) -> None:
        from pipeline.quarantine import send_to_dlq

        body = self._sqs()["message"].get("Body")
        if body is None or not self.queue_name:
            return
        stamp = datetime.now(UTC)
        first = rt.store.first_failure(order_id, step) or stamp
        send_to_dlq(rt, self.queue_name, body, {
            "task": self.name, "order_id": order_id, "step": step,
            "exception_type": type(error).__name__, "exception": str(error),
            "attempts": str(self.attempt),
            "first_failure": first.isoformat(), "last_failure": stamp.isoformat(),
            "group": self.sqs_attribute("MessageGroupId") or "",
        }, dead_id=f"{self.request.id}:dead")

    @staticmethod
    def is_vip(rt: Runtime, order_id: str) -> bool:
        return bool(rt.store.order(order_id)["priority"] == "vip")

    def stop_chain(self) -> None:
        """End the canvas here: the rest of the chain must not run.

        Celery dispatches `request.chain` after a successful return (see
        celery/app/trace.py); emptying it is how a step ends a chain without
        failing its message.
        """
        self.request.chain = None
