"""How cost grows with work: orders/s and CPU per order against the lines of an order
and against the pool processes of each prefork lane.

Each point is a burst of the pipeline (Flower off; bench.workload: published with
the system stopped, then let go). Lines: every order has 1, 3 or 10 lines, one
product each, so an order is 4 + lines messages. Processes: the Procfile's lanes
with 1, 2 or 4 processes in each prefork lane (orders, inventory, notifications;
the threads lanes as they are), on the usual one-or-three-line orders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import orders
from bench.workload import Load

__all__ = ["chart", "lines", "section"]

LINES = (1, 3, 10)
PROCESSES = (1, 2, 4)
BATCH = 10  # the burst is published in SendMessageBatch-sized calls (submit_orders)


def section(work_dir: Path, *, burst: int) -> list[dict[str, Any]]:
    runs: list[tuple[str, str, int, Load]] = [
        ("lines", "flower-off", n, Load(None, count=burst, batch=BATCH, lines=n))
        for n in LINES]
    runs += [("processes", "flower-off" if n == 2 else f"processes-{n}", n,
              Load(None, count=burst, batch=BATCH)) for n in PROCESSES]
    rows = []
    for axis, config, value, load in runs:
        try:
            row = orders.scenario(work_dir, config, load)
        except Exception as error:  # reported in the run's output, the rest goes on
            print(f"  scaling {axis}={value}: FAILED {error}", flush=True)
            continue
        row |= {"axis": axis, "value": value}
        rows.append(row)
        print(f"  scaling {axis:9} {value:>2}: {row['ordersPerSecond']:6.1f} orders/s, "
              f"{row['workerCpuMsPerOrder']} ms worker CPU/order, "
              f"{row['requestsPerOrder']['sqs']} SQS req/order", flush=True)
    return rows


def _messages(row: dict[str, Any]) -> float | None:
    """Messages per order: validate, authorize, one per line, ship, notify."""
    return 4 + row["value"] if row["axis"] == "lines" else None


def lines(rows: list[dict[str, Any]], burst: int) -> list[str]:
    out = [f"A burst of {burst} orders per point (the pipeline, Flower off), published with "
           "the system stopped and measured from when it is let go. CPU: every process of "
           "the system (lanes and relay) per order; all: with the emulator and the load "
           "generator.", "",
           "| varied | value | orders/s | worker CPU ms/order | per message | all CPU ms/order "
           "| SQS req/order | p50 s |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        messages = _messages(r)
        per_message = (f"{r['workerCpuMsPerOrder'] / messages:.2f}" if messages else "")
        what = "lines per order" if r["axis"] == "lines" else "processes per prefork lane"
        out.append(f"| {what} | {r['value']} | {r['ordersPerSecond']} | "
                   f"{r['workerCpuMsPerOrder']} | {per_message} | {r['allCpuMsPerOrder']} | "
                   f"{r['requestsPerOrder']['sqs']} | {r['latency']['p50']} |")
    return out


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Two panels: lines per order, processes per lane; orders/s and CPU per order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panels = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for ax, axis, label in ((panels[0], "lines", "lines per order"),
                            (panels[1], "processes", "processes per prefork lane")):
        points = sorted((r["value"], r["ordersPerSecond"], r["workerCpuMsPerOrder"])
                        for r in rows if r["axis"] == axis)
        if not points:
            continue
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], marker="o", color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("orders/s", color="tab:blue")
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
        cpu = ax.twinx()
        cpu.plot(xs, [p[2] for p in points], marker="s", color="tab:red")
        cpu.set_ylabel("worker CPU ms/order", color="tab:red")
        cpu.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.suptitle("How cost grows with work (burst, Flower off)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
