"""While the gateway is down the breaker opens and payment steps wait (deferred,
using no attempt); once it is back every order completes, none FAILED."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import get_order, submit_order
from pipeline.dev.demo import CATALOG, sample_order
from pipeline.dev.procfile import read_procfile
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration


def restart_payments(pipeline: Pipeline, **env: str) -> None:
    lanes = pipeline.lanes
    for running in [r for r in lanes.running if r.line.name.startswith("payments")]:
        lanes.stop_one(running)
    line = next(line for line in read_procfile() if line.name == "payments")
    lanes.start_with(line, **env)


def test_an_open_breaker_defers_payments_instead_of_failing_orders(pipeline: Pipeline) -> None:
    store = pipeline.rt.store
    for sku, (price, quantity) in CATALOG.items():
        store.set_stock(sku, quantity, price=price)
    restart_payments(pipeline, PIPELINE_GATEWAY_TRANSIENT_ERROR_RATE="1.0",
                     PIPELINE_GATEWAY_BREAKER_FAILURES="3", PIPELINE_GATEWAY_BREAKER_OPEN_S="3")
    try:
        order_ids = [submit_order(sample_order("single", n)) for n in range(6)]

        def deferred() -> list[str]:
            return [o for o in order_ids
                    if any(s["outcome"] == "deferred" for s in get_order(o)["timeline"])]

        wait_until(lambda: store.breaker_row("gateway").state.value != "CLOSED", timeout=60,
                   message="the breaker to open")
        wait_until(lambda: len(deferred()) >= 3, timeout=60, message="deferred payments")
        assert not any(get_order(o)["terminal"] for o in order_ids), "an order ended early"
    finally:
        restart_payments(pipeline)

    def finished() -> list[dict[str, Any]]:
        views = [get_order(o) for o in order_ids]
        return views if all(v["terminal"] for v in views) else []

    views = wait_until(finished, timeout=120,
                       message="every order to finish once the gateway is back")
    assert {v["status"] for v in views} == {"COMPLETED"}, [v["status"] for v in views]
    assert store.breaker_row("gateway").state.value == "CLOSED"
