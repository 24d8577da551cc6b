"""Load and measurement shared by every orders scenario of `make bench`.

Orders are the happy path (one or three lines, alternating), so every
system under test does the same five steps and the same database work.
Load is open loop: order i is submitted at start + i / rate whatever the
system's state, by a few producer threads; a burst submits everything at
once. Figures come from the order store (created_at -> terminal_at, step
rows) and from the emulator (requests by API action, CPU).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from statistics import quantiles
from typing import Any

from sqlalchemy import select

from bench.harness import Stack
from bench.window import Window
from pipeline.dev.demo import ADDRESS, CATALOG
from pipeline.store import Store
from pipeline.store import schema as t
from pipeline.store.db import reading

SQS_PRICE = 0.40  # USD per million requests (seed 000: cost model)
SNS_PRICE = 0.50  # USD per million publishes (AWS list price; deliveries to SQS are free)


@dataclass(frozen=True)
class Load:
    """An arrival rate for `seconds`, or (rate None) a burst of `count` orders."""

    rate: float | None
    seconds: float = 0.0
    count: int = 0
    drain_s: float | None = None  # how long to wait for the last order (None: a default)
    batch: int = 1  # orders a producer submits in one call, at most (those due by then)
    linger_s: float = 0.05  # with batch > 1: how long a producer waits for more orders
    lines: int | None = None  # lines per order (None: one or three, alternating)

    @property
    def orders(self) -> int:
        return self.count if self.rate is None else round(self.rate * self.seconds)

    @property
    def label(self) -> str:
        load = f"burst {self.count}" if self.rate is None else f"{self.rate:g}/s"
        return load if self.lines is None else f"{load}, {self.lines} line(s)"

    def arguments(self) -> list[str]:
        """This load as a scenario's command-line arguments (`from_arguments`)."""
        args = (["--burst", str(self.count)] if self.rate is None
                else ["--rate", str(self.rate), "--seconds", str(self.seconds)])
        return (args + (["--drain-timeout", str(self.drain_s)] if self.drain_s else [])
                + (["--batch", str(self.batch)] if self.batch > 1 else [])
                + (["--lines", str(self.lines)] if self.lines else []))

    @classmethod
    def from_arguments(cls, args: Any) -> Load:
        batch = getattr(args, "batch", 1) or 1
        lines = getattr(args, "lines", None)
        if args.burst:
            return cls(None, count=args.burst, drain_s=args.drain_timeout, batch=batch,
                       lines=lines)
        return cls(args.rate, args.seconds, drain_s=args.drain_timeout, batch=batch,
                   lines=lines)


# Products for orders of N lines (the scaling section): one product per line.
MANY = {f"SKU-N{n:02d}": Decimal(f"{3 + n}.50") for n in range(1, 11)}


def bench_order(n: int, lines: int | None = None) -> dict[str, Any]:
    def line(sku: str, qty: int) -> dict[str, Any]:
        price = MANY[sku] if sku in MANY else CATALOG[sku][0]
        return {"productId": sku, "quantity": qty, "price": str(price)}

    if lines is not None:
        items = [line(sku, 1) for sku in list(MANY)[:lines]]
    else:
        items = ([line("SKU-BOOK", 1)] if n % 2 == 0 else
                 [line("SKU-BOOK", 1), line("SKU-MUG", 2), line("SKU-PEN", 1)])
    total = sum(Decimal(i["price"]) * i["quantity"] for i in items)
    return {"orderId": f"b{uuid.uuid4().hex[:14]}", "customerId": f"c{n % 50}", "items": items,
            "totalAmount": str(total), "currency": "USD", "priority": "normal",
            "payment": {"token": "tok_visa"}, "shippingAddress": ADDRESS,
            "contact": {"email": f"c{n % 50}@example.com"}}


def stock_up(store: Store, orders: int) -> None:
    for sku, (price, _) in CATALOG.items():
        store.set_stock(sku, orders * 3 + 100, price=price)
    for sku, price in MANY.items():
        store.set_stock(sku, orders + 100, price=price)


