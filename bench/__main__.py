"""`make bench` (full) and `make bench-quick` (smoke): scenarios side by side, one run.

Writes results/bench.md and results/bench.json. Each scenario runs in its own
interpreter against its own emulator and database (bench.harness).
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

from bench import fifo
from config.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


def fifo_section(work_dir: Path, *, updates: int, quick: bool) -> tuple[list[str], list[Any]]:
    rows: list[dict[str, Any]] = []
    lanes = fifo.lanes()
    if quick:
        lanes = [lane for lane in lanes if lane.name.startswith(("solo x1", "prefork"))]
    for lane in lanes:
        for products in (1, 8):
            result = fifo.scenario(work_dir, lane, products=products, updates=updates)
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
            f"{r['orderingViolations']} | {'yes' if r['stockCorrect'] else 'NO'} | "
            f"{worker_ms:.2f} | {cpu['emulator']:.2f} |")
    return lines, rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    work_dir = args.out / "work"
    started = time.monotonic()
    updates = 300 if args.quick else 1000
    print(f"bench ({'quick' if args.quick else 'full'}) → {args.out}", flush=True)
    fifo_lines, fifo_rows = fifo_section(work_dir, updates=updates, quick=args.quick)
    header = [
        "# Benchmark results", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{len(os.sched_getaffinity(0))} CPU(s), Python "
        f"{platform.python_version()}, mode {'quick' if args.quick else 'full'}, "
        f"{time.monotonic() - started:.0f} s. Emulator: fauxqs (in memory) on the same "
        "CPUs; database: SQLite (WAL).", "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text("\n".join(header + fifo_lines) + "\n")
    (args.out / "bench.json").write_text(json.dumps({"fifo": fifo_rows}, indent=2) + "\n")
    print((args.out / "bench.md").read_text())


if __name__ == "__main__":
    main()
