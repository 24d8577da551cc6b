"""FIFO scenario: per-product stock updates through inventory.fifo.

A backlog of restocks, spread round-robin over 1 or 8 products, is
published first; then the inventory lane starts and drains it. The rate is
taken between the first and the last applied update (worker start-up is not
counted), and every product's applied order is checked against its SQS
sequence numbers (`Store.ordering_violations`, the same check `pipeline
audit` runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.harness import describe, in_subprocess, procfile_line, stack, wait_for
from pipeline.dev.procfile import ProcLine
from pipeline.services.inventory import StockOp, StockUpdate
from pipeline.store import schema as t
from pipeline.store.db import reading


@dataclass(frozen=True)
class Lane:
    """How the inventory lane runs: a name and its worker command lines."""

    name: str
    lines: tuple[ProcLine, ...]


def lanes() -> list[Lane]:
    """The Procfile's inventory line, with its pool swapped for each variant."""
    base = procfile_line("inventory")
    pool = base.command.split(" -P ", 1)[1].split(" -l ", 1)[0]
    variant = {
        "solo x1 (one slot)": ["solo --prefetch-multiplier 1"],
        "solo x2 processes": ["solo --prefetch-multiplier 1"] * 2,
        "threads x4, gate": ["threads -c 4 --prefetch-multiplier 4"],
        "prefork x2, gate": ["prefork -c 2 --prefetch-multiplier 8"],
    }
    result = []
    for name, pools in variant.items():
        lines = tuple(
            ProcLine(f"inventory{i}", base.command.replace(f" -P {pool} ", f" -P {p} ")
                     .replace("inventory@%h", f"inventory{i}@%h"))
            for i, p in enumerate(pools))
        result.append(Lane(name, lines))
    return result


def _applied(store: Any) -> int:
    with reading(store.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(t.stock_updates).where(
            t.stock_updates.c.applied_at.is_not(None))).scalar_one())


def run(work_dir: Path, lane: Lane, *, products: int, updates: int,
        timeout: float = 120) -> dict[str, Any]:
    tag = f"fifo-{products}p-{lane.name.split()[0]}-{len(lane.lines)}"
    with stack(work_dir, tag) as s:
        store = s.rt.store
        skus = [f"BENCH-{i:02d}" for i in range(products)]
        for sku in skus:
            store.set_stock(sku, 0, price=Decimal(1))
        backlog = [StockUpdate(f"r{n:06d}", skus[n % products], 1 + n % 3, StockOp.RESTOCK)
                   for n in range(updates)]
        store.record_published(backlog)
        s.rt.publisher.stock_updates(backlog)
        cpu_before = s.cpu()
        started = time.monotonic()
        s.start(*lane.lines)
        with contextlib.suppress(TimeoutError):  # reported with what was applied, not lost
            wait_for(lambda: _applied(store) >= updates, timeout, f"{tag}: {updates} applied")
        wall = time.monotonic() - started
        applied = _applied(store)
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in s.cpu().items()}
        with reading(store.engine) as conn:
            first, last = conn.execute(select(func.min(t.stock_updates.c.applied_at),
                                              func.max(t.stock_updates.c.applied_at))).one()
        span = max((last - first).total_seconds(), 1e-6) if first else 1e-6
        violations = store.ordering_violations()
        expected = {sku: sum(u.quantity for u in backlog if u.sku == sku) for sku in skus}
        levels = {row.sku: row.available for row in store.stock_levels()}
        return {
            "lane": lane.name, "workers": [describe(line) for line in lane.lines],
            "products": products, "updates": updates,
            "updatesPerSecond": round(max(applied - 1, 0) / span, 1),
            "applied": applied, "timedOut": applied < updates,
            "drainSeconds": round(span, 2), "wallSeconds": round(wall, 2),
            "orderingViolations": len(violations),
            "stockCorrect": levels == expected if applied >= updates else None,
            "cpuSecondsPerUpdate": {k: round(v / updates * 1000, 3) for k, v in cpu.items()},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description="one FIFO scenario; prints JSON")
    parser.add_argument("--lane", required=True, help="a lane name from lanes()")
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--updates", type=int, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args()
    lane = next(lane for lane in lanes() if lane.name == args.lane)
    print(json.dumps(run(args.work_dir, lane, products=args.products, updates=args.updates)))


def scenario(work_dir: Path, lane: Lane, *, products: int, updates: int) -> dict[str, Any]:
    return in_subprocess("bench.fifo", "--lane", lane.name, "--products", str(products),
                         "--updates", str(updates), "--work-dir", str(work_dir))


if __name__ == "__main__":
    main()
