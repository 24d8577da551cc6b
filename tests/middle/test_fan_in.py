"""The reservation fan-in is decided in the transaction of the line that completes it.

Two lines of one order are different products, so two inventory workers decide
them at the same time. Each line's transaction reads every line's decision
after writing its own; on PostgreSQL (READ COMMITTED) two such transactions
could each miss the other's uncommitted reservation, both see "waiting", and
leave the order RESERVING with nobody to move it. The order's row is locked
before that read, so the later of the two sees the earlier. Here both lines of
each order are delivered at once from two threads, on SQLite and PostgreSQL:
every order must end up RESERVED with exactly one ship-then-notify chain sent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from config.topology import Task
from pipeline import steps
from pipeline.domain import OrderStatus, StockUpdate
from pipeline.inmemory import QueuedMessage
from pipeline.store import Store
from pipeline.workflow import Chain, Publish
from tests.middle.conftest import Harness

ORDERS = 25


class Recorder:
    """A publisher that keeps what the two racing deliveries sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Publish]] = []
        self.lock = threading.Lock()

    def publish(self, order_id: str, items: Sequence[Publish], *, vip: bool) -> None:
        with self.lock:
            self.sent += [(order_id, item) for item in items]

    def stock_updates(self, updates: Sequence[StockUpdate]) -> None:
        raise AssertionError(f"no stock update is due here: {updates}")


def test_two_lines_decided_at_once_move_the_order_on_exactly_once(any_store: Store) -> None:
    harness = Harness(any_store, stock={"A": 1000, "B": 1000})
    recorder = Recorder()

    def deliver(message: QueuedMessage, barrier: threading.Barrier) -> None:
        ctx = replace(harness.context(attempt=1, sequence=str(message.sequence)),
                      publisher=recorder)
        barrier.wait()
        result = steps.attempt(ctx, Task.APPLY_LINE, message.args)
        steps.after(ctx, Task.APPLY_LINE, message.args, result)

    order_ids = []
    for _ in range(ORDERS):
        order_id = harness.submit(lines=[("A", 1), ("B", 1)])
        harness.run_until(order_id, OrderStatus.RESERVING)
        lines = [m for m in harness.broker.queue if m.task is Task.APPLY_LINE]
        assert len(lines) == 2, lines
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(deliver, lines, [threading.Barrier(2)] * 2))
        for message in lines:
            harness.broker.queue.remove(message)
        order_ids.append(order_id)

    statuses = Counter(any_store.status(o) for o in order_ids)
    assert statuses == {OrderStatus.RESERVED: ORDERS}
    chains = Counter(o for o, item in recorder.sent if item == Chain((Task.SHIP, Task.NOTIFY)))
    assert chains == dict.fromkeys(order_ids, 1)
    assert len(recorder.sent) == ORDERS
