"""Overload: offered load at 1x, 2x and 4x each system's measured capacity.

A shop's traffic spikes past what its workers can do; then the pipeline must
go on completing orders at its capacity rate and let the rest wait in SQS.
Each system's capacity is measured first (a burst: the rate at which it
empties a full queue), then each multiple runs open loop long enough for a
steady state (bench.window), and the backlog left when the load stops is
timed until it drains.

One producer coalesces what arrives: it lingers 50 ms after an order is due
and submits the orders due by then in one call (up to PRODUCER_BATCH:
submit_orders, and SendMessageBatch for the seed-style). On this 2-core box the
producers share the cores with the system under test, and one order at a time
cost them 4-7 ms of CPU each: at 4x they took ~0.3 cores more than at 1x from
the workers (make bench of stop 27: 0.14 -> 0.42 cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import orders, seedstyle
from bench.workload import Load

PRODUCER_BATCH = 10
NAMES = {"flower-off": "pipeline, Flower off", "intake-off": "pipeline, no intake limit",
         "seed": "seed-style boto3 consumers"}


def _scenario(work_dir: Path, system: str, load: Load) -> dict[str, Any]:
    return (seedstyle.scenario(work_dir, load) if system == "seed"
            else orders.scenario(work_dir, system, load))


def section(work_dir: Path, *, seconds: float, burst: int,
            multiples: tuple[float, ...] = (1, 2, 4),
            systems: tuple[str, ...] = ("flower-off", "intake-off", "seed"),
            ) -> list[dict[str, Any]]:
    rows = []
    for system in systems:
        capacity = _scenario(work_dir, system, Load(None, count=burst, batch=PRODUCER_BATCH)
                             )["ordersPerSecond"]
        print(f"  overload {NAMES[system]}: capacity {capacity} orders/s", flush=True)
        for multiple in multiples:
            rate = round(capacity * multiple, 1)
            backlog = rate * seconds - capacity * seconds
            load = Load(rate, seconds, drain_s=120 + 3 * max(backlog, 0) / capacity,
                        batch=PRODUCER_BATCH)
            try:
                row = _scenario(work_dir, system, load)
            except Exception as error:  # reported, the rest goes on
                print(f"  overload {system} {multiple:g}x: FAILED {error}", flush=True)
                continue
            row |= {"capacity": capacity, "multiple": multiple}
            rows.append(row)
            o = row["overload"]
            print(f"  overload {row['system']:28} {multiple:g}x ({rate}/s): goodput "
                  f"{o['goodput']}, {o['workerCpuMsPerOrder']} ms CPU/order, "
                  f"{row['redeliveries']} redeliveries, drain {o['drainSeconds']} s, load "
                  f"{o['loadCores']} cores",
                  flush=True)
    return rows


def _peak(rows: list[dict[str, Any]]) -> float:
    return float(max([rows[0]["capacity"], *(r["overload"]["goodput"] for r in rows)]))


def lines(rows: list[dict[str, Any]], seconds: float) -> list[str]:
    out = [
        f"Capacity: each system's burst throughput. Each multiple ran open loop for "
        f"{seconds:g} s; the first third is ramp, the rest the steady window (goodput: orders "
        "reaching a terminal status per second in it; CPU: every process but the emulator "
        "in it, per order completed in it). Then the backlog left at the stop drains. "
        "One producer coalesces arrivals: 50 ms after an order is due it submits it with "
        f"the others due by then in one call (at most {PRODUCER_BATCH}: submit_orders; "
        "SendMessageBatch for the seed-style), since it shares this box's cores with the "
        "system under test; latency is counted from when an order is stored.", "",
        "| system | load | offered/s (reached) | goodput/s | of peak | worker CPU ms/order "
        "| vs 1x | cores: workers / emulator / load | redeliveries | backlog at stop | drain s "
        "| drain/s (of peak) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        peak = _peak(mine)
        base = next((r["overload"]["workerCpuMsPerOrder"] for r in mine if r["multiple"] == 1),
                    None)
        for r in mine:
            o = r["overload"]
            drain = (f"{o['drainPerSecond']} ({o['drainPerSecond'] / peak:.0%})"
                     if o["drainPerSecond"] else "-")
            drained = "not drained" if o["drainSeconds"] is None else o["drainSeconds"]
            vs = f"{o['workerCpuMsPerOrder'] / base:.2f}" if base else "-"
            out.append(
                f"| {system} | {r['multiple']:g}x | {r['rate']} ({o['offeredPerSecond']}) | "
                f"{o['goodput']} | {o['goodput'] / peak:.0%} | {o['workerCpuMsPerOrder']} | "
                f"{vs} | {o['workerCores']} / {o['emulatorCores']} / {o['loadCores']} | "
                f"{r['redeliveries']} | {o['backlogAtStop']} | {drained} | {drain} |")
    out += ["", "| target (pipeline) | reached | figure |", "|---|---|---|"]
    mine = [r for r in rows if r["system"] == NAMES["flower-off"]]
    by = {r["multiple"]: r for r in mine}
    if 4 in by and 1 in by:
        peak = _peak(mine)
        g4, c1, c4 = (by[4]["overload"]["goodput"], by[1]["overload"]["workerCpuMsPerOrder"],
                      by[4]["overload"]["workerCpuMsPerOrder"])
        red = sum(r["redeliveries"] for r in mine)
        drains = [r["overload"]["drainPerSecond"] for r in mine
                  if r["overload"]["drainPerSecond"] and r["multiple"] > 1]
        out += [f"| goodput at 4x >= 90 % of peak | {'yes' if g4 >= 0.9 * peak else 'NO'} | "
                f"{g4} of {peak} ({g4 / peak:.0%}) |",
                f"| CPU per order at 4x <= 1.1x at 1x | {'yes' if c4 <= 1.1 * c1 else 'NO'} | "
                f"{c4} vs {c1} ms ({c4 / c1:.2f}x) |",
                f"| 0 redeliveries | {'yes' if red == 0 else 'NO'} | {red} |",
                f"| backlog drains at peak goodput (>= 90 %) | "
                f"{'yes' if drains and min(drains) >= 0.9 * peak else 'NO'} | "
                f"{', '.join(f'{d}/s' for d in drains) or 'no backlog'} of {peak} |"]
    return out


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Goodput against offered load, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for system in dict.fromkeys(r["system"] for r in rows):
        points = sorted((r["overload"]["offeredPerSecond"], r["overload"]["goodput"])
                        for r in rows if r["system"] == system)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system)
    ax.set_xlabel("offered orders/s (reached by the producers)")
    ax.set_ylabel("goodput: orders/s completed, steady window")
    ax.set_title("Overload: goodput against offered load (1x, 2x, 4x capacity)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
