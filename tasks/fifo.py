"""FIFO steps: per-group serialization inside the worker.

A task on FifoStep gets a Celery execution strategy that passes each request
through the consumer's GroupGate (pipeline.worker.group_gate) before the pool: so
messages of one product never overlap and run in SQS sequence order, while
different products run in parallel on every execution slot. Celery offers
the task `Strategy` as its extension point; the stock strategy is reused
whole, only its hand-off to the pool and its ack/reject callbacks are wrapped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import celery
from celery.worker import state as worker_state
from celery.worker.strategy import default as default_strategy

from config.topology import queue_by_name
from pipeline.keys import handback_key
from pipeline.ops.quarantine import queue_name_of
from pipeline.runtime import get_runtime
from pipeline.sqs.delivery import Delivery
from pipeline.sqs.eventloop import run_soon
from pipeline.store.operations import claim, claimed_like
from pipeline.worker.group_gate import GroupGate
from tasks.base import OrderStep

# The stock strategy is wrapped, not copied: its signature and the request's
# acknowledge/reject callbacks are celery 5.7's. A different release fails here.
CELERY_SERIES = "5.7."
if not celery.__version__.startswith(CELERY_SERIES):
    raise ImportError(f"tasks.fifo was written for celery {CELERY_SERIES}x (the task "
                      f"Strategy), found {celery.__version__}")

log = logging.getLogger("pipeline.fifo")
_GATE_ATTRIBUTE = "_pipeline_fifo_gate"
_HOLDS_ATTRIBUTE = "_pipeline_fifo_holds"


class FifoStep(OrderStep):
    """A step consumed from a FIFO queue: one running message per group per worker.

    A message handed back unrun behind a failed one of its group was received all
    the same: SQS counts it. Those receives are noted in the store (by whichever
    worker handed it back) and are not attempts; the redrive policy of
    inventory.fifo leaves room for them (its step_attempts, config/topology.py)."""

    abstract = True
    Strategy = "tasks.fifo:group_serial"

    def delivery(self, request: Any = None) -> Delivery:
        return without_handbacks(super().delivery(request), get_runtime().store.engine)


def without_handbacks(delivery: Delivery, engine: Any) -> Delivery:
    """The delivery with the receives that were handed back unrun set aside."""
    if delivery.receives > 1 and delivery.message_id:
        returned = len(claimed_like(engine, handback_key(delivery.message_id)))
        if returned:
            return replace(delivery, returned=returned)
    return delivery


def _note_handback(request: Any) -> None:
    message = (request.message.delivery_info or {}).get("sqs_message") or {}
    message_id = message.get("MessageId")
    try:
        receive = int((message.get("Attributes") or {}).get("ApproximateReceiveCount") or 1)
        if message_id:
            claim(get_runtime().store.engine, handback_key(str(message_id), receive))
    except Exception as error:  # a lost note only counts the receive as an attempt
        log.warning("could not note a handed-back message (%s: %s)", type(error).__name__,
                    error)


def fifo_position(message: Any) -> tuple[str, int] | None:
    """(group, sequence number) of a message received from a FIFO queue."""
    sqs_message = (message.delivery_info or {}).get("sqs_message") or {}
    attributes = sqs_message.get("Attributes") or {}
    group = attributes.get("MessageGroupId")
    if group is None:
        return None
    return f"{message.delivery_info.get('routing_key')}/{group}", int(
        attributes.get("SequenceNumber") or 0)


class _ConsumerWithGate:
    """The worker's consumer, with requests handed to the gate instead of the pool."""

    def __init__(self, consumer: Any, on_task_request: Callable[[Any], None]) -> None:
        self._consumer = consumer
        self.on_task_request = on_task_request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def group_serial(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    gate: GroupGate[Any] = consumer.__dict__.setdefault(_GATE_ATTRIBUTE, GroupGate())
    run = consumer.on_task_request

    def soon(callback: Callable[[], None]) -> None:
        hub = getattr(consumer, "hub", None)
        if hub is not None:  # the pool's callbacks may come from other threads
            run_soon(hub, callback)
        else:
            callback()

    holds: dict[Any, int] = consumer.__dict__.setdefault(_HOLDS_ATTRIBUTE, {})

    def on_request(request: Any) -> None:
        position = fifo_position(request.message)
        if position is None or gate.admit(position[0], position[1],
                                          request.message.delivery_tag, request):
            run(request)
        else:  # waiting behind its product's running message: keep it invisible meanwhile
            hold(request)

    def hold(request: Any) -> None:
        info = request.message.delivery_info or {}
        receipt = (info.get("sqs_message") or {}).get("ReceiptHandle")
        url = info.get("sqs_queue")
        if receipt and url:
            rt = get_runtime()
            name = queue_name_of(str(url).rsplit("/", 1)[-1], rt.settings.queue_prefix)
            visibility = rt.settings.visibility(queue_by_name(name)) if name else 60
            holds[request.message.delivery_tag] = rt.visibility.hold(url, receipt, visibility)

    def unhold(request: Any) -> None:
        token = holds.pop(request.message.delivery_tag, None)
        if token is not None:
            get_runtime().visibility.release(token)

    handler = default_strategy(task, app, _ConsumerWithGate(consumer, on_request), **kwargs)

    def serial_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                       **options: Any) -> Any:
        position = fifo_position(message)
        if position is None:
            return handler(message, body, ack, reject, callbacks, **options)
        group = position[0]

        def finished(ok: bool) -> None:
            following, handed_back = gate.finish(group, message.delivery_tag, ok=ok)
            for request in handed_back:
                # Not run: back to SQS, behind the failed one of its group.
                _note_handback(request)
                unhold(request)
                request.reject(requeue=True)
                worker_state.task_ready(request)
            if handed_back:
                log.info("%s: %d message(s) handed back behind a failed one",
                         group, len(handed_back))
            if following is not None:
                unhold(following)  # its task keeps it invisible from here on
                run(following)

        def on_ack(*args: Any, **kw: Any) -> Any:
            result = ack(*args, **kw)
            soon(lambda: finished(True))
            return result

        def on_reject(*args: Any, **kw: Any) -> Any:
            result = reject(*args, **kw)
            soon(lambda: finished(False))
            return result

        return handler(message, body, on_ack, on_reject, callbacks, **options)

    return serial_handler
