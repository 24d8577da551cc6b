"""The pipeline against the seed-style consumers, from alternating pairs at one load.

Issue #16's headline target is a ratio: the pipeline's burst throughput at least
1.5x the seed-style consumers'. One pair cannot judge it on this shared box: the
same configuration ran at 35.5 to 47.4 orders/s in consecutive bursts on
2026-12-07, while the two systems differ by far less. Here the two run back to back
`rounds` times, alternating which goes first, and each ratio is judged on its
median across pairs, with every pair's figures shown beside it.
"""

from __future__ import annotations

import functools
import os
import statistics
from pathlib import Path
from typing import Any

from bench import orders, seedstyle
from bench.harness import alternating_pairs
from bench.workload import Load

PIPELINE = "flower-off"
TARGET = 1.5  # issue #16: burst throughput >= 1.5x the seed-style consumers'
CPUS = len(os.sched_getaffinity(0))


def section(work_dir: Path, load: Load, rounds: int) -> dict[str, Any] | None:
    pairs = alternating_pairs(
        {"pipeline": functools.partial(orders.scenario, work_dir, PIPELINE, load),
         "seed": functools.partial(seedstyle.scenario, work_dir, load)}, rounds,
        f"versus {load.label}")
    if not pairs:
        return None
    row = summary(load.label, pairs)
    print(f"  versus {load.label}: throughput x{row['throughputRatio']:.2f} "
          f"({row['throughputRatioMin']:.2f}-{row['throughputRatioMax']:.2f}), all CPU "
          f"x{row['allCpuRatio']:.2f}, worker CPU x{row['workerCpuRatio']:.2f}", flush=True)
    return row


def _busy(run: dict[str, Any]) -> float:
    """Share of the box's CPUs the whole system used while it ran."""
    return float(run["ordersPerSecond"] * run["allCpuMsPerOrder"]) / 1000 / CPUS


def summary(label: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    def ratios(key: str) -> list[float]:
        return [mine[key] / max(seed[key], 1e-9) for mine, seed in pairs]

    rate, all_cpu, worker = (ratios("ordersPerSecond"), ratios("allCpuMsPerOrder"),
                             ratios("workerCpuMsPerOrder"))
    throughput = statistics.median(rate)
    return {
        "load": label, "pairs": len(pairs),
        "throughputRatio": throughput,
        "throughputRatioMin": min(rate), "throughputRatioMax": max(rate),
        "throughputRatios": [round(r, 3) for r in rate],
        "allCpuRatio": statistics.median(all_cpu),
        "workerCpuRatio": statistics.median(worker),
        "runs": [{"pipeline": _figures(mine), "seed": _figures(seed)} for mine, seed in pairs],
        "met": throughput >= TARGET,
    }


def _figures(run: dict[str, Any]) -> dict[str, float]:
    return {"ordersPerSecond": run["ordersPerSecond"],
            "workerCpuMsPerOrder": run["workerCpuMsPerOrder"],
            "allCpuMsPerOrder": run["allCpuMsPerOrder"], "cpusBusy": round(_busy(run), 3)}


def lines(row: dict[str, Any], rounds: int) -> list[str]:
    out = [
        f"{rounds} pairs at {row['load']}, alternating which runs first: the pipeline as the "
        "Procfile runs it (Flower off) and the seed-style boto3 consumers. Ratios are "
        "pipeline / seed-style, judged on the median pair; CPUs busy: orders/s x all CPU "
        f"per order over the box's {CPUS} CPUs.", "",
        "| pair | pipeline orders/s | seed-style orders/s | throughput ratio | pipeline "
        "all CPU ms/order | seed-style all CPU ms/order | pipeline CPUs busy | seed-style "
        "CPUs busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, (pair, ratio) in enumerate(zip(row["runs"], row["throughputRatios"],
                                          strict=True), 1):
        mine, seed = pair["pipeline"], pair["seed"]
        out.append(f"| {n} | {mine['ordersPerSecond']} | {seed['ordersPerSecond']} | "
                   f"{ratio:.2f} | "
                   f"{mine['allCpuMsPerOrder']} | {seed['allCpuMsPerOrder']} | "
                   f"{mine['cpusBusy']:.0%} | {seed['cpusBusy']:.0%} |")
    out += ["", f"Median: throughput x{row['throughputRatio']:.2f} (pairs "
            f"{row['throughputRatioMin']:.2f}-{row['throughputRatioMax']:.2f}), all CPU per "
            f"order x{row['allCpuRatio']:.2f}, worker CPU per order "
            f"x{row['workerCpuRatio']:.2f}. Target >= {TARGET}x: "
            f"{'met' if row['met'] else 'NOT met'}."]
    return out
