"""One running item per FIFO group; the rest wait in sequence order.

SQS FIFO hands a group's messages to one consumer at a time, but one receive
may return several messages of the same group (up to ten on AWS), and a
worker with several execution slots would run them side by side and finish
them in any order (celery#8352). The gate sits between receipt and the pool:
per group, one item runs; the others wait, ordered by SQS sequence number.

When the running item fails (a retry in place or an error) the waiting items
of its group are handed back to the queue instead of run: SQS then
redelivers the failed one first, because the group stays locked while it is
in flight. Pure logic, no Celery; tasks.fifo wires it into the worker.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GroupGate"]

T = TypeVar("T")


@dataclass(order=True)
class _Waiting(Generic[T]):
    sequence: int
    item_id: Hashable = field(compare=False)
    item: T = field(compare=False)


class GroupGate(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, Hashable] = {}
        self._waiting: dict[Hashable, list[_Waiting[T]]] = {}

    def admit(self, group: Hashable, sequence: int, item_id: Hashable, item: T) -> bool:
        """True: run `item` now. False: it waits behind its group's running item."""
        with self._lock:
            if group not in self._running:
                self._running[group] = item_id
                return True
            bisect.insort(self._waiting.setdefault(group, []),
                          _Waiting(sequence, item_id, item))
            return False

    def finish(self, group: Hashable, item_id: Hashable, *, ok: bool) -> tuple[T | None, list[T]]:
        """The running item of `group` ended. Returns (item to run next, items to hand back).

        A call for an item that is not its group's running one changes nothing.
        """
        with self._lock:
            if self._running.get(group) != item_id:
                return None, []
            waiting = self._waiting.pop(group, [])
            if ok and waiting:
                head, rest = waiting[0], waiting[1:]
                self._running[group] = head.item_id
                if rest:
                    self._waiting[group] = rest
                return head.item, []
            del self._running[group]
            return None, [w.item for w in waiting]

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiting.values())
