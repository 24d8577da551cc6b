"""The pipeline/seed-style verdict: medians of alternating pairs, every pair shown."""

from __future__ import annotations

from typing import Any

from bench import versus


def run(rate: float, all_cpu: float, worker: float | None = None) -> dict[str, Any]:
    return {"ordersPerSecond": rate, "allCpuMsPerOrder": all_cpu,
            "workerCpuMsPerOrder": worker if worker is not None else all_cpu - 6}


def test_the_median_pair_decides_not_the_luckiest() -> None:
    pairs = [(run(70, 30), run(40, 36)),  # x1.75: the seed-style's run met a busy box
             (run(45, 36), run(42, 35)),
             (run(44, 37), run(41, 34))]
    row = versus.summary("burst 600", pairs)
    assert round(row["throughputRatio"], 3) == round(44 / 41, 3)
    assert row["throughputRatioMax"] == 1.75
    assert not row["met"]
    assert round(row["allCpuRatio"], 3) == round(36 / 35, 3)


def test_met_when_the_median_pair_is_half_again_faster() -> None:
    pairs = [(run(66, 25), run(42, 35)), (run(60, 26), run(40, 35)), (run(40, 30), run(41, 35))]
    row = versus.summary("burst 600", pairs)
    assert row["throughputRatio"] == 1.5
    assert row["met"]


def test_the_report_shows_every_pair_and_the_verdict() -> None:
    row = versus.summary("burst 600", [(run(45, 36), run(42, 35)), (run(44, 37), run(41, 34))])
    text = "\n".join(versus.lines(row, 2))
    assert text.count("\n| 1 |") == 1 and text.count("\n| 2 |") == 1
    assert "| 45 | 42 | 1.07 |" in text
    assert "NOT met" in text
    busy = 45 * 36 / 1000 / versus.CPUS
    assert f"| {busy:.0%} |" in text
