"""Tables and the chart of `make bench`, from the scenario results of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ceiling_lines", "chart", "orders_lines", "ratio_lines"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def orders_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| system | load | done | orders/s | p50 ms | p95 ms | p99 ms | SQS req/order | "
        "SNS req/order | $/M orders | worker CPU ms/order | of it relay | emulator CPU "
        "ms/order | database CPU ms/order | load CPU ms/order | all CPU ms/order | "
        "producer lag s | redeliveries |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        req = r["requestsPerOrder"]
        done = f"{r['completed']}/{r['orders']}" + (
            f" when the {r.get('drainLimitSeconds', 60):g} s wait ran out" if r["stalled"] else "")
        lines.append(
            f"| {r['system']} | {r['load']} | {done} | {r['ordersPerSecond']} | "
            f"{_ms(r['latency']['p50'])} | {_ms(r['latency']['p95'])} | "
            f"{_ms(r['latency']['p99'])} | {req['sqs']} | {req['sns']} | "
            f"{req['usdPerMillionOrders']} | {r['workerCpuMsPerOrder']} | "
            f"{r['cpuMsPerOrder'].get('relay', '-')} | "
            f"{r['cpuMsPerOrder'].get('emulator', '-')} | "
            f"{r['cpuMsPerOrder'].get('database', '-')} | "
            f"{r['cpuMsPerOrder'].get('load', '-')} | {r.get('allCpuMsPerOrder', '-')} | "
            f"{r.get('producerLagSeconds', '-')} | {r.get('redeliveries', '-')} |")
    return lines


def step_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per-step latency (p50/p95/p99 ms) of each system at its highest rate."""
    lines = ["| system | load | step | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for r in rows:
        for step, cuts in r["stepLatency"].items():
            lines.append(f"| {r['system']} | {r['load']} | {step} | {_ms(cuts['p50'])} | "
                         f"{_ms(cuts['p95'])} | {_ms(cuts['p99'])} |")
    return lines


def request_lines(rows: list[dict[str, Any]]) -> list[str]:
    actions = sorted({a for r in rows for a in r["requestsPerOrder"]["byAction"]})
    lines = ["| system | load | " + " | ".join(actions) + " |",
             "|---|---|" + "---|" * len(actions)]
    for r in rows:
        by = r["requestsPerOrder"]["byAction"]
        lines.append(f"| {r['system']} | {r['load']} | " +
                     " | ".join(str(by.get(a, "")) for a in actions) + " |")
    return lines


def ratio_lines(pairs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[str]:
    """Pair by pair, within this run: throughput, p95 and requests, a / b."""
    lines = ["| comparison | load | orders/s a/b | p95 a/b | SQS req/order a/b | "
             "worker CPU/order a/b | all CPU/order a/b |", "|---|---|---|---|---|---|---|"]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "-"

    for label, a, b in pairs:
        lines.append(
            f"| {label} | {a['load']} | {ratio(a['ordersPerSecond'], b['ordersPerSecond'])} | "
            f"{ratio(a['latency']['p95'], b['latency']['p95'])} | "
            f"{ratio(a['requestsPerOrder']['sqs'], b['requestsPerOrder']['sqs'])} | "
            f"{ratio(a['workerCpuMsPerOrder'], b['workerCpuMsPerOrder'])} | "
            f"{ratio(a.get('allCpuMsPerOrder'), b.get('allCpuMsPerOrder'))} |")
    return lines


def ceiling_lines(result: dict[str, Any], messages_per_order: float) -> list[str]:
    per_order = result["receiveDeletePerSecond"] / messages_per_order
    return [
        "| send (batches of 10) msgs/s | receive 10 + delete batch msgs/s | "
        "emulator CPU ms/msg | orders/s bound |",
        "|---|---|---|---|",
        f"| {result['sendPerSecond']} | {result['receiveDeletePerSecond']} | "
        f"{result['emulatorCpuMsPerMessage']} | {per_order:.0f} |",
    ]


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput against p95 latency, one line per system, one point per load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for system in dict.fromkeys(r["system"] for r in rows):
        points = sorted((r["ordersPerSecond"], r["latency"]["p95"]) for r in rows
                        if r["system"] == system and r["latency"]["p95"] is not None
                        and r["rate"] is not None)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system)
        bursts = [(r["ordersPerSecond"], r["latency"]["p95"]) for r in rows
                  if r["system"] == system and r["rate"] is None and r["latency"]["p95"]]
        for x, y in bursts:
            ax.scatter([x], [y], marker="x", color=ax.lines[-1].get_color() if points
                       else None)
    ax.set_xlabel("orders/s completed")
    ax.set_ylabel("p95 submit → terminal (s, log)")
    ax.set_yscale("log")
    ax.set_title("Throughput against latency (o: fixed arrival rates, x: burst)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