def drive(load: Load, submit: Callable[[list[dict[str, Any]]], list[str]], producers: int = 4,
          cpu: list[float] | None = None) -> tuple[list[str], float]:
    """Submit the load; returns the order ids and the worst producer lag (s).
    A producer takes the next order when it is due; with `load.batch` > 1 it
    lingers `load.linger_s` and takes the orders due by then too (up to the
    batch), and submits them in one call, as a producer that coalesces its sends
    does. `cpu` gets each producer thread's own CPU seconds: the load
    generator's cost."""
    documents = [bench_order(n, load.lines) for n in range(load.orders)]
    ids: list[str] = []
    lag = [0.0]
    lock = threading.Lock()
    taken = [0]  # documents handed to a producer so far
    start = time.monotonic() + 0.2

    def due(n: int) -> float:
        return start + (n / load.rate if load.rate else 0.0)

    def produce() -> None:
        began = time.thread_time()
        try:
            produce_until_done()
        finally:
            if cpu is not None:
                with lock:
                    cpu.append(time.thread_time() - began)

    def produce_until_done() -> None:
        while True:
            with lock:
                first = taken[0]
                if first == len(documents):
                    return
                taken[0] += 1
            # the schedule itself (open loop), then the linger; not synchronizations
            linger = load.linger_s if load.batch > 1 and load.rate is not None else 0.0
            delay = due(first) + linger - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            batch = [first]
            with lock:  # and whatever else is due by now
                while (taken[0] < len(documents) and len(batch) < load.batch
                       and due(taken[0]) <= time.monotonic()):
                    batch.append(taken[0])
                    taken[0] += 1
            order_ids = submit([documents[n] for n in batch])
            with lock:
                ids.extend(order_ids)
                lag[0] = max(lag[0], time.monotonic() - due(first))

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids, lag[0]


def wait_terminal(store: Store, ids: list[str], timeout: float) -> int:
    """Wait until every order is terminal or `timeout` passes; returns how many are."""
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while True:
        with reading(store.engine) as conn:
            done = conn.execute(select(t.orders.c.id).where(
                t.orders.c.id.in_(wanted), t.orders.c.terminal_at.is_not(None))).scalars().all()
        if len(done) == len(wanted) or time.monotonic() > deadline:
            return len(done)
        time.sleep(0.25)


