"""The base class every workflow step runs on: the Celery and SQS side of a step.

Everything a step decides is in pipeline.steps and pipeline.retry (no Celery
there); this class applies those decisions to the SQS message it was given:

* Retry: in place. The message is not re-published; its visibility timeout
  becomes the backoff and it is left unacked (Reject, no requeue). So a retry
  never runs beside its own copy, no worker holds an ETA message, and a FIFO
  message keeps its place in its group. Attempts are SQS's own
  ApproximateReceiveCount; the last one allowed is one below the queue's
  maxReceiveCount.
* Defer (the gateway's breaker is open): the body goes back unchanged with
  DelaySeconds, and this delivery is acked: waiting out an outage uses no
  attempt. A crash between the two leaves two copies, which idempotency absorbs.
* Give up: pipeline.steps.give_up compensates the order (or leaves it
  NEEDS_ATTENTION when it was compensating), then the message is dead-lettered
  with its reasons and acked.
* Crash (any other exception: a bug, a poison message): not acked; SQS
  redelivers it after its visibility timeout and the redrive policy moves it
  to the DLQ after maxReceiveCount receives.
* Overran (PIPELINE_STEP_TIME_LIMIT_S): Celery's soft time limit raised inside
  the step is a transient failure, retried as above. A step that the exception
  cannot reach is killed with its prefork process a few seconds later; the
  worker's main process then decides on the kill the same way (StepRequest):
  retried in place with backoff, or given up with its reasons on the last attempt.
  The limits are the worker's own, whatever its sender stamped into the message.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import celery
from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.worker import state as worker_state
from celery.worker.request import Request

from config.settings import STEP_KILL_GRACE_S
from config.topology import Task as TaskName
from pipeline import steps, tracing
from pipeline.errors import InvalidTaskArguments, StepOverran
from pipeline.keys import dead_letter_id
from pipeline.retry import Defer, GiveUp, Retry, RetryPolicy
from pipeline.runtime import Runtime, get_runtime
from pipeline.sqs.delivery import Delivery

log = logging.getLogger("pipeline.tasks")

# `request.chain` is how Celery's tracer finds the rest of a canvas after a
# task returns (celery/app/trace.py); emptying it is how a step ends its chain
# without failing its message. Checked against the release it was read from.
CELERY_SERIES = "5.7."
if not celery.__version__.startswith(CELERY_SERIES):
    raise ImportError(f"tasks.base was written for celery {CELERY_SERIES}x (request.chain), "
                      f"found {celery.__version__}")

__all__ = ["OrderStep", "RetryPolicy", "StepRequest"]


def overran(task: TaskName, error: Exception, limit_s: int) -> Exception:
    """Celery's soft time limit, raised inside a step, as the transient failure it is
    to the retry decision (which knows no Celery)."""
    if isinstance(error, SoftTimeLimitExceeded):
        return StepOverran(f"{task.value} ran past its time limit of {limit_s} s "
                           "(PIPELINE_STEP_TIME_LIMIT_S)")
    return error


# What the worker's main process made of a step killed at its hard time limit.
RETRIED, DEAD_LETTERED = "retried", "dead-lettered"


class StepRequest(Request):
    """A step's request in the worker.

    Its time limits are this worker's (PIPELINE_STEP_TIME_LIMIT_S): Celery would
    take the ones its sender stamped into the message, and a producer's settings
    would decide a lane's limits. A kill at the hard limit is decided on like any
    failure of the step (OrderStep.killed); Celery alone would requeue the message
    at once, and after its last receive SQS would move it to the DLQ without a
    reason, its order waiting for good (the reconciler's re-drive killed the same
    way)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.time_limits = (None, None)  # the task's own: this worker's configuration
        self.after_kill: str | None = None

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft and not worker_state.should_terminate:
            self.after_kill = self.task.killed(self, timeout)
        super().on_timeout(soft, timeout)  # its log line, hooks and event; then reject()

    def reject(self, requeue: bool = False) -> None:
        if self.after_kill == DEAD_LETTERED:
            self.acknowledge()
            return
        # retried: its visibility is the backoff now; a requeue would undo that
        super().reject(requeue=requeue and self.after_kill != RETRIED)


