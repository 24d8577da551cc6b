"""The pipeline in one process: a store, pipeline.steps, and a broker in a list.

For the services-and-store tier of this project's suite (tests/middle) and the
bench's database counts, and usable by anyone testing against the pipeline
without SQS or Celery: InMemoryPipeline runs orders through exactly the
functions the workers run, and a test chooses which message is delivered next.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["InMemoryBroker", "InMemoryPipeline", "QueuedMessage"]


class InMemoryBroker:
    """A broker in a list, for the services-and-store tier (no SQS, no Celery).

    It implements pipeline.steps.Publisher and runs deliveries the way the
    workers do (pipeline.steps plus the retry decision), with SQS's semantics
    where they matter: FIFO messages of one group are delivered one at a time
    in publish order, a FIFO deduplication id already queued is dropped, a
    retry keeps the message (its receive count grows), a crash leaves it until
    maxReceiveCount and then moves it to the dead letters, a chain continues
    only after a step that proceeded. Tests pick which message to deliver, so
    they choose the interleaving.
    """

    def __init__(self) -> None:
        from pipeline.workflow import Publish  # noqa: F401 - documents the protocol

        self.queue: list[QueuedMessage] = []
        self.dead: list[tuple[QueuedMessage, str]] = []
        self._sequence = 0

    # --- Publisher ---
    def publish(self, order_id: str, items: Any, *, vip: bool) -> None:
        from pipeline.workflow import Chain

        for item in items:
            if isinstance(item, Chain):
                self._put(QueuedMessage(item.tasks[0], (order_id,), tuple(item.tasks[1:])))
            else:
                self.stock_updates(item.updates)

    def stock_updates(self, updates: Any) -> None:
        from config.topology import Task
        from pipeline.domain import StockOp

        for u in updates:
            if u.op is StockOp.RESTOCK:
                message = QueuedMessage(Task.RESTOCK, (u.ref, u.sku, u.quantity))
            else:
                message = QueuedMessage(Task.APPLY_LINE, (u.ref, u.sku, u.quantity, u.op.value))
            message.group, message.dedup = u.group_id, u.update_id
            if any(m.dedup == message.dedup for m in self.queue):
                continue  # SQS drops a repeat within its deduplication window
            self._put(message)

    def _put(self, message: QueuedMessage) -> None:
        self._sequence += 1
        message.sequence = self._sequence
        self.queue.append(message)

    # --- delivering ---
    def deliverable(self) -> list[QueuedMessage]:
        """What a consumer could receive now: every standard message, and the head of
        each FIFO group."""
        heads: dict[str, QueuedMessage] = {}
        ready = []
        for message in sorted(self.queue, key=lambda m: m.sequence):
            if message.group is None:
                ready.append(message)
            elif message.group not in heads:
                heads[message.group] = message
                ready.append(message)
        return ready

    def deliver(self, message: QueuedMessage, context: Callable[..., Any], *,
                max_receives: int = 3) -> str:
        """Run one delivery of `message`; `context(**delivery)` builds its StepContext.
        Returns what happened: done, retry, deferred, dead or crash."""
        from config.topology import queue_by_name
        from pipeline import steps
        from pipeline.retry import Defer, GiveUp, Retry, RetryPolicy

        message.receives += 1
        stopped: list[bool] = []
        ctx = context(attempt=message.receives, in_chain=bool(message.then),
                      sequence=str(message.sequence), stop_chain=lambda: stopped.append(True))
        fifo = message.group is not None
        try:
            result = steps.attempt(ctx, message.task, message.args)
        except Exception as error:
            spec = queue_by_name("inventory.fifo" if fifo else "orders")
            decision = steps.handle_failure(
                ctx, message.task, message.args, error, policy=RetryPolicy(),
                max_attempts=min(max_receives - 1 or 1, spec.attempts),
                can_defer=not fifo)
            if isinstance(decision, Retry):
                return "retry"
            self.queue.remove(message)
            # The task returned: Celery would run the rest of its chain unless the
            # step ended it.
            if isinstance(decision, Defer | GiveUp) and message.then and not stopped:
                self._put(QueuedMessage(message.then[0], message.args, message.then[1:]))
            if isinstance(decision, Defer):
                self._put(QueuedMessage(message.task, message.args, message.then,
                                        message.group, message.dedup))
                return "deferred"
            if isinstance(decision, GiveUp):
                self.dead.append((message, decision.reason))
                return "dead"
            if message.receives >= max_receives:  # the redrive policy moves it
                self.dead.append((message, f"moved by the redrive policy: {decision.reason}"))
                return "dead"
            self.queue.append(message)
            return "crash"
        self.queue.remove(message)
        steps.after(ctx, message.task, message.args, result)
        if result.proceed and message.then and not stopped:
            self._put(QueuedMessage(message.then[0], message.args, message.then[1:]))
        return "done"

    def redrive(self) -> int:
        """Every dead letter back to its queue, as `pipeline dlq redrive --all` does."""
        letters, self.dead = self.dead, []
        for message, _ in letters:
            self._put(QueuedMessage(message.task, message.args, message.then, message.group,
                                    f"redrive-{message.sequence}" if message.group else None))
        return len(letters)


@dataclass
class QueuedMessage:
    task: Any
    args: tuple[Any, ...]
    then: tuple[Any, ...] = ()
    group: str | None = None
    dedup: str | None = None
    sequence: int = 0
    receives: int = 0


class InMemoryPipeline:
    """A store, an InMemoryBroker, and the simulated gateway and carrier with
    switchable faults (`outages["gateway"]`, `outages["carrier"]`)."""

    def __init__(self, store: Any, *, seed: int = 3, name: str = "memory") -> None:
        from pipeline.services.simulators import Faults

        self.store = store
        self.broker = InMemoryBroker()
        self.rng = random.Random(seed)
        self.name = name
        self.outages: dict[str, Faults] = {}

    def context(self, **delivery: Any) -> Any:
        """The StepContext of one delivery (`delivery`: attempt, sequence, ...)."""
        from pipeline import steps
        from pipeline.breaker_state import BreakerConfig
        from pipeline.services.breaker import Breaker, GuardedGateway
        from pipeline.services.simulators import Faults, SimulatedCarrier, SimulatedGateway
        from pipeline.services.validation import Rules

        engine = self.store.engine
        gateway = GuardedGateway(
            SimulatedGateway(engine, self.outages.get("gateway", Faults()), self.rng),
            # A wall-clock open period has no place in runs that pick their interleaving.
            Breaker(self.store, f"gw-{self.name}", BreakerConfig(failure_threshold=10**6)))
        carrier = SimulatedCarrier(engine, self.outages.get("carrier", Faults()), self.rng)
        return steps.StepContext(store=self.store, gateway=gateway, carrier=carrier,
                                 rules=Rules(), publisher=self.broker, rng=self.rng,
                                 worker="in-memory", **delivery)

    def submit_document(self, document: dict[str, Any]) -> str:
        """Store an order and publish its first step, as pipeline.api does."""
        from pipeline import steps
        from pipeline.domain import parse_order

        order = parse_order(document)
        if self.store.create_order(order):
            steps.start(self.context(), order)
        else:
            steps.advance(self.context(), order.order_id)
        return order.order_id

    def next_message(self, task: Any = None) -> QueuedMessage:
        ready = [m for m in self.broker.deliverable() if task is None or m.task is task]
        assert ready, f"no {task or 'message'} to deliver: {self.broker.queue}"
        return ready[0]

    def deliver(self, task: Any = None) -> str:
        return self.broker.deliver(self.next_message(task), self.context)

    def drain(self) -> None:
        while self.broker.deliverable():
            self.deliver()
