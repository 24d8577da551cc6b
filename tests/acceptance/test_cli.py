"""The CLI as a user drives it, against the running pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dev.demo import sample_order
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.acceptance
ROOT = Path(__file__).resolve().parents[2]



def test_invalid_json_is_refused_with_the_line_and_nothing_is_enqueued(
        pipeline: Pipeline) -> None:
    before = pipeline.rt.store.count_by_status()
    good = json.dumps(sample_order("single", 1))
    result = pipeline.cli("submit", "-", stdin=good + "\n{not json\n")
    assert result.returncode == 1
    assert "line 2: invalid JSON" in result.stderr
    assert pipeline.rt.store.count_by_status() == before


def test_a_schema_error_names_the_order_and_field(pipeline: Pipeline) -> None:
    document = sample_order("single", 1)
    document["items"][0]["quantity"] = -1
    result = pipeline.cli("submit", "-", stdin=json.dumps(document))
    assert result.returncode == 1
    assert "line 1: items.0.quantity:" in result.stderr


def test_submit_then_status_shows_the_terminal_order_and_stock_history_its_sequence(
        pipeline: Pipeline) -> None:
    lines = "\n".join(json.dumps(sample_order(kind, n)) for n, kind in
                      enumerate(["single", "declined"]))
    submitted = pipeline.cli("submit", "-", stdin=lines)
    assert submitted.returncode == 0, submitted.stderr
    ids = submitted.stdout.split()
    assert len(ids) == 2

    def statuses() -> list[dict[str, object]]:
        views = [json.loads(pipeline.cli("status", i, "--json").stdout) for i in ids]
        return views if all(v["terminal"] for v in views) else []

    views = wait_until(statuses, timeout=60, message="both CLI orders to finish")
    assert [v["status"] for v in views] == ["COMPLETED", "PAYMENT_DECLINED"]
    history = json.loads(pipeline.cli("stock", "history", "SKU-BOOK", "--json").stdout)
    mine = [m for m in history if m["order_id"] == ids[0]]
    assert [m["kind"] for m in mine] == ["reserve", "ship"]
    assert mine[0]["sqs_sequence"]
    listed = json.loads(pipeline.cli("orders", "--status", "PAYMENT_DECLINED", "--json").stdout)
    assert ids[1] in {o["id"] for o in listed}


def test_stock_set_needs_a_price_for_a_new_product(pipeline: Pipeline) -> None:
    refused = pipeline.cli("stock", "set", "SKU-NEW", "5")
    assert refused.returncode == 2 and "give it a --price" in refused.stderr
    added = pipeline.cli("stock", "set", "SKU-NEW", "5", "--price", "3.50")
    assert added.returncode == 0, added.stderr
    shown = json.loads(pipeline.cli("stock", "show", "--json").stdout)
    assert {"sku": "SKU-NEW", "available": 5} .items() <= next(
        r for r in shown if r["sku"] == "SKU-NEW").items()


def test_a_bad_setting_stops_the_cli_before_any_queue_is_touched(pipeline: Pipeline) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline", "provision"], cwd=ROOT,
                            text=True, capture_output=True, timeout=60,
                            env={**os.environ, **pipeline.env,
                                 "PIPELINE_QUEUE_PREFIX": "no spaces allowed"})
    assert result.returncode == 2
    assert "PIPELINE_QUEUE_PREFIX:" in result.stderr and "Traceback" not in result.stderr
