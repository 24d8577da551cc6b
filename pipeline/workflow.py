"""The order workflow, as the business process reads it.

    validate ─▶ authorize ══▶ reserve each line ══▶ ship ─▶ notify
                 (claims the     (one message per      (claims the order,
                  order, then     line on               captures, then
                  fans out)       inventory.fifo;       the carrier)
                                  the last one
                                  fans in)

A step that ends the process early (rejected, declined, out of stock,
refused, cancelled) or gives up sends the order to COMPENSATING. Then every
step that had an effect is undone, newest first, each undo declared beside
its step in SAGA, and only then is the customer told, from the ledger:

    cancel the carrier shipment ─▶ release each line ══▶ void / refund ─▶ notify

Everything here is a pure function of an order's state (OrderState, read
from the store in one go): what to publish next, what compensation must
undo, whether an undo is done. The steps use it after each attempt, and the
reconciler uses the same functions to re-drive an order whose messages were
lost, so progress always comes from the store, never from a queue.
Consecutive steps are published as one Celery chain (a canvas); fan-outs are
one FIFO message per line. No Celery import: pipeline.worker.consumer.dispatch turns
these descriptions into signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from config.topology import Task
from pipeline.domain import PROGRESS, OrderStatus, StockOp, StockUpdate

__all__ = [
    "SAGA",
    "Chain",
    "FanIn",
    "OrderState",
    "Publish",
    "Step",
    "StockUpdates",
    "Undo",
    "compensation_plan",
    "money_settled",
    "next_publish",
    "next_undo",
    "reservation_fan_in",
    "undo_done",
]

S = OrderStatus


class Undo(StrEnum):
    """A compensation, named as the timeline records it."""

    CANCEL_SHIPMENT = "cancel_shipment"
    RELEASE_LINES = "release_lines"
    REVERSE_PAYMENT = "reverse_payment"


@dataclass(frozen=True)
class Step:
    """A forward step and what undoes it.

    `claims`: the status from which the step's effect may exist; an order that
    reached it before compensation began needs `undo`, unless it is ending with
    one of `no_effect_when` (a decline authorizes nothing, a refusal ships nothing).
    """

    name: str
    task: Task
    claims: OrderStatus | None = None
    undo: Undo | None = None
    no_effect_when: frozenset[OrderStatus] = frozenset()


SAGA: tuple[Step, ...] = (
    Step("validate", Task.VALIDATE),
    Step("authorize_payment", Task.AUTHORIZE,
         claims=S.AUTHORIZING, undo=Undo.REVERSE_PAYMENT,  # void, or refund a capture
         no_effect_when=frozenset({S.PAYMENT_DECLINED})),
    Step("reserve", Task.APPLY_LINE,  # one message per line
         claims=S.RESERVING, undo=Undo.RELEASE_LINES),
    Step("ship", Task.SHIP,  # capture, then the carrier
         claims=S.SHIPPING, undo=Undo.CANCEL_SHIPMENT,  # the capture: REVERSE_PAYMENT
         no_effect_when=frozenset({S.SHIPPING_FAILED})),
    Step("notify", Task.NOTIFY),
)
UNDO_TASK: dict[Undo, Task] = {
    Undo.CANCEL_SHIPMENT: Task.CANCEL_SHIPMENT,
    Undo.RELEASE_LINES: Task.APPLY_LINE,
    Undo.REVERSE_PAYMENT: Task.REVERSE_PAYMENT,
}
# Orders that began compensating before `compensating_from` was recorded: assume
# the furthest point compensation could start from, each undo finds what is there.
LEGACY_COMPENSATING_FROM = S.RESERVED


# ---------------------------------------------------------------- what to publish
@dataclass(frozen=True)
class Chain:
    """Steps run one after the other on the order (a Celery chain)."""

    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class StockUpdates:
    """One FIFO message per update, in each product's group."""

    updates: tuple[StockUpdate, ...]


Publish = Chain | StockUpdates


# ---------------------------------------------------------------- an order's state
@dataclass(frozen=True)
class OrderState:
    """What the workflow needs to know about one order, read in one transaction."""

    order_id: str
    status: OrderStatus
    outcome: OrderStatus | None
    compensating_from: OrderStatus | None
    vip: bool
    lines: tuple[tuple[str, int], ...]  # (product id, quantity)
    line_states: Mapping[str, str] = field(default_factory=dict)  # product -> reservation
    published: frozenset[str] = frozenset()  # stock-update ids recorded for this order
    applied: frozenset[str] = frozenset()  # ... and those already applied
    done: frozenset[str] = frozenset()  # timeline steps that ended ok or repeated
    payments: tuple[tuple[str, str], ...] = ()  # (kind, amount) in ledger order

    def update(self, sku: str, op: StockOp) -> StockUpdate:
        quantity = dict(self.lines)[sku]
        return StockUpdate(self.order_id, sku, quantity, op)