def _cuts(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": None, "p95": None, "p99": None}
    c = quantiles(sorted(values), n=100)
    return {"p50": round(c[49], 4), "p95": round(c[94], 4), "p99": round(c[98], 4)}


def measure(store: Store, ids: list[str], since: datetime | None = None) -> dict[str, Any]:
    """End-to-end and per-step latency, throughput and outcomes of these orders; with
    `since` (a burst let go), both counted from then, not from when each was stored."""
    with reading(store.engine) as conn:
        rows = conn.execute(select(t.orders.c.id, t.orders.c.status, t.orders.c.created_at,
                                   t.orders.c.terminal_at).where(t.orders.c.id.in_(ids))).all()
        steps = conn.execute(select(t.steps.c.step, t.steps.c.started_at,
                                    t.steps.c.finished_at, t.steps.c.outcome,
                                    t.steps.c.attempt)
                             .where(t.steps.c.order_id.in_(ids))).all()

    def utc(value: Any) -> Any:
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    finished = [(max(utc(r.created_at), since) if since else utc(r.created_at),
                 utc(r.terminal_at)) for r in rows if r.terminal_at]
    latencies = [(end - begin).total_seconds() for begin, end in finished]
    outcomes: dict[str, int] = defaultdict(int)
    for r in rows:
        outcomes[r.status] += 1
    per_step: dict[str, list[float]] = defaultdict(list)
    retries = later = 0
    for step, started, ended, outcome, attempt in steps:
        retries += outcome == "retry"
        later += attempt > 1
        if ended is not None:
            per_step[str(step).split(":", 1)[0]].append(
                (utc(ended) - utc(started)).total_seconds())
    span = ((max(e for _, e in finished) - min(b for b, _ in finished)).total_seconds()
            if finished else 0.0)
    return {
        "orders": len(ids), "completed": len(finished), "outcomes": dict(outcomes),
        "ordersPerSecond": round(len(finished) / span, 1) if span else 0.0,
        "latency": _cuts(latencies),
        "stepLatency": {name: _cuts(values) for name, values in sorted(per_step.items())},
        "retries": retries,
        # Attempts after the first that no retry asked for: a message received again
        # (its visibility ran out while it waited in a worker, or a worker died).
        "redeliveries": max(later - retries, 0),
    }


def per_order(counts: dict[str, int], orders: int) -> dict[str, Any]:
    """Requests per completed order by action, totals, and list-price cost."""
    if not orders:
        return {"byAction": {}, "sqs": None, "sns": None, "usdPerMillionOrders": None}
    by_action = {k: round(v / orders, 3) for k, v in sorted(counts.items())}
    sqs = sum(v for k, v in counts.items() if k.startswith("SQS.")) / orders
    sns = sum(v for k, v in counts.items() if k.startswith("SNS.")) / orders
    return {"byAction": by_action, "sqs": round(sqs, 2), "sns": round(sns, 2),
            "usdPerMillionOrders": round(sqs * SQS_PRICE + sns * SNS_PRICE, 2)}


def run_load(s: Stack, system: str, load: Load,
             submit: Callable[[list[dict[str, Any]]], list[str]]) -> dict[str, Any]:
    """Drive `load` through `submit` on a started stack and measure the run: latency,
    requests per order counted from the load's start, CPU per order per process, and
    (for an arrival rate) the steady state and the drain (bench.window). A burst is
    published with the system stopped, and measured from when it is let go."""
    store = s.rt.store
    s.emulator.reset_request_counts()
    burst = load.rate is None
    if burst:
        s.freeze()
    cpu_before = s.cpu()
    started = time.monotonic()
    load_cpu: list[float] = []
    window = Window.open(s, load.rate, load.seconds)
    # One coalescing producer when it batches (a second would take the orders it waits for).
    try:
        ids, lag = drive(load, submit, producers=1 if load.batch > 1 else 4, cpu=load_cpu)
    finally:
        if burst:
            s.thaw()
    released = datetime.now(UTC) if burst else None
    publish_s = time.monotonic() - started
    window.close(s)
    drain_limit = load.drain_s or (90.0 if load.rate is None else 60.0)
    completed = wait_terminal(store, ids, drain_limit)
    wall = time.monotonic() - started
    counts = s.emulator.request_counts()
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in s.cpu().items()}
    cpu["load"] = sum(load_cpu)  # the producers submitting orders (and their first message)
    done = max(completed, 1)
    return {
        "system": system, "load": load.label, "rate": load.rate, "producerBatch": load.batch,
        "linesPerOrder": load.lines,
        "producerLingerSeconds": load.linger_s if load.batch > 1 else 0.0,
        # Not every order ended within the wait after the load: a backlog still
        # draining past capacity, or a real stall; the rate columns say which.
        **measure(store, ids, since=released), "stalled": completed < len(ids),
        "drainLimitSeconds": drain_limit,
        "producerLagSeconds": round(lag, 3), "wallSeconds": round(wall, 1),
        # a burst: how long publishing it took, the system stopped meanwhile
        "publishSeconds": round(publish_s, 2) if burst else None,
        "requestsPerOrder": per_order(counts, completed),
        "cpuMsPerOrder": {k: round(v / done * 1000, 2) for k, v in cpu.items()},
        # The system's own processes: worker lanes, relay (and Flower); not the emulator,
        # the database server or the load generator, which have their own columns.
        "workerCpuMsPerOrder": round(sum(v for k, v in cpu.items()
                                         if k not in ("emulator", "load", "database"))
                                     / done * 1000, 2),
        # Every process of the run: workers, relay (and Flower), emulator, database
        # server, load generator.
        "allCpuMsPerOrder": round(sum(cpu.values()) / done * 1000, 2),
        "overload": window.measure(store, ids),
    }
