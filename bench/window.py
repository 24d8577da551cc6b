"""The steady state and the drain of one open-loop run, as users of an overloaded
shop feel them.

An arrival rate runs for `seconds`; the first third is the ramp (queues fill,
lanes warm up), the rest is the steady window. In it: goodput (orders that
reached a terminal status per second: what the shop actually sells), the CPU
every process spent per order completed in it, and the offered rate the
producers really reached. After the load stops: the backlog left (orders not yet
terminal), how long it took to drain and at what rate, which should be the
peak goodput if nothing was wasted while the queues were deep.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from pipeline.store import Store
from pipeline.store import schema as t
from pipeline.store.clock import aware
from pipeline.store.db import reading

RAMP = 1 / 3  # of the load's duration, before the steady window opens


class Sampled(Protocol):
    def cpu(self) -> dict[str, float]: ...


@dataclass
class Window:
    rate: float | None
    seconds: float
    began: datetime = field(default_factory=lambda: datetime.now(UTC))
    steady_at: datetime | None = None
    ended: datetime | None = None
    cpu_at_steady: dict[str, float] = field(default_factory=dict)
    cpu_at_end: dict[str, float] = field(default_factory=dict)
    # This process (the load generator: its producer threads) is not in Sampled.cpu().
    load_cpu: list[float] = field(default_factory=list)
    _timer: threading.Timer | None = None

    @classmethod
    def open(cls, s: Sampled, rate: float | None, seconds: float) -> Window:
        """Start timing now (the load starts); sample CPU when the ramp is over."""
        window = cls(rate, seconds)
        if rate is not None:
            def sample() -> None:
                window.cpu_at_steady = s.cpu()
                window.load_cpu.append(time.process_time())
                window.steady_at = datetime.now(UTC)

            window._timer = threading.Timer(seconds * RAMP, sample)
            window._timer.start()
        return window

    def close(self, s: Sampled) -> None:
        """The producers are done: the load has stopped."""
        if self._timer is not None:
            self._timer.join()
        self.cpu_at_end = s.cpu()
        self.load_cpu.append(time.process_time())
        self.ended = datetime.now(UTC)

    def measure(self, store: Store, ids: list[str]) -> dict[str, Any] | None:
        if self.rate is None or self.steady_at is None or self.ended is None:
            return None
        with reading(store.engine) as conn:
            rows = conn.execute(select(t.orders.c.created_at, t.orders.c.terminal_at)
                                .where(t.orders.c.id.in_(ids))).all()
        ended, steady_at = self.ended, self.steady_at
        done = sorted(aware(r.terminal_at) for r in rows if r.terminal_at is not None)
        in_window = sum(steady_at <= d <= ended for d in done)
        window_s = max((ended - steady_at).total_seconds(), 1e-9)
        backlog = len(ids) - sum(d <= ended for d in done)
        drain_s = (max((done[-1] - ended).total_seconds(), 0.0)
                   if done and len(done) == len(ids) else None)
        cpu = {k: v - self.cpu_at_steady.get(k, 0.0) for k, v in self.cpu_at_end.items()}
        per_order = 1000 / max(in_window, 1)
        return {
            "offeredPerSecond": round(len(ids) / max(
                (ended - self.began).total_seconds(), 1e-9), 1),
            "steadySeconds": round(window_s, 1),
            "goodput": round(in_window / window_s, 1),
            "workerCpuMsPerOrder": round(sum(v for k, v in cpu.items() if k != "emulator")
                                         * per_order, 1),
            "allCpuMsPerOrder": round(sum(cpu.values()) * per_order, 1),
            # Cores the load generator took from the box in the window (2 on this one).
            "loadCores": (round((self.load_cpu[-1] - self.load_cpu[0]) / window_s, 2)
                          if len(self.load_cpu) == 2 else None),
            "workerCores": round(sum(v for k, v in cpu.items() if k != "emulator")
                                 / window_s, 2),
            "emulatorCores": round(cpu.get("emulator", 0.0) / window_s, 2),
            "backlogAtStop": backlog,
            "drainSeconds": None if drain_s is None else round(drain_s, 1),
            "drainPerSecond": (round(backlog / drain_s, 1) if drain_s and backlog else None),
        }


__all__ = ["RAMP", "Window"]
