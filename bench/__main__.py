"""`make bench` (full) and `make bench-quick` (smoke): every scenario, side by side, one run.

Writes results/bench.md, results/bench.json and results/bench.png. Each
scenario runs in its own interpreter against its own emulator and database
(bench.harness), one after another on the same machine, so ratios are taken
pair by pair within the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    ceiling,
    fifo,
    flower_cost,
    orders,
    overload,
    profile,
    report,
    scaling,
    seedstyle,
    sql,
    versus,
)
from bench.workload import SNS_PRICE, SQS_PRICE, Load
from config.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"
BURST_BATCH = 10  # a burst is published in SendMessageBatch-sized calls, before it runs
SYSTEMS = ("flower-off", "flower-on", "tracing-on", "tracing-nosql", "stock", "threads",
           "merged", "botocore", "postgres", "seed")


def fifo_section(work_dir: Path, *, updates: int, quick: bool) -> tuple[list[str], list[Any]]:
    rows: list[dict[str, Any]] = []
    lanes = fifo.lanes()
    if quick:
        lanes = [lane for lane in lanes if lane.name.startswith(("solo x1", "prefork"))]
    for lane in lanes:
        for products in (1, 8):
            try:
                result = fifo.scenario(work_dir, lane, products=products, updates=updates)
            except Exception as error:  # reported in the run's output, the rest goes on
                print(f"  fifo {lane.name} {products}: FAILED {error}", flush=True)
                continue
            rows.append(result)
            print(f"  fifo {lane.name:22} {products} product(s): "
                  f"{result['updatesPerSecond']:7.1f} updates/s, "
                  f"{result['orderingViolations']} ordering violation(s)", flush=True)
    by = {(r["lane"], r["products"]): r for r in rows}
    baseline = by.get(("solo x1 (one slot)", 8))
    lines = [
        "## FIFO: per-product stock updates through inventory.fifo",
        "",
        f"{updates} restocks per run, round-robin over the products, published before the "
        "lane starts; rate between the first and the last applied update. "
        "Violations: updates of a product applied out of SQS sequence order.",
        "",
        "| inventory lane | products | updates/s | 8 products / 1 | vs solo x1 | violations "
        "| stock correct | worker CPU ms/update | emulator CPU ms/update |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one = by.get((r["lane"], 1))
        ratio = (f"{r['updatesPerSecond'] / one['updatesPerSecond']:.2f}x"
                 if r["products"] == 8 and one else "")
        versus = (f"{r['updatesPerSecond'] / baseline['updatesPerSecond']:.1f}x"
                  if baseline and r["products"] == 8 else "")
        cpu = r["cpuSecondsPerUpdate"]
        worker_ms = sum(v for k, v in cpu.items() if k != "emulator")
        lines.append(
            f"| {r['lane']} | {r['products']} | {r['updatesPerSecond']} | {ratio} | {versus} | "
            f"{r['orderingViolations']} | "
            f"{_stock_column(r)} | "
            f"{worker_ms:.2f} | {cpu['emulator']:.2f} |")
    return lines, rows


def _stock_column(r: dict[str, Any]) -> str:
    if r.get("timedOut"):
        return f"timed out: {r['applied']} of {r['updates']} applied"
    return "yes" if r["stockCorrect"] else "NO"


def orders_section(work_dir: Path, loads: list[Load], systems: dict[str, list[Load]]
                   ) -> list[dict[str, Any]]:
    rows = []
    for load in loads:
        for system in SYSTEMS:
            if load not in systems.get(system, []):
                continue
            try:
                result = (seedstyle.scenario(work_dir, load) if system == "seed"
                          else orders.scenario(work_dir, system, load))
            except Exception as error:  # reported in the run's output, the rest goes on
                print(f"  {system} {load.label}: FAILED {error}", flush=True)
                continue
            rows.append(result)
            print(f"  {result['system']:28} {load.label:>10}: "
                  f"{result['completed']}/{result['orders']} done, "
                  f"{result['ordersPerSecond']:6.1f} orders/s, p95 "
                  f"{result['latency']['p95']}s, {result['requestsPerOrder']['sqs']} SQS "
                  f"req/order", flush=True)
    return rows


def pairs(rows: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    by = {(r["system"], r["load"]): r for r in rows}
    names = {key: orders.CONFIGS[key].name
             for key in ("flower-off", "flower-on", "tracing-on", "tracing-nosql", "stock",
                         "threads", "merged", "botocore", "postgres")}
    names["seed"] = "seed-style boto3 consumers"
    found = []
    for load in dict.fromkeys(r["load"] for r in rows):
        for a, b in (("flower-off", "stock"), ("flower-off", "seed"),
                     ("flower-on", "flower-off"), ("tracing-on", "flower-off"),
                     ("tracing-nosql", "flower-off"), ("threads", "flower-off"),
                     ("threads", "seed"), ("flower-off", "botocore"),
                     ("botocore", "seed"), ("postgres", "flower-off"),
                     ("merged", "flower-off")):
            if (names[a], load) in by and (names[b], load) in by:
                found.append((f"{names[a]} / {names[b]}", by[(names[a], load)],
                              by[(names[b], load)]))
    return found


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Issue #16's targets, each with its figure from this run."""
    mine = {r["load"]: r for r in rows if r["system"] == orders.CONFIGS["flower-off"].name}
    on = {r["load"]: r for r in rows if r["system"] == orders.CONFIGS["flower-on"].name}
    seed = {r["load"]: r for r in rows if r["system"] == "seed-style boto3 consumers"}
    burst = next((load for load, r in mine.items() if r["rate"] is None), None)
    lines = ["| target | reached here | figure |", "|---|---|---|"]

    def goal(target: str, met: bool | None, figure: str) -> None:
        lines.append(f"| {target} | {'-' if met is None else 'yes' if met else 'NO'} | "
                     f"{figure} |")

    if burst in mine and burst in seed:
        a, b = mine[burst], seed[burst]
        cpu, seed_cpu = a["workerCpuMsPerOrder"], b["workerCpuMsPerOrder"]
        goal(f"worker CPU per order <= 30 ms and <= the seed-style's ({burst})",
             cpu <= 30 and cpu <= seed_cpu, f"{cpu} against {seed_cpu} ms "
             f"({cpu / max(seed_cpu, 1e-9):.2f}x); all processes {a['allCpuMsPerOrder']} "
             f"against {b['allCpuMsPerOrder']} ms")
        ratio = a["ordersPerSecond"] / max(b["ordersPerSecond"], 1e-9)
        goal(f"throughput >= 1.5x the seed-style ({burst})", ratio >= 1.5,
             f"{a['ordersPerSecond']} against {b['ordersPerSecond']} orders/s ({ratio:.2f}x)")
    best = max((r["ordersPerSecond"] for r in mine.values() if not r["stalled"]), default=0.0)
    goal(">= 50 orders/s on SQLite (100 the long-run goal)", best >= 50, f"best {best}")
    for load, bound, what in (("25/s", 1.0, "p95"), ("10/s", 0.1, "p50")):
        if load in mine:
            value = mine[load]["latency"][what.lower()]
            goal(f"{what} end-to-end {'<' if what == 'p95' else '<='} {bound * 1000:.0f} ms "
                 f"at {load}", value is not None and value <= bound,
                 f"{what} {_ms(value)} ms")
    if burst in mine:
        sqs = mine[burst]["requestsPerOrder"]["sqs"]
        goal(f"<= 10 SQS requests per order ({burst}, idle polls and monitoring included)",
             sqs is not None and sqs <= 10, str(sqs))
    for load, r in mine.items():
        if load in on:
            loss = 1 - on[load]["ordersPerSecond"] / max(r["ordersPerSecond"], 1e-9)
            cpu = on[load]["workerCpuMsPerOrder"] / max(r["workerCpuMsPerOrder"], 1e-9)
            # one pair moves by more than 10 % on this box: judged on alternating pairs
            goal(f"Flower on costs <= 10 % ({load}; one pair, judged in 'What Flower on "
                 "costs')", None, f"throughput -{max(loss, 0):.0%}, worker CPU x{cpu:.2f}")
    traced = {r["load"]: r for r in rows if r["system"] == orders.CONFIGS["tracing-on"].name}
    for load, t in traced.items():
        if load in mine:
            loss = 1 - t["ordersPerSecond"] / max(mine[load]["ordersPerSecond"], 1e-9)
            cpu = t["workerCpuMsPerOrder"] / max(mine[load]["workerCpuMsPerOrder"], 1e-9)
            spans = t.get("spansExported", 0) / max(t["completed"], 1)
            goal(f"tracing on: its cost ({load}; no target)", None,
                 f"throughput -{max(loss, 0):.0%}, worker CPU x{cpu:.2f}, "
                 f"{spans:.0f} spans/order")
    return lines


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def plan(quick: bool) -> tuple[list[Load], dict[str, list[Load]], int]:
    if quick:
        loads = [Load(25, 5), Load(None, count=100, batch=BURST_BATCH)]
        return loads, {"flower-off": loads, "flower-on": loads, "tracing-on": loads,
                       "tracing-nosql": loads[:1], "stock": loads[:1], "threads": loads,
                       "merged": loads, "botocore": loads, "postgres": loads,
                       "seed": loads}, 300
    rates = [Load(r, 20) for r in (10, 25, 50, 100)]
    burst = Load(None, count=600, batch=BURST_BATCH)
    loads = [*rates, burst]
    return loads, {"flower-off": loads, "flower-on": loads,
                   "tracing-on": [*rates[:2], burst], "tracing-nosql": rates[:2],
                   "stock": rates[:2], "threads": [*rates[:2], burst],
                   "merged": [*rates[:2], burst],
                   "botocore": [*rates[:2], burst], "postgres": [*rates[:2], burst],
                   "seed": loads}, 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--only", choices=("fifo", "orders", "versus", "flower", "overload",
                                           "sql", "ceiling", "profile", "scaling"),
                        action="append", help="run only these sections")
    parser.add_argument("--system", choices=SYSTEMS, action="append",
                        help="orders: run only these systems")
    parser.add_argument("--flower-rounds", type=int, default=None,
                        help="flower: off/on pairs per load (full 3, quick 1)")
    parser.add_argument("--versus-rounds", type=int, default=None,
                        help="versus: pipeline/seed-style pairs at the burst (full 5, quick 1)")
    args = parser.parse_args()
    sections = set(args.only or ("fifo", "orders", "versus", "flower", "overload", "sql",
                                 "ceiling", "profile", "scaling"))
    work_dir = args.out / "work"
    started = time.monotonic()
    loads, systems, updates = plan(args.quick)
    print(f"bench ({'quick' if args.quick else 'full'}) -> {args.out}", flush=True)
    data: dict[str, Any] = {}
    body: list[str] = []
    if "orders" in sections:
        if args.system:
            systems = {k: v for k, v in systems.items() if k in args.system}
        rows = orders_section(work_dir, loads, systems)
        data["orders"] = rows
        body += ["## Orders: this pipeline, stock Celery, and the seed-style baseline", "",
                 "Open loop at fixed arrival rates for "
                 f"{loads[0].seconds:g} s each, and a burst; happy-path orders (1 or 3 "
                 "lines). The burst is published (submit_orders, SendMessageBatch for the "
                 f"seed-style, {BURST_BATCH} orders a call) while every process of the system "
                 "is stopped, then let go: its rate and latency count from then. Latency: "
                 "order stored (or let go) -> terminal. Requests counted at the "
                 "emulator from the load's start to the last order's end (idle polls and "
                 f"monitoring included); $ at ${SQS_PRICE}/M SQS requests and ${SNS_PRICE}/M "
                 "SNS publishes. CPU: each process tree, per completed order; worker: the "
                 "system's own processes (lanes, relay, Flower when on), and the relay's "
                 "share in its own column; database: the PostgreSQL server's processes.", "",
                 *report.orders_lines(rows), "",
                 "### Ratios, pair by pair in this run", "", *report.ratio_lines(pairs(rows)),
                 "", "### Targets of issue #16", "", *goal_lines(rows), "",
                 "### Requests per order by API action", "", *report.request_lines(rows), "",
                 "### Per-step latency (step start -> end)", "", *report.step_lines(rows), ""]
        args.out.mkdir(parents=True, exist_ok=True)
        report.chart(rows, args.out / "bench.png")
        body += ["![throughput against latency](bench.png)", ""]
    if "versus" in sections:
        rounds = args.versus_rounds or (1 if args.quick else 5)
        row = versus.section(work_dir, loads[-1], rounds)
        data["versus"] = row
        if row is not None:
            body += ["## The burst against the seed-style consumers: alternating pairs", "",
                     *versus.lines(row, rounds), ""]
    if "flower" in sections:
        rounds = args.flower_rounds or (1 if args.quick else 3)
        rows = flower_cost.section(work_dir, loads, rounds)
        data["flowerCost"] = rows
        body += ["## What Flower on costs: alternating pairs", "",
                 *flower_cost.lines(rows, rounds), ""]
    if "overload" in sections:
        seconds, burst = (15.0, 150) if args.quick else (45.0, 600)
        rows = overload.section(work_dir, seconds=seconds, burst=burst)
        data["overload"] = rows
        args.out.mkdir(parents=True, exist_ok=True)
        overload.chart(rows, args.out / "overload.png")
        body += ["## Overload: 1x, 2x and 4x capacity", "", *overload.lines(rows, seconds), "",
                 "![goodput against offered load](overload.png)", ""]
    if "scaling" in sections:
        burst = 100 if args.quick else 400
        rows = scaling.section(work_dir, burst=burst)
        data["scaling"] = rows
        args.out.mkdir(parents=True, exist_ok=True)
        scaling.chart(rows, args.out / "scaling.png")
        body += ["## How cost grows with work: lines per order, processes per lane", "",
                 *scaling.lines(rows, burst), "", "![cost against work](scaling.png)", ""]
    if "sql" in sections:
        result = sql.scenario(50 if args.quick else 200)
        data["sql"] = result
        body += ["## What an order costs the database", "", sql.DESCRIPTION, "",
                 *sql.lines(result), ""]
    if "ceiling" in sections:
        result = ceiling.scenario(2000 if args.quick else 20_000)
        data["ceiling"] = result
        body += ["## Ceiling: the emulator's raw capacity (batched boto3)", "",
                 "An order of the pipeline moves ~7 messages (validate, authorize, reserve, "
                 "one per line, ship, notify); the bound divides by 7.", "",
                 *report.ceiling_lines(result, 7.0), ""]
    if "profile" in sections:
        result = profile.scenario(work_dir, "orders", 20.0, 5.0 if args.quick else 10.0)
        data["profile"] = result
        body += ["## Where the orders lane's CPU goes (py-spy, GIL-holding samples)", "",
                 f"At {result['rate']:g} orders/s for {result['seconds']:g} s; a sample counts "
                 "for the first bucket it passes through.", "",
                 "| bucket | share |", "|---|---|",
                 *[f"| {k} | {v:.0%} |" for k, v in result["buckets"].items()], ""]
    if "fifo" in sections:
        fifo_lines, fifo_rows = fifo_section(work_dir, updates=updates, quick=args.quick)
        data["fifo"] = fifo_rows
        body += [*fifo_lines, ""]
    header = [
        "# Benchmark results", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{len(os.sched_getaffinity(0))} CPU(s), Python {platform.python_version()}, mode "
        f"{'quick' if args.quick else 'full'}, {time.monotonic() - started:.0f} s. Emulator: "
        "fauxqs (in memory) on the same CPUs; database: SQLite (WAL). Figures on this shared "
        "machine vary by +-25 % between runs; ratios within one run are the signal.", "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text("\n".join(header + body) + "\n")
    (args.out / "bench.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print((args.out / "bench.md").read_text())


if __name__ == "__main__":
    main()