class OrderStep(Task):
    """A workflow step: arguments in, pipeline.steps does the work, SQS is told the outcome."""

    abstract = True
    acks_late = True
    typing = True
    retry = RetryPolicy()
    Request = StepRequest

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return super().__call__(*args, **kwargs)
        signature = self.__dict__.get("_run_signature")
        if signature is None:
            signature = self.__dict__["_run_signature"] = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            # Wrong arguments fail the same way every time: the step's own checks
            # dead-letter it with the reason now (Celery checks only when sending).
            return self.execute(args, kwargs)
        return super().__call__(*args, **kwargs)

    # --- the delivery -------------------------------------------------------
    def delivery(self, request: Any = None) -> Delivery:
        """This delivery (`request`: a worker Request's context, outside the step)."""
        return Delivery.of(request or self.request, get_runtime().settings.queue_prefix)

    def max_attempts(self, delivery: Delivery) -> int:
        if self.retry.max_attempts is not None:
            return self.retry.max_attempts
        spec = delivery.spec
        return spec.attempts if spec else 1

    def context(self, rt: Runtime, delivery: Delivery, request: Any = None,
                **extra: Any) -> steps.StepContext:
        request = request or self.request
        return rt.step_context(attempt=delivery.attempt,
                               final_attempt=delivery.attempt >= self.max_attempts(delivery),
                               worker=request.hostname or "", sequence=delivery.sequence,
                               in_chain=bool(request.chain), stop_chain=self.stop_chain,
                               **extra)

    # --- running it -----------------------------------------------------------
    def execute(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> Any:
        if not tracing.is_on() or not args:
            return self._execute(args, kwargs)
        task = TaskName(self.name)
        with tracing.order_scope(steps.subject(task, args), steps.step_name(task, args)):
            return self._execute(args, kwargs)

    def _execute(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
        rt = get_runtime()
        delivery = self.delivery()
        ctx = self.context(rt, delivery)
        task = TaskName(self.name)
        try:
            if kwargs:
                raise InvalidTaskArguments(f"{task.value} takes no keyword arguments, got "
                                           f"{sorted(kwargs)[:5]}")
            with self._kept_invisible(rt, delivery):
                result = steps.attempt(ctx, task, args)
        except Reject:
            raise
        except Exception as raised:
            error = overran(task, raised, rt.settings.step_time_limit_s)
            decision = steps.handle_failure(
                ctx, task, args, error, policy=self.retry,
                max_attempts=self.max_attempts(delivery), can_defer=delivery.can_defer)
            if isinstance(decision, Retry):
                self._retry_in_place(rt, delivery, decision)
            elif isinstance(decision, Defer):
                self._defer(rt, delivery, decision)
            elif isinstance(decision, GiveUp):
                self.dead_letter(rt, delivery, task, args, error, decision)
            else:
                raise
            return None
        steps.after(ctx, task, args, result)
        return args[0] if args else None

    def killed(self, request: StepRequest, limit_s: float) -> str | None:
        """Decide on an attempt killed at the hard time limit, in the worker's main
        process (the step's own is gone): RETRIED, DEAD_LETTERED, or None when no
        decision could be applied (Celery then requeues the message)."""
        try:
            rt = get_runtime()
            task = TaskName(self.name)
            context = request._context
            delivery = self.delivery(context)
            args = tuple(request.args or ())
            started = (datetime.fromtimestamp(request.time_start, UTC)
                       if request.time_start else datetime.now(UTC))
            ctx = self.context(rt, delivery, context, started=started)
            error = StepOverran(f"{task.value} was killed at its hard time limit of "
                                f"{limit_s:g} s (PIPELINE_STEP_TIME_LIMIT_S + "
                                f"{STEP_KILL_GRACE_S} s)")
            decision = steps.handle_failure(ctx, task, args, error, policy=self.retry,
                                            max_attempts=self.max_attempts(delivery),
                                            can_defer=False)
            if isinstance(decision, Retry) and self._back_off(rt, delivery, decision, request.id):
                return RETRIED
            if isinstance(decision, GiveUp) and delivery.body is not None:
                self.dead_letter(rt, delivery, task, args, error, decision)
                return DEAD_LETTERED
        except Exception:  # the kill must still be reported and the message requeued
            log.exception("%s[%s]: could not decide on the kill at the time limit; "
                          "the message is requeued", self.name, request.id)
        return None

    def _kept_invisible(self, rt: Runtime, delivery: Delivery) -> AbstractContextManager[None]:
        spec = delivery.spec
        if spec is None or not delivery.receipt or not delivery.queue_url:
            return nullcontext()
        return rt.visibility.keep(delivery.queue_url, delivery.receipt,
                                  rt.settings.visibility(spec))

    def _retry_in_place(self, rt: Runtime, delivery: Delivery, decision: Retry) -> None:
        self._back_off(rt, delivery, decision, self.request.id)
        raise Reject(f"retry in {decision.delay_s}s: {decision.reason}", requeue=False)

    def _back_off(self, rt: Runtime, delivery: Delivery, decision: Retry,
                  task_id: str | None) -> bool:
        """Hide the message for the backoff; False when there is no SQS delivery."""
        log.warning("%s[%s] attempt %d: %s; retrying in %ss", self.name, task_id,
                    delivery.attempt, decision.reason, decision.delay_s)
        if not (delivery.receipt and delivery.queue_url):
            return False
        rt.sqs.change_message_visibility(QueueUrl=delivery.queue_url,
                                         ReceiptHandle=delivery.receipt,
                                         VisibilityTimeout=decision.delay_s)
        return True

    def _defer(self, rt: Runtime, delivery: Delivery, decision: Defer) -> None:
        rt.sqs.send_message(QueueUrl=delivery.queue_url, MessageBody=delivery.body,
                            DelaySeconds=decision.delay_s)
        log.warning("%s[%s]: %s; deferred %ss without using an attempt", self.name,
                    self.request.id, decision.reason, decision.delay_s)

    def dead_letter(self, rt: Runtime, delivery: Delivery, task: TaskName,
                    args: tuple[Any, ...], error: BaseException, decision: GiveUp) -> None:
        from pipeline.ops.quarantine import send_to_dlq

        if delivery.body is None or delivery.spec is None:
            log.error("%s[%s] gave up and cannot be dead-lettered (no SQS delivery): %s",
                      self.name, self.request.id, decision.reason)
            return
        stamp = datetime.now(UTC)
        subject = steps.subject(task, args)
        first = rt.store.first_failure(subject, steps.step_name(task, args)) or stamp
        send_to_dlq(rt, delivery.spec.name, delivery.body, {
            "task": self.name, "order_id": subject, "step": steps.step_name(task, args),
            "exception_type": type(error).__name__, "exception": decision.reason,
            "attempts": str(delivery.attempt),
            "first_failure": first.isoformat(), "last_failure": stamp.isoformat(),
            "group": delivery.group or "",
        }, dead_id=dead_letter_id(delivery.message_id or str(self.request.id)))

    def stop_chain(self) -> None:
        """End the canvas here: the rest of the chain must not run (see CELERY_SERIES)."""
        self.request.chain = None
