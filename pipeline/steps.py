"""Running one delivery of a step, without Celery: arguments, body, timeline, what next.

A Celery task (tasks/) is a thin adapter around this module: it builds a
StepContext from its delivery, calls `attempt`, applies the retry decision
(pipeline.retry) to an exception, and on giving up calls `give_up`. The
model test (tests/unit/test_model.py) drives exactly the same functions with
an in-memory publisher, so what it proves about interleavings holds for the
workers.

After an attempt, `after` decides whether the workflow moves on here: a step
in the middle of a chain leaves that to the canvas; otherwise `advance` reads
the order's state and publishes what pipeline.workflow says comes next. At
the two fan-in points (every line reserved; every line released) only one
caller continues: the compare-and-set on the order's status, or a once-only
claim. A redelivered step (attempt > 1) resumes: its first run may have died
before publishing, so whatever is still outstanding is sent again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from config.topology import Task
from pipeline import workflow
from pipeline.arguments import check_arguments, line_update, restock_update, step_name, subject
from pipeline.domain import (
    WINDING_DOWN,
    Order,
    OrderStatus,
    StockOp,
    StockUpdate,
    can_transition,
)
from pipeline.errors import InvalidTaskArguments, OrderNotFound, StoreUnavailable
from pipeline.retry import Decision, Defer, GiveUp, Retry, RetryPolicy, decide
from pipeline.services import inventory, notification, payment, shipping, validation
from pipeline.services.breaker import GuardedGateway
from pipeline.services.outcome import Record, StepResult
from pipeline.services.simulators import SimulatedCarrier
from pipeline.services.validation import Rules
from pipeline.store import Store
from pipeline.store.clock import now
from pipeline.workflow import FanIn, OrderState, Publish, StockUpdates, Undo

__all__ = ["Publisher", "StepContext", "advance", "after", "attempt", "give_up",
           "handle_failure", "record_attempt", "resume", "start", "step_name", "subject"]

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger("pipeline.steps")
S = OrderStatus


class Publisher(Protocol):
    """Sends step messages: Celery in the workers, a list in the model test."""

    def publish(self, order_id: str, items: Sequence[Publish], *, vip: bool) -> None: ...

    def stock_updates(self, updates: Sequence[StockUpdate]) -> None: ...


@dataclass
class StepContext:
    """What one delivery of a step works with."""

    store: Store
    gateway: GuardedGateway
    carrier: SimulatedCarrier
    rules: Rules
    publisher: Publisher
    rng: random.Random
    hold_s: int = 1800
    low_stock_below: int = 0
    inventory_fault_rate: float = 0.0
    attempt: int = 1
    final_attempt: bool = False  # no attempt follows this one: a failure gives up
    worker: str = ""
    sequence: str | None = None  # the FIFO message's SequenceNumber
    in_chain: bool = False  # further steps follow in this message's canvas
    stop_chain: Callable[[], None] = lambda: None
    started: datetime = field(default_factory=now)


# ---------------------------------------------------------------- the bodies
# Each body gets the step's Record and calls it inside the transaction that makes
# its change, so the timeline row commits with the change (see `attempt`).
def _apply(ctx: StepContext, update: StockUpdate, record: Record) -> StepResult:
    """Check and apply one stock update; `record` is written in its transaction, and
    so is the reservation fan-in when this line of a reserving order decides it."""
    checked = inventory.check_update(ctx.store, update)
    status, repeated = checked.status, checked.repeated
    # Injected faults are transient: a step's last attempt is spared, so they
    # exercise in-place FIFO retries and never a give-up (real ones still can).
    if not ctx.final_attempt and ctx.inventory_fault_rate > ctx.rng.random():
        raise StoreUnavailable(f"injected fault before applying {update.update_id}")
    if update.op is StockOp.RELEASE and status is S.NEEDS_ATTENTION:
        ctx.store.resume_compensation(update.ref)
    fans_in = update.op is StockOp.RESERVE and status is S.RESERVING and not repeated
    fan_in: list[FanIn | None] = []

    def result(state: str) -> StepResult:
        return StepResult.go(f"{update.op.value} {update.sku} x{update.quantity}: {state} "
                             f"(seq {ctx.sequence})", repeated=repeated)

    def within(conn: Connection, state: str) -> None:
        if fans_in:
            fan_in.append(_fan_in(ctx, conn, update.ref))
        record(conn, result(state))

    done = result(inventory.apply_update(
        ctx.store, update, status=status, sequence=ctx.sequence, hold_s=ctx.hold_s,
        low_stock_below=ctx.low_stock_below, within=within))
    decided = fan_in[0] if fan_in else None
    if decided is None:
        return done  # `after` looks at the order (a repeat, a release, a lost race)
    if decided is not FanIn.WAITING:
        state = (OrderState(update.ref, S.RESERVED, None, None, checked.vip, lines=())
                 if decided is FanIn.RESERVED else ctx.store.order_state(update.ref))
        _publish(ctx, state, workflow.next_publish(state))
    return replace(done, next_sent=True)


def _fan_in(ctx: StepContext, conn: Connection, order_id: str) -> FanIn | None:
    """In the transaction of a line just decided: WAITING while another line is
    undecided; when every line is, the order moves on with the line's change
    (RESERVED, or towards OUT_OF_STOCK). None: the order is not reserving any more,
    or another line moved it; `after` then reads it."""
    found = ctx.store.line_decisions(conn, order_id)
    if found is None or found.status is not S.RESERVING:
        return None
    state = OrderState(order_id, S.RESERVING, None, None, False, lines=found.lines,
                       line_states=found.states)
    decision, short = workflow.reservation_fan_in(state)
    if decision is FanIn.RESERVED:
        won = ctx.store.transition(order_id, S.RESERVED, expected=[S.RESERVING], conn=conn)
    elif decision is FanIn.SHORT:
        won = ctx.store.transition(order_id, S.COMPENSATING, expected=[S.RESERVING], conn=conn,
                                   outcome=S.OUT_OF_STOCK,
                                   reasons=[f"{sku}: out of stock" for sku in short])
    else:
        return decision
    return decision if won else None


def _validate(ctx: StepContext, record: Record, order_id: str) -> StepResult:
    return validation.validate(ctx.store, order_id, ctx.rules, record)


def _authorize(ctx: StepContext, record: Record, order_id: str) -> StepResult:
    authorized = payment.authorize(ctx.store, ctx.gateway, order_id, record)
    if authorized.updates:  # noted with the status change; a crash before this is resumed
        ctx.publisher.publish(order_id, (StockUpdates(authorized.updates),),
                              vip=authorized.vip)
    return authorized.result


def _reserve_legacy(ctx: StepContext, _record: Record, order_id: str) -> StepResult:
    """Orders authorized before the payment step sent their lines itself."""
    state = ctx.store.order_state(order_id)
    if state.status is not S.PAYMENT_AUTHORIZED:
        return StepResult.go("lines already sent", repeated=True)
    updates = tuple(state.update(sku, StockOp.RESERVE) for sku, _ in state.lines)
    with ctx.store.engine.begin() as conn:
        if not ctx.store.transition(order_id, S.RESERVING, expected=[S.PAYMENT_AUTHORIZED],
                                    conn=conn):
            return StepResult.go("lines already sent", repeated=True)
        ctx.store.record_published(updates, conn)
    ctx.publisher.publish(order_id, (StockUpdates(updates),), vip=state.vip)
    return StepResult.go(f"{len(updates)} line(s) sent for reservation")


def _apply_line(ctx: StepContext, record: Record, *args: Any) -> StepResult:
    return _apply(ctx, line_update(args), record)


def _release_legacy(ctx: StepContext, _record: Record, order_id: str) -> StepResult:
    ctx.store.resume_compensation(order_id)
    return StepResult.go("compensation continues from the order's state")


def _restock(ctx: StepContext, record: Record, restock_id: Any, sku: Any,
             quantity: Any) -> StepResult:
    # a restock has no timeline: nothing is recorded
    return _apply(ctx, restock_update((restock_id, sku, quantity)), record)


BODIES: dict[Task, Callable[..., StepResult]] = {
    Task.VALIDATE: _validate,
    Task.AUTHORIZE: _authorize,
    Task.RESERVE: _reserve_legacy,
    Task.APPLY_LINE: _apply_line,
    Task.RELEASE: _release_legacy,
    Task.SHIP: lambda ctx, rec, o: shipping.ship(ctx.store, ctx.gateway, ctx.carrier, o, rec),
    Task.CANCEL_SHIPMENT: lambda ctx, rec, o: shipping.cancel_shipment(ctx.store, ctx.carrier,
                                                                      o, rec),
    Task.REVERSE_PAYMENT: lambda ctx, rec, o: payment.reverse(ctx.store, ctx.gateway, o, rec),
    Task.NOTIFY: lambda ctx, rec, o: notification.notify(ctx.store, o, rec),
    Task.RESTOCK: _restock,
}
# ---------------------------------------------------------------- one attempt
def _outcome(result: StepResult) -> str:
    return "repeated" if result.repeated else ("ok" if result.proceed else "stopped")


class _Timeline:
    """The step's Record: its timeline row, written once, in the transaction the body
    gives it, or on its own when the body changed nothing."""

    def __init__(self, ctx: StepContext, task: Task, args: Sequence[Any]) -> None:
        self.ctx, self.task, self.args = ctx, task, args
        self.written = False

    def __call__(self, conn: Connection | None, result: StepResult) -> StepResult:
        record_attempt(self.ctx, self.task, self.args, _outcome(result), result.detail,
                       conn=conn)
        self.written = True
        return result


def record_attempt(ctx: StepContext, task: Task, args: Sequence[Any], outcome: str,
                   detail: str | None, *, conn: Connection | None = None) -> None:
    """One timeline row per attempt, written when it ends. A restock has no order."""
    if task is Task.RESTOCK:
        return
    ctx.store.record_step(subject(task, args), step_name(task, args), ctx.attempt, ctx.worker,
                          started=ctx.started, outcome=outcome,
                          detail=(detail or "")[:2000] or None, conn=conn)


def attempt(ctx: StepContext, task: Task, args: Sequence[Any]) -> StepResult:
    """Run one attempt and record it; exceptions are the caller's to decide on."""
    check_arguments(task, args)
    timeline = _Timeline(ctx, task, args)
    result = BODIES[task](ctx, timeline, *args)
    if not timeline.written:
        timeline(None, result)
    return result


