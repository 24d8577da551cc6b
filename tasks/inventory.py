from __future__ import annotations

from pipeline import workflow
from pipeline.app import app
from pipeline.domain import OrderStatus
from pipeline.errors import StoreUnavailable
from pipeline.runtime import Runtime, get_runtime
from pipeline.services import inventory
from pipeline.services.inventory import FanIn, StockOp, StockUpdate
from pipeline.services.outcome import StepResult
from tasks.base import OrderStep
from tasks.fifo import FifoStep
from tasks.flow import follow


@app.task(base=OrderStep, bind=True, name="tasks.inventory.reserve_inventory")
def reserve_inventory(self: OrderStep, order_id: str) -> str:
    """Fan out: one reserve message per line on inventory.fifo."""
    updates: list[StockUpdate] = []

    def body(rt: Runtime) -> StepResult:
        result, messages = inventory.reservation_messages(rt.store, order_id)
        updates.extend(messages)
        return result

    result = self.run_step(order_id, "reserve_inventory", body)
    workflow.publish_stock_updates(get_runtime().store, updates)
    follow(self, order_id, result)
    return order_id


@app.task(base=OrderStep, bind=True, name="tasks.inventory.release_inventory")
def release_inventory(self: OrderStep, order_id: str) -> str:
    """Compensation fan-out: release every line, or go straight on if none was sent."""
    rt = get_runtime()
    vip = self.is_vip(rt, order_id)
    updates: list[StockUpdate] = []

    def body(rt: Runtime) -> StepResult:
        if not (rt.store.line_states(order_id)
                or rt.store.step_done(order_id, "reserve_inventory")):
            return StepResult.go("no line was sent for reservation")
        updates.extend(inventory.release_messages(rt.store, order_id))
        return StepResult.go(f"{len(updates)} line(s) sent for release")

    self.run_step(order_id, "release_inventory", body)
    if updates:
        workflow.publish_stock_updates(rt.store, updates)
    elif inventory.claim(rt.store, f"{order_id}:released") or self.attempt > 1:
        workflow.after_release(order_id, vip=vip)
    return order_id


def _apply(rt: Runtime, update: StockUpdate, sequence: str | None) -> str:
    if rt.settings.inventory_transient_error_rate > rt.rng.random():
        raise StoreUnavailable(f"injected fault before applying {update.deduplication_id}")
    return inventory.apply_update(rt.store, update, sequence=sequence,
                                  hold_s=rt.settings.reservation_hold_s,
                                  low_stock_below=rt.settings.low_stock_below)


@app.task(base=FifoStep, bind=True, name="tasks.inventory.apply_line")
def apply_line(self: FifoStep, order_id: str, sku: str, quantity: int, op: str) -> str:
    """Apply one order line to stock, in the product's FIFO order; the last line fans in."""
    update = StockUpdate(order_id, sku, quantity, StockOp(op))
    sequence = self.sqs_attribute("SequenceNumber")
    rt = get_runtime()

    def body(rt: Runtime) -> StepResult:
        state = _apply(rt, update, sequence)
        return StepResult.go(f"{op} {sku} x{quantity}: {state} (seq {sequence})")

    result = self.run_step(order_id, f"{op}:{sku}", body)
    if not result.proceed:  # gave up: dead-lettered, the order compensates
        rt.store.mark_dead_lettered(update.deduplication_id)
        return order_id
    if update.op is StockOp.RESERVE:
        fan_in = inventory.reservation_fan_in(rt.store, order_id)
    else:
        fan_in = inventory.release_fan_in(rt.store, order_id)
    # Continue when this line completed the set, or when it is a redelivery
    # (its first run may have died between the fan-in and the publish).
    if fan_in is FanIn.WAITING or (fan_in is FanIn.DONE_BEFORE and self.attempt == 1):
        return order_id
    vip = self.is_vip(rt, order_id)
    if update.op is StockOp.RELEASE:
        workflow.after_release(order_id, vip=vip)
        return order_id
    status = rt.store.status(order_id)
    if status is OrderStatus.RESERVED:
        workflow.after_reservation(order_id, vip=vip)
    elif status is OrderStatus.COMPENSATING:
        workflow.compensate(order_id, vip=vip)
    return order_id


@app.task(base=FifoStep, bind=True, name="tasks.inventory.restock")
def restock(self: FifoStep, restock_id: str, sku: str, quantity: int) -> str:
    """Add delivered stock, behind every earlier update of the product."""
    update = StockUpdate(restock_id, sku, quantity, StockOp.RESTOCK)
    sequence = self.sqs_attribute("SequenceNumber")
    rt = get_runtime()
    try:
        self.attempt_or_retry(rt, lambda rt: _apply(rt, update, sequence))
    except (StoreUnavailable, ValueError) as error:  # gave up, or an unknown product
        rt.store.mark_dead_lettered(update.deduplication_id)
        self.dead_letter(rt, restock_id, "restock", error)
    return restock_id
