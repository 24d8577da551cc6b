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


def test_pairs_alternate_which_runs_first_and_a_failed_run_drops_its_pair() -> None:
    from bench.harness import alternating_pairs

    ran: list[str] = []

    def scenario(key: str, fail_at: int | None = None) -> Any:
        def go() -> dict[str, Any]:
            ran.append(key)
            if len(ran) == fail_at:
                raise RuntimeError("the box fell over")
            return {"key": key, "n": len(ran)}
        return go

    pairs = alternating_pairs({"a": scenario("a"), "b": scenario("b", fail_at=3)}, 3, "x")
    assert ran == ["a", "b", "b", "a", "a", "b"]  # b's run 3 failed; the rounds went on
    assert [(a["n"], b["n"]) for a, b in pairs] == [(1, 2), (4, 6)]
