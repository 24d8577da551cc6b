"""`make chaos`: 2,000 orders through every fault at once, on SQLite and PostgreSQL.

Faults (pipeline.dev.chaos): a SIGKILL of a random worker process every 2 s (every
fifth one the whole worker, main process included); the emulator frozen 10 s and
restarted on its persisted state, twice; 20 % transient gateway faults; message
loss: 1 % of the messages a controller receives behind the workers' backs are
deleted, and one queue is purged once. After each chaos run, 1,000 garbage bodies
on every work queue, to the lanes that went through it. Then a fuzz phase: 10,000
generated order documents through `submit_order` and `pipeline submit`. Pass:
every order terminal within 2 minutes of the last fault, `pipeline audit` clean,
no worker killed by input, every garbage body in a DLQ with a reason. Writes
results/chaos.md and results/chaos.json.

    python -m bench.chaos [--orders N] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from config.settings import PROJECT_ROOT
from config.topology import QUEUES
from pipeline.dev.chaos import Chaos
from pipeline.dev.demo import CATALOG, KINDS, sample_order
from pipeline.ops.audit import audit
from pipeline.store import Store, create_db_engine
from pipeline.store import schema as t
from pipeline.store.db import reading
from pipeline.testing import PIPELINE_LANES, postgres_database, postgres_reachable

RESULTS = PROJECT_ROOT / "results"
POSTGRES = os.environ.get("PIPELINE_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SETTINGS = {"PIPELINE_GATEWAY_TRANSIENT_ERROR_RATE": "0.2",
            "PIPELINE_VISIBILITY_CAP_S": "20", "PIPELINE_RECONCILE_INTERVAL_S": "5",
            "PIPELINE_RECONCILE_SLACK_S": "10", "PIPELINE_ATTENTION_RETRY_S": "10"}
SETTLE_S = 120  # every order terminal within this after the last fault


@contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'chaos.db'}"
        return
    why = postgres_reachable(POSTGRES)
    if why:
        raise RuntimeError(f"PostgreSQL not reachable at {POSTGRES}: {why}")
    with postgres_database(POSTGRES) as url:
        yield url


def run_chaos(kind: str, orders: int, work: Path, garbage: int) -> dict[str, Any]:
    with database(kind, work) as url:
        chaos = Chaos(work, url, SETTINGS)
        try:
            chaos.start({sku: (price, quantity * 20) for sku, (price, quantity)
                         in CATALOG.items()}, PIPELINE_LANES)
            result = _drive(chaos, orders)
            if garbage:
                result["garbage"] = _garbage(chaos, garbage)
                result["passed"] = result["passed"] and result["garbage"]["passed"]
            return result
        finally:
            chaos.stop()


def _garbage(chaos: Chaos, per_queue: int) -> dict[str, Any]:
    """`per_queue` hostile bodies on every work queue, with the lanes that just went
    through the chaos: none may die of them, each must be in its DLQ with a reason."""
    from config.settings import Settings
    from pipeline.ops import dlq
    from pipeline.testing import hostile_bodies, queue_depth, send_to_work_queues

    settings = Settings(queue_prefix=chaos.env["PIPELINE_QUEUE_PREFIX"],
                        database_url=chaos.database_url,
                        sqs_endpoint_url=chaos.emulator.endpoint,
                        aws_access_key_id="local", aws_secret_access_key="local")
    sqs = chaos.sqs()
    for spec in QUEUES:
        dlq.purge(settings, sqs, spec.name)
    exits_before = sum("restarted after exit" in e for e in chaos.events)
    send_to_work_queues(sqs, settings.queue_prefix,
                        hostile_bodies(per_queue * len(QUEUES), seed=11), tag="garbage")
    urls = [chaos.queue_url(spec.name) for spec in QUEUES]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and any(any(queue_depth(sqs, url)) for url in urls):
        chaos.supervise()
        time.sleep(2)
    letters: dict[str, int] = {}
    without_reason = 0
    for spec in QUEUES:
        found = dlq.peek(settings, sqs, spec.name, limit=per_queue * 2)
        letters[spec.name] = len(found)
        without_reason += sum(x.reason.startswith("moved by the redrive policy")
                              for x in found)
    exits = sum("restarted after exit" in e for e in chaos.events) - exits_before
    return {"bodiesPerQueue": per_queue, "deadLettered": letters,
            "withoutReason": without_reason, "laneExits": exits,
            "passed": exits == 0 and without_reason == 0
            and all(n == per_queue for n in letters.values())}


def _drive(chaos: Chaos, orders: int) -> dict[str, Any]:
    documents = [sample_order(KINDS[n % len(KINDS)], n) for n in range(orders)]
    batches = [documents[i:i + 25] for i in range(0, orders, 25)]
    tries: list[int] = []
    kills = 0
    def produce(batch: list[dict[str, Any]]) -> None:
        tries.append(chaos.submit_until_accepted(batch))

    with ThreadPoolExecutor(4) as producers:
        futures = [producers.submit(produce, b) for b in batches]
        started = time.monotonic()
        schedule = {20.0: "freeze", 50.0: "restart", 80.0: "freeze", 110.0: "restart",
                    65.0: "purge"}
        done_faults: set[float] = set()
        while time.monotonic() - started < 140:
            chaos.supervise()
            kills += 1
            if kills % 5 == 0:
                chaos.kill_a_worker()
            else:
                chaos.kill_a_pool_process()
            # 1 % of the ~7 messages an order sends, spread over the rounds: the
            # controller receives up to 40 a round and destroys until it is on target.
            target = orders * 7 // 100 * min(1.0, (time.monotonic() - started) / 140)
            for _ in range(4):
                chaos.destroy_messages(0.25 if chaos.destroyed < target else 0.0)
            elapsed = time.monotonic() - started
            for at, fault in sorted(schedule.items()):
                if at <= elapsed and at not in done_faults:
                    done_faults.add(at)
                    if fault == "freeze":
                        chaos.freeze_emulator(10)
                    elif fault == "restart":
                        chaos.restart_emulator()
                    else:
                        chaos.purge(max((q.name for q in QUEUES), key=chaos.waiting))
            time.sleep(2)
        for future in futures:
            future.result(timeout=600)
    last_fault = time.monotonic()
    store = Store(create_db_engine(chaos.database_url))
    ids = [d["orderId"] for d in documents]
    settled_at = None
    while time.monotonic() - last_fault < SETTLE_S + 240:
        chaos.supervise()
        with reading(store.engine) as conn:
            open_orders = conn.execute(select(func.count()).select_from(t.orders).where(
                t.orders.c.terminal_at.is_(None))).scalar_one()
        if open_orders == 0:
            settled_at = time.monotonic()
            break
        time.sleep(1)
    report = audit(store)
    with reading(store.engine) as conn:
        redriven = conn.execute(select(func.count()).select_from(t.steps).where(
            t.steps.c.outcome == "reconciled")).scalar_one()
    quiet = None if settled_at is None else round(settled_at - last_fault, 1)
    return {"orders": orders, "submitted": len(ids), "faults": chaos.events,
            "kills": sum("SIGKILL" in e for e in chaos.events),
            "messagesDestroyed": chaos.destroyed, "reconcilerRedrives": int(redriven),
            "producerRetries": sum(n - 1 for n in tries),
            "secondsToQuiescenceAfterLastFault": quiet,
            "passed": report.clean and quiet is not None and quiet <= SETTLE_S,
            "ordersByStatus": report.orders_by_status, "auditViolations": report.violations[:20],
            "maxCapturesPerOrder": report.max_captures_per_order,
            "maxEffectsPerKey": report.max_charges_per_key,
            "unexpectedLaneExits": [e[:1500] for e in chaos.exits]}


def run_fuzz(documents: int, work: Path) -> dict[str, Any]:
    """Generated documents through submit_order and `pipeline submit`: each refused with
    a reason naming a field, or accepted; never a crash."""
    from bench.fuzz import fuzz_submissions

    return fuzz_submissions(documents, work)


def _fault_summary(faults: list[str]) -> dict[str, Any]:
    return {"emulatorOutages": f"{sum('frozen' in f for f in faults)} frozen 10 s, "
                               f"{sum('emulator restarted' in f for f in faults)} restarted",
            "purges": "; ".join(f for f in faults if f.startswith("purged")) or None,
            "laneRestarts": sum("restarted after exit" in f for f in faults)}


def write_report(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps(results, indent=2, default=str))
    lines = ["# make chaos", "", f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             "this machine (2 shared cores); `python -m bench.chaos`.", ""]
    lines += ["| | " + " | ".join(results["chaos"]) + " |",
              "|---|" + "---|" * len(results["chaos"])]
    rows = [("passed", "passed"), ("orders", "orders"), ("kills (SIGKILL)", "kills"),
            ("emulator outages", "emulatorOutages"), ("queue purged", "purges"),
            ("lanes restarted by the supervisor", "laneRestarts"),
            ("messages destroyed", "messagesDestroyed"),
            ("reconciler re-drives", "reconcilerRedrives"),
            ("producer retries", "producerRetries"),
            ("s to quiescence after the last fault", "secondsToQuiescenceAfterLastFault"),
            ("max captures / order", "maxCapturesPerOrder"),
            ("max effects / idempotency key", "maxEffectsPerKey"),
            ("orders by outcome", "ordersByStatus"), ("audit violations", "auditViolations"),
            ("garbage bodies after the chaos", "garbage"),
            ("lane exits not caused by a kill", "unexpectedLaneExits")]
    columns = [{**r, **_fault_summary(r.get("faults", []))}
               for r in results["chaos"].values()]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(str(c.get(key)) for c in columns) + " |")
    if "fuzz" in results:
        lines += ["", "## Fuzz", "", "```", json.dumps(results["fuzz"], indent=2), "```"]
    (RESULTS / "chaos.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--fuzz", type=int, default=10_000)
    parser.add_argument("--garbage", type=int, default=1000,
                        help="hostile bodies per work queue after the chaos")
    args = parser.parse_args()
    results: dict[str, Any] = {"chaos": {}}
    for kind in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix=f"chaos-{kind}-") as work:
            print(f"chaos on {kind} ...", file=sys.stderr, flush=True)
            results["chaos"][kind] = run_chaos(kind, args.orders, Path(work), args.garbage)
            print(json.dumps(results["chaos"][kind], default=str)[:2000], file=sys.stderr)
    if args.fuzz:
        with tempfile.TemporaryDirectory(prefix="fuzz-") as work:
            results["fuzz"] = run_fuzz(args.fuzz, Path(work))
    write_report(results)
    ok = all(r["passed"] for r in results["chaos"].values()) and results.get(
        "fuzz", {}).get("passed", True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
