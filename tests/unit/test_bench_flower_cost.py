"""The Flower-cost verdict: medians of alternating pairs, so one noisy pair does not
decide it either way."""

from __future__ import annotations

from typing import Any

from bench.flower_cost import summary


def run(cpu: float, rate: float, flower: float = 0.0) -> dict[str, Any]:
    return {"workerCpuMsPerOrder": cpu, "ordersPerSecond": rate,
            "cpuMsPerOrder": {"flower": flower} if flower else {}}


def test_one_noisy_pair_neither_fails_nor_passes_the_target() -> None:
    pairs = [(run(30, 50), run(36, 50, 1.5)),  # x1.20: the box moved
             (run(32, 50), run(33, 50, 1.4)),
             (run(31, 50), run(32.5, 49, 1.6))]
    row = summary("burst 600", pairs)
    assert round(row["cpuRatio"], 3) == round(32.5 / 31, 3)
    assert row["cpuRatioMax"] == 1.2
    assert row["met"]
    assert row["flowerMs"] == 1.5

    worse = [(run(30, 50), run(34, 50)), (run(30, 50), run(34, 50)), (run(30, 50), run(30, 50))]
    assert not summary("25/s", worse)["met"]  # the median pair costs 13 %


def test_throughput_lost_by_the_median_pair_fails_the_target() -> None:
    pairs = [(run(30, 50), run(30, 44)), (run(30, 50), run(30, 43)), (run(30, 50), run(30, 50))]
    row = summary("100/s", pairs)
    assert round(row["throughputLoss"], 2) == 0.12
    assert not row["met"]