def after(ctx: StepContext, task: Task, args: Sequence[Any], result: StepResult) -> None:
    """Move the workflow on from a finished attempt (see the module doc)."""
    if task is Task.RESTOCK:
        return
    if not result.proceed:
        ctx.stop_chain()
    elif result.next_sent and not result.repeated:
        return  # the body sent what follows, or the order ended
    elif ctx.in_chain:
        return  # the canvas runs the next step
    if result.repeated and ctx.attempt == 1:
        return  # a duplicate: whoever made the change moved the order on
    advance(ctx, subject(task, args), after=task, resume=result.repeated)


def _publish(ctx: StepContext, state: OrderState, items: Sequence[Publish]) -> None:
    for item in items:
        if isinstance(item, StockUpdates):
            ctx.store.record_published(item.updates)
    if items:
        ctx.publisher.publish(state.order_id, items, vip=state.vip)


def advance(ctx: StepContext, order_id: str, *, after: Task | None = None,
            resume: bool = False) -> None:
    """Publish what the order's state says comes next."""
    store = ctx.store
    state = store.order_state(order_id)
    if state.status is S.RESERVING:
        decision, short = workflow.reservation_fan_in(state)
        if decision is FanIn.WAITING:
            if not resume:
                return  # other lines are still on their way
        else:
            if decision is FanIn.RESERVED:
                won = store.transition(order_id, S.RESERVED, expected=[S.RESERVING])
                moved = replace(state, status=S.RESERVED)
            else:
                won = store.transition(order_id, S.COMPENSATING, expected=[S.RESERVING],
                                       outcome=S.OUT_OF_STOCK,
                                       reasons=[f"{sku}: out of stock" for sku in short])
                moved = replace(state, status=S.COMPENSATING, outcome=S.OUT_OF_STOCK,
                                compensating_from=S.RESERVING)
            if not won and not resume:
                return  # another line's worker decided and moved the order on
            # Won: the compare-and-set moved exactly the state just read.
            state = moved if won else store.order_state(order_id)
    elif state.status is S.COMPENSATING and after is Task.APPLY_LINE and not resume:
        if not workflow.undo_done(Undo.RELEASE_LINES, state):
            return  # other lines are still being released
        if not inventory.claim_release_fan_in(store, order_id):
            return  # another line's worker continues
    _publish(ctx, state, workflow.next_publish(state, resume=resume))


