"""Admission control: past capacity, finish the orders in progress before taking more.

SQS has no priorities, and a Celery worker takes what its queues offer: when
new orders arrive faster than the lanes finish them, every lane's share goes
to more orders at once, each finishes later, and fewer finish per second
while the load lasts (make bench, overload section). So the workers that
consume the intake queue (`QueueSpec.intake` in the topology: where
validation, an order's first step, runs) stop receiving from it while
PIPELINE_INTAKE_LIMIT orders are in progress (admitted, not ended, not parked
for attention), and start again when 80 % of that is left. New orders wait in
SQS meanwhile, which is what a queue is for; they are stored and visible.

The count comes from the store, so every worker of every machine sees the
same one; it is read at most every RECHECK_S per process. VIP orders enter
through the priority queue and are never held back. A store that cannot be
read opens the gate: holding back costs only latency, but a gate stuck closed
would stop the shop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RECHECK_S", "RESUME_AT", "IntakeGate", "gate_for", "held_after", "reset_gates"]

log = logging.getLogger("pipeline.intake")
RECHECK_S = 0.5
RESUME_AT = 0.8  # of the limit: hysteresis, so the gate does not flap at the edge


def held_after(held: bool, in_progress: int, limit: int) -> bool:
    """Whether the intake is held after seeing `in_progress` orders (limit 0: never)."""
    if limit <= 0:
        return False
    if held:
        return in_progress > math.floor(limit * RESUME_AT)
    return in_progress >= limit


@dataclass
class IntakeGate:
    limit: int
    count: Callable[[], int]  # orders in progress now
    recheck_s: float = RECHECK_S
    clock: Callable[[], float] = time.monotonic
    held: bool = False
    in_progress: int = 0
    _checked_at: float = -math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admits(self) -> bool:
        """True when new orders may be received now."""
        with self._lock:
            stamp = self.clock()
            if stamp - self._checked_at >= self.recheck_s:
                self._checked_at = stamp
                self._look()
            return not self.held

    def _look(self) -> None:
        try:
            self.in_progress = self.count()
        except Exception as error:  # fail open: see the module's docstring
            if self.held:
                log.warning("intake open: cannot count the orders in progress (%s)", error)
            self.held = False
            return
        held = held_after(self.held, self.in_progress, self.limit)
        if held != self.held:
            if held:
                log.warning("intake held: %d orders in progress (limit %d); new orders wait "
                            "in SQS", self.in_progress, self.limit)
            else:
                log.warning("intake open: %d orders in progress (limit %d)",
                            self.in_progress, self.limit)
        self.held = held


_gates: dict[str, IntakeGate | None] = {}
_gates_lock = threading.Lock()


def gate_for(queue: str) -> IntakeGate | None:
    """The gate of a consumed queue (its topology name), None when it has none."""
    try:
        return _gates[queue]
    except KeyError:
        pass
    with _gates_lock:
        if queue not in _gates:
            _gates[queue] = _build(queue)
        return _gates[queue]


def _build(queue: str) -> IntakeGate | None:
    from config.settings import load_settings
    from config.topology import QUEUES
    from pipeline.runtime import get_runtime

    if not any(spec.name == queue and spec.intake for spec in QUEUES):
        return None
    limit = load_settings().intake_limit
    if limit <= 0:
        return None
    return IntakeGate(limit, lambda: get_runtime().store.orders_in_progress())


def reset_gates() -> None:
    """Forget the gates (a test that changes the settings)."""
    with _gates_lock:
        _gates.clear()
