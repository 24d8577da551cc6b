"""The seed-style baseline: hand-written boto3 poll / process / delete consumers.

Written the way ../shared/seeds/000_ff3a4fe974045652.txt writes its consumer
(our own code): one process per step queue, each long-polling up to ten
messages, processing them on a pool of five threads, deleting each one with
its own request and sending the next step's message with its own request.
The steps call the same services and write the same rows (timeline, ledgers,
reservations, notifications) as the pipeline, so the work is the same; what
it lacks is what the pipeline is for: per-product FIFO (lines are reserved
in one message per order), retries with backoff, dead letters with reasons,
compensation, monitoring.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bench.harness import in_subprocess, stack, wait_for
from bench.workload import Load, run_load, stock_up
from pipeline import workflow
from pipeline.dev.procfile import ProcLine, read_procfile
from pipeline.domain import OrderStatus, StockOp
from pipeline.runtime import get_runtime
from pipeline.services import inventory, notification, payment, shipping, validation
from pipeline.services.breaker import GuardedGateway
from pipeline.services.outcome import StepResult
from pipeline.services.simulators import SimulatedCarrier
from pipeline.services.validation import Rules
from pipeline.store import Store

STEPS = ("validate", "payment", "inventory", "shipping", "notification")


class Services(Protocol):
    """What a step works with: a Runtime in the consumers, a StepContext in bench.sql."""

    @property
    def store(self) -> Store: ...
    @property
    def gateway(self) -> GuardedGateway: ...
    @property
    def carrier(self) -> SimulatedCarrier: ...
    @property
    def rules(self) -> Rules: ...


def queue_name(prefix: str, step: str) -> str:
    return f"{prefix}seed-{step}"


def _reserve(rt: Services, order_id: str) -> StepResult:
    state = rt.store.order_state(order_id)
    for sku, _ in state.lines:  # every line in this one message: no per-product ordering
        update = state.update(sku, StockOp.RESERVE)
        checked = inventory.check_update(rt.store, update)
        inventory.apply_update(rt.store, update, status=checked.status, sequence=None,
                               hold_s=1800)
    decision, short = workflow.reservation_fan_in(rt.store.order_state(order_id))
    if decision is workflow.FanIn.RESERVED:
        rt.store.transition(order_id, OrderStatus.RESERVED, expected=[OrderStatus.RESERVING])
        return StepResult.go("reserved")
    rt.store.transition(order_id, OrderStatus.COMPENSATING, expected=[OrderStatus.RESERVING],
                        outcome=OrderStatus.OUT_OF_STOCK, reasons=list(short))
    return StepResult.stop(OrderStatus.OUT_OF_STOCK, short)


def work(step: str, rt: Services, order_id: str) -> StepResult:
    """One seed-style step's work (the same services the pipeline's steps call)."""
    if step == "validate":
        return validation.validate(rt.store, order_id, rt.rules)
    if step == "payment":
        return payment.authorize(rt.store, rt.gateway, order_id).result
    if step == "inventory":
        return _reserve(rt, order_id)
    if step == "shipping":
        return shipping.ship(rt.store, rt.gateway, rt.carrier, order_id)
    return notification.notify(rt.store, order_id)


def run_step(step: str, rt: Services, order_id: str) -> StepResult:
    """One step's work and its timeline row, as each consumer writes it."""
    started = datetime.now(UTC)
    result = work(step, rt, order_id)
    rt.store.record_step(order_id, step, 1, f"seed-{step}", started=started,
                         outcome="ok" if result.proceed else "stopped", detail=result.detail)
    return result


def consume(step: str) -> None:
    """One consumer process: poll, process on five threads, delete, send the next."""
    rt = get_runtime()
    sqs = rt.aws_client("sqs")
    prefix = rt.settings.queue_prefix
    url = sqs.get_queue_url(QueueName=queue_name(prefix, step))["QueueUrl"]
    following = STEPS.index(step) + 1
    next_url = (sqs.get_queue_url(QueueName=queue_name(prefix, STEPS[following]))["QueueUrl"]
                if following < len(STEPS) else None)
    running = threading.Event()
    running.set()
    signal.signal(signal.SIGTERM, lambda *_: running.clear())

    def process(message: dict[str, Any]) -> None:
        try:
            order_id = json.loads(message["Body"])["orderId"]
            result = run_step(step, rt, order_id)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if next_url is not None and result.proceed:
                sqs.send_message(QueueUrl=next_url,
                                 MessageBody=json.dumps({"orderId": order_id}))
        except Exception as error:  # as the seed does: the message comes back later
            print(f"seed-{step}: {type(error).__name__}: {error}", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=5) as pool:
        while running.is_set():
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                      WaitTimeSeconds=10)
            for future in [pool.submit(process, m) for m in got.get("Messages", [])]:
                future.result()


def run(work_dir: Path, load: Load) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9.]+", "-", f"seed-{load.label.replace('/', 'ps')}")
    with stack(work_dir, name) as s:
        rt = s.rt
        sqs = rt.aws_client("sqs")
        prefix = rt.settings.queue_prefix
        for step in STEPS:
            sqs.create_queue(QueueName=queue_name(prefix, step), Attributes={
                "VisibilityTimeout": "300", "ReceiveMessageWaitTimeSeconds": "20"})
        store = rt.store
        stock_up(store, load.orders)
        for step in STEPS:
            s.start(ProcLine(f"seed-{step}", f"{sys.executable} -m bench.seedstyle "
                             f"--consume {step}"))
        # The store writes the same outbox events for it: publishing them is the same work.
        s.start(next(line for line in read_procfile() if line.name == "relay"))
        first = sqs.get_queue_url(QueueName=queue_name(prefix, "validate"))["QueueUrl"]

        def submit(documents: list[dict[str, Any]]) -> list[str]:
            from pipeline.domain import parse_order

            orders = [parse_order(document) for document in documents]
            for order in orders:
                store.create_order(order)
            bodies = [json.dumps({"orderId": order.order_id}) for order in orders]
            if len(bodies) == 1:
                sqs.send_message(QueueUrl=first, MessageBody=bodies[0])
            for at in range(0, len(bodies) if len(bodies) > 1 else 0, 10):
                sqs.send_message_batch(QueueUrl=first, Entries=[
                    {"Id": str(n), "MessageBody": body}
                    for n, body in enumerate(bodies[at:at + 10])])
            return [order.order_id for order in orders]

        wait_for(lambda: sum(v for k, v in s.emulator.request_counts().items()
                             if k.startswith("SQS.ReceiveMessage")) >= len(STEPS),
                 60, "every seed-style consumer polling")
        return run_load(s, "seed-style boto3 consumers", load, submit)


def scenario(work_dir: Path, load: Load) -> dict[str, Any]:
    args = ["--work-dir", str(work_dir), *load.arguments()]
    return in_subprocess("bench.seedstyle", *args, timeout=600 + (load.drain_s or 0))


def main() -> None:
    parser = argparse.ArgumentParser(description="seed-style baseline; prints JSON")
    parser.add_argument("--consume", choices=STEPS, help="run one consumer process")
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, help="s to wait for the last order")
    parser.add_argument("--batch", type=int, default=1, help="orders per producer call, at most")
    parser.add_argument("--lines", type=int, help="lines per order (default: one or three)")
    parser.add_argument("--work-dir", type=Path)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume)
        return
    load = Load.from_arguments(args)
    print(json.dumps(run(args.work_dir, load)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
