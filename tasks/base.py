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

import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import Reject

from config.topology import queue_by_name
from pipeline.domain import OrderStatus, can_transition
from pipeline.errors import RetryableError
from pipeline.runtime import Runtime, get_runtime
from pipeline.services.outcome import StepResult

log = logging.getLogger("pipeline.tasks")


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> int:
    """Exponential backoff with full jitter, in whole seconds (SQS's unit), >= 1."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return max(1, round(rng.uniform(0, ceiling)))


class OrderStep(Task):
    """A workflow step on an order."""

    abstract = True
    acks_late = True
    typing = True
    retry_base_s: float = 1.0
    retry_cap_s: float = 30.0

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
        try:
            return queue_by_name(self.queue_name).max_receive_count - 1 or 1
        except KeyError:
            return 1

    # --- running a step ---------------------------------------------------
    def run_step(self, order_id: str, step: str,
                 body: Callable[[Runtime], StepResult]) -> StepResult:
        rt = get_runtime()
        attempt = self.attempt
        step_id = rt.store.begin_step(order_id, step, attempt, self.request.hostname or "")
        try:
            result = body(rt)
        except RetryableError as error:
            if attempt < self.max_attempts():
                delay = backoff_seconds(attempt, base=self.retry_base_s, cap=self.retry_cap_s,
                                        rng=rt.rng)
                rt.store.finish_step(step_id, "retry", f"{error} (next attempt in {delay}s)")
                self._retry_in_place(rt, delay, error)
            rt.store.finish_step(step_id, "failed", f"gave up after {attempt} attempts: {error}")
            self.give_up(rt, order_id, step, error)
            return StepResult.stop(OrderStatus.FAILED, (str(error),))
        except Exception as error:
            rt.store.finish_step(step_id, "error", f"{type(error).__name__}: {error}")
            raise
        outcome = "repeated" if result.repeated else ("ok" if result.proceed else "stopped")
        rt.store.finish_step(step_id, outcome, result.detail)
        return result

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

        reason = f"{step} failed after {self.attempt} attempts: {error}"
        status = rt.store.status(order_id)
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
        sqs = self._sqs()
        body = sqs["message"].get("Body")
        if body is None or not self.queue_name:
            return
        spec = queue_by_name(self.queue_name)
        prefix = rt.settings.queue_prefix
        dlq_url = rt.sqs.get_queue_url(QueueName=prefix + spec.dlq_name)["QueueUrl"]
        stamp = datetime.now(UTC).isoformat()
        attributes = {
            "task": self.name, "order_id": order_id, "step": step,
            "exception_type": type(error).__name__, "exception": str(error)[:1000],
            "attempts": str(self.attempt), "source_queue": spec.name,
            "first_failure": stamp, "last_failure": stamp,
        }
        message: dict[str, Any] = {
            "QueueUrl": dlq_url, "MessageBody": body,
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v or "-"}
                                  for k, v in attributes.items()},
        }
        if spec.is_fifo:
            message["MessageGroupId"] = self.sqs_attribute("MessageGroupId") or order_id
            message["MessageDeduplicationId"] = f"{self.request.id}:dead"
        rt.sqs.send_message(**message)
        log.error("dead-lettered %s for order %s: %s", self.name, order_id,
                  json.dumps(attributes))

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