def money_settled(payments: tuple[tuple[str, str], ...]) -> bool:
    """No money is taken or held: every capture refunded in full, every
    authorization captured (and so refunded) or voided."""
    from decimal import Decimal

    captured = sum((Decimal(a) for k, a in payments if k == "capture"), Decimal(0))
    refunded = sum((Decimal(a) for k, a in payments if k == "refund"), Decimal(0))
    kinds = {k for k, _ in payments}
    held = "authorize" in kinds and "void" not in kinds and "capture" not in kinds
    return refunded == captured and not held


def _index(status: OrderStatus) -> int:
    return PROGRESS.index(status) if status in PROGRESS else -1


def compensation_plan(state: OrderState) -> tuple[Undo, ...]:
    """What must be undone, newest first (reverse saga order)."""
    came_from = state.compensating_from or LEGACY_COMPENSATING_FROM
    plan = []
    for step in reversed(SAGA):
        if step.undo is None or step.claims is None:
            continue
        if _index(came_from) < _index(step.claims):
            continue  # compensation began before this step could have had an effect
        if state.outcome in step.no_effect_when and came_from is step.claims:
            continue  # it ended at this very step, which did nothing
        plan.append(step.undo)
    return tuple(plan)


def undo_done(undo: Undo, state: OrderState) -> bool:
    if undo is Undo.RELEASE_LINES:
        # A reserve still on its way is harmless once its line is decided: it finds
        # the decision and takes nothing.
        return all(state.line_states.get(sku) in ("RELEASED", "REJECTED")
                   for sku, _ in state.lines)
    if undo is Undo.REVERSE_PAYMENT:
        return undo.value in state.done and money_settled(state.payments)
    return undo.value in state.done


def next_undo(state: OrderState) -> Undo | None:
    for undo in compensation_plan(state):
        if not undo_done(undo, state):
            return undo
    return None


class FanIn(StrEnum):
    WAITING = "waiting"  # some line is not decided yet
    RESERVED = "reserved"  # every line is reserved
    SHORT = "short"  # some line could not be reserved


def reservation_fan_in(state: OrderState) -> tuple[FanIn, tuple[str, ...]]:
    """After the lines of a RESERVING order: the decision, and the lines short of stock."""
    if any(sku not in state.line_states for sku, _ in state.lines):
        return FanIn.WAITING, ()
    short = tuple(sku for sku, _ in state.lines
                  if state.line_states[sku] in ("REJECTED", "RELEASED"))
    return (FanIn.SHORT if short else FanIn.RESERVED), short


def _updates(state: OrderState, op: StockOp, *, resume: bool,
             skip_states: tuple[str, ...]) -> tuple[StockUpdate, ...]:
    """The line updates still to send: not yet recorded, or (resuming) not yet applied."""
    chosen = []
    for sku, _ in state.lines:
        if state.line_states.get(sku) in skip_states:
            continue
        update = state.update(sku, op)
        sent = update.update_id in (state.applied if resume else state.published)
        if not sent:
            chosen.append(update)
    return tuple(chosen)


def next_publish(state: OrderState, *, resume: bool = False) -> tuple[Publish, ...]:
    """What must be published for the order to move on from `state`.

    `resume` (the reconciler, a redelivered step) also re-sends what was sent
    before and has not had its effect: a message may have been lost. Sending
    twice is safe, every step is idempotent, and SQS drops a FIFO repeat
    within its 5-minute deduplication window.
    """
    status = state.status
    if status is S.RECEIVED:
        return (Chain((Task.VALIDATE, Task.AUTHORIZE)),)
    if status in (S.VALIDATED, S.AUTHORIZING):
        return (Chain((Task.AUTHORIZE,)),)
    if status is S.PAYMENT_AUTHORIZED:
        return (Chain((Task.RESERVE,)),)
    if status is S.RESERVING:
        # The payment step records and sends the lines; only a resume re-sends them.
        lines = _updates(state, StockOp.RESERVE, resume=True, skip_states=(
            "RESERVED", "REJECTED", "RELEASED")) if resume else ()
        return (StockUpdates(lines),) if lines else ()
    if status in (S.RESERVED, S.SHIPPING):
        return (Chain((Task.SHIP, Task.NOTIFY)),)
    if status is S.SHIPPED:
        return (Chain((Task.NOTIFY,)),)
    if status is S.COMPENSATING:
        undo = next_undo(state)
        if undo is None:
            return (Chain((Task.NOTIFY,)),)
        if undo is Undo.RELEASE_LINES:
            lines = _updates(state, StockOp.RELEASE, resume=resume,
                             skip_states=("RELEASED", "REJECTED"))
            return (StockUpdates(lines),) if lines else ()
        if undo is Undo.REVERSE_PAYMENT:
            return (Chain((Task.REVERSE_PAYMENT, Task.NOTIFY)),)
        return (Chain((UNDO_TASK[undo],)),)
    return ()  # NEEDS_ATTENTION waits for the reconciler or a redrive; terminal is done