def start(ctx: StepContext, order: Order) -> None:
    """Publish the first step of an order just stored (RECEIVED; no read needed)."""
    state = OrderState(order_id=order.order_id, status=S.RECEIVED, outcome=None,
                       compensating_from=None, vip=order.vip, lines=())
    _publish(ctx, state, workflow.next_publish(state))


def resume(ctx: StepContext, order_id: str) -> None:
    """Re-drive an order from its state (the reconciler)."""
    advance(ctx, order_id, resume=True)


# ---------------------------------------------------------------- giving up
def give_up(ctx: StepContext, task: Task, args: Sequence[Any], error: BaseException,
            reason: str) -> None:
    """No attempt will help: compensate the order, or, if it is compensating
    already, leave it visibly waiting (NEEDS_ATTENTION) until the money and stock
    can be put right. The caller dead-letters the message with `reason`."""
    if task in (Task.APPLY_LINE, Task.RESTOCK) and not isinstance(error, InvalidTaskArguments):
        try:
            update = (line_update(args) if task is Task.APPLY_LINE else
                      StockUpdate(str(args[0]), str(args[1]), int(args[2]), StockOp.RESTOCK))
            ctx.store.mark_dead_lettered(update.update_id)
        except (InvalidTaskArguments, ValueError, TypeError, IndexError):
            pass
    if task is Task.RESTOCK or isinstance(error, InvalidTaskArguments):
        return  # not this order's failure: a forged or corrupted message changes nothing
    order_id = subject(task, args)
    try:
        status = ctx.store.status(order_id)
    except OrderNotFound:
        return
    step = step_name(task, args)
    if status in WINDING_DOWN:
        if ctx.store.transition(order_id, S.NEEDS_ATTENTION, expected=[S.COMPENSATING]):
            log.error("order %s needs attention: %s gave up (%s)", order_id, step, reason)
        return
    if not can_transition(status, S.COMPENSATING):
        # SHIPPED, say: the shipment stands; the step waits in the DLQ and the
        # reconciler sends it again.
        return
    cancelled = ctx.store.order(order_id).cancel_requested
    outcome = S.CANCELLED if cancelled else S.FAILED
    if ctx.store.transition(order_id, S.COMPENSATING, expected=[status], outcome=outcome,
                            reasons=[cancelled or f"{step} failed: {reason}"]):
        advance(ctx, order_id)


def handle_failure(ctx: StepContext, task: Task, args: Sequence[Any], error: BaseException,
                   *, policy: RetryPolicy, max_attempts: int, can_defer: bool) -> Decision:
    """Decide on an attempt's exception, record it on the timeline, and give up when
    that is the decision. The caller applies the decision to the message (retry in
    place, defer, dead-letter, or leave it to the redrive policy)."""
    decision = decide(error, attempt=ctx.attempt, max_attempts=max_attempts, policy=policy,
                      rng=ctx.rng, can_defer=can_defer)
    if isinstance(decision, Retry):
        record_attempt(ctx, task, args, "retry",
                       f"{decision.reason} (next attempt in {decision.delay_s}s)")
    elif isinstance(decision, Defer):
        record_attempt(ctx, task, args, "deferred",
                       f"{decision.reason}; deferred {decision.delay_s}s using no attempt")
        ctx.stop_chain()  # the chain travels on in the deferred copy
    elif isinstance(decision, GiveUp):
        record_attempt(ctx, task, args, "failed", decision.reason)
        ctx.stop_chain()
        give_up(ctx, task, args, error, decision.reason)
    else:
        record_attempt(ctx, task, args, "error", decision.reason)
    return decision
