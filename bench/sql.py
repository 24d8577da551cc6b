"""What an order costs the database, per system: transactions and statements.

Counted in one process on SQLite (pipeline.store.counters), so no worker or
emulator is involved: the pipeline's steps run through pipeline.inmemory
exactly as the workers run them, and the seed-style consumers' step functions
run with the timeline row each of its consumers writes. Same bench orders (one
or three lines, alternating) for both; reads, the outbox and the simulated
gateway's and carrier's own books included. CPU is this process's, per order:
the steps' Python and SQLite, no transport.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import seedstyle
from bench.workload import bench_order, stock_up
from pipeline import steps
from pipeline.domain import OrderStatus, parse_order
from pipeline.inmemory import InMemoryPipeline
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.store.counters import SqlCounter

__all__ = ["DESCRIPTION", "lines", "scenario"]

DESCRIPTION = ("Counted in one process on SQLite (no worker or emulator): the pipeline's "
               "steps through pipeline.inmemory as the workers run them, and the seed-style "
               "step functions with their timeline row; the same bench orders. Reads, the "
               "outbox and the simulated gateway's and carrier's books included; CPU is "
               "this process's, per order.")


def _pipeline(memory: InMemoryPipeline, counter: SqlCounter, n: int) -> str:
    with counter.labelled("pipeline:submit"):
        order_id = memory.submit_document(bench_order(n))
    while memory.broker.deliverable():
        message = memory.next_message()
        step = steps.step_name(message.task, message.args).split(":")[0]
        with counter.labelled(f"pipeline:{step}"):
            memory.broker.deliver(message, memory.context)
    return order_id


def _seed(memory: InMemoryPipeline, counter: SqlCounter, n: int) -> str:
    store = memory.store
    order = parse_order(bench_order(n))
    with counter.labelled("seed:submit"):
        store.create_order(order)
    ctx = memory.context()
    for step in seedstyle.STEPS:
        with counter.labelled(f"seed:{step}"):
            result = seedstyle.run_step(step, ctx, order.order_id)
        if not result.proceed:
            break
    return order.order_id


def scenario(orders: int = 100) -> dict[str, Any]:
    result: dict[str, Any] = {"orders": orders}
    for system, run in (("pipeline", _pipeline), ("seed", _seed)):
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_db_engine(f"sqlite:///{Path(tmp) / 'sql.db'}")
            create_schema(engine)
            store = Store(engine)
            stock_up(store, orders * 2)
            memory = InMemoryPipeline(store, name=system)
            for n in range(5):  # warm the statement caches
                run(memory, SqlCounter(engine), n)
            with SqlCounter(engine) as counter:
                began = time.process_time()
                ids = [run(memory, counter, n) for n in range(orders)]
                cpu = time.process_time() - began
            finished = Counter(store.status(i).value for i in ids)
            engine.dispose()
        assert finished == {OrderStatus.COMPLETED.value: orders}, finished
        per_step = {label.split(":", 1)[1]: {
            "transactions": round(counter.transactions[label] / orders, 2),
            "statements": round(counter.statements[label] / orders, 2)}
            for label in counter.statements}
        result[system] = {
            "transactionsPerOrder": round(sum(counter.transactions.values()) / orders, 2),
            "statementsPerOrder": round(sum(counter.statements.values()) / orders, 2),
            "cpuMsPerOrder": round(cpu / orders * 1000, 2), "perStep": per_step}
    return result


def lines(result: dict[str, Any]) -> list[str]:
    out = ["| system | transactions/order | statements/order | in-process CPU ms/order |",
           "|---|---|---|---|"]
    for system, name in (("pipeline", "pipeline"), ("seed", "seed-style steps")):
        r = result[system]
        out.append(f"| {name} | {r['transactionsPerOrder']} | {r['statementsPerOrder']} | "
                   f"{r['cpuMsPerOrder']} |")
    out += ["", "| system | step | transactions/order | statements/order |", "|---|---|---|---|"]
    for system in ("pipeline", "seed"):
        for step, r in result[system]["perStep"].items():
            out.append(f"| {system} | {step} | {r['transactions']} | {r['statements']} |")
    return out


if __name__ == "__main__":
    print("\n".join(lines(scenario())))
