"""Transient failures of the gateway and of SQS itself lose nothing and double nothing."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.breaker_state import BreakerConfig
from pipeline.dev.demo import sample_order
from pipeline.errors import CircuitOpen, GatewayUnavailable
from pipeline.services.breaker import Breaker, GuardedGateway
from pipeline.services.simulators import Faults, SimulatedGateway
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.store import schema as t
from pipeline.store.clock import now
from pipeline.testing import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_a_lost_gateway_response_retried_with_its_key_charges_once(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    create_schema(engine)
    flaky = SimulatedGateway(engine, Faults(transient_error_rate=1.0), random.Random(0))
    outcomes = []
    for _ in range(20):  # every call fails, half of them after the effect
        try:
            flaky.authorize("ord-1:authorize", "tok_visa", Decimal("10.00"), "USD")
        except GatewayUnavailable as error:
            outcomes.append(str(error))
    healthy = SimulatedGateway(engine, Faults(), random.Random(0))
    result = healthy.authorize("ord-1:authorize", "tok_visa", Decimal("10.00"), "USD")
    assert result["approved"] is True
    assert any("after request" in o for o in outcomes), "no lost response was simulated"
    with engine.connect() as conn:
        effects = conn.execute(select(t.external_calls.c.effect).where(
            t.external_calls.c.idempotency_key == "ord-1:authorize")).scalars().all()
    assert effects.count("applied") == 1
    assert effects.count("replayed") >= 1


def sqs_unreachable(tmp_path: Path) -> dict[str, str]:
    """The environment of a process whose SQS endpoint refuses, on a fresh database."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_schema(create_db_engine(url))
    return {**os.environ, "PIPELINE_SQS_ENDPOINT_URL": "http://127.0.0.1:9",
            "PIPELINE_DATABASE_URL": url, "PIPELINE_CONNECT_TIMEOUT_S": "1"}


@pytest.mark.timeout(60)
def test_submit_with_sqs_unreachable_fails_clearly_and_keeps_the_order(tmp_path: Path) -> None:
    env = sqs_unreachable(tmp_path)
    document = sample_order("single", 1)
    result = subprocess.run([sys.executable, "-m", "pipeline", "submit", "-"], cwd=ROOT,
                            input=json.dumps(document), text=True, capture_output=True,
                            env=env, timeout=50)
    assert result.returncode == 2
    assert f"order {document['orderId']} is stored but its workflow could not be published" \
        in result.stderr
    listed = subprocess.run([sys.executable, "-m", "pipeline", "orders", "--status", "RECEIVED",
                             "--json"], cwd=ROOT, text=True, capture_output=True, env=env,
                            timeout=50)
    assert document["orderId"] in {o["id"] for o in json.loads(listed.stdout)}


@pytest.mark.timeout(60)
def test_submit_orders_with_sqs_unreachable_names_every_stored_order(tmp_path: Path) -> None:
    env = sqs_unreachable(tmp_path)
    documents = [sample_order("single", 1), sample_order("single", 2)]
    script = ("import json, sys\nfrom pipeline import submit_orders\n"
              "submit_orders(json.load(sys.stdin))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, text=True,
                            input=json.dumps(documents), capture_output=True, timeout=50)
    assert result.returncode == 1
    a, b = (d["orderId"] for d in documents)
    assert f"BrokerUnavailable: orders {a}, {b} are stored but their workflows could not " \
        "be published" in result.stderr
    store = Store(create_db_engine(env["PIPELINE_DATABASE_URL"]))
    assert [store.status(a).value, store.status(b).value] == ["RECEIVED", "RECEIVED"]


def test_the_breaker_opens_on_a_failing_gateway_and_closes_after_a_good_probe(
        tmp_path: Path) -> None:
    store = Store(create_db_engine(f"sqlite:///{tmp_path / 'breaker.db'}"))
    create_schema(store.engine)
    config = BreakerConfig(failure_threshold=3, open_s=0.5)
    failing = GuardedGateway(
        SimulatedGateway(store.engine, Faults(transient_error_rate=1.0), random.Random(0)),
        Breaker(store, "gateway", config))

    def calls_reaching_the_gateway() -> int:
        with store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.external_calls))
                       .scalar_one())

    for n in range(3):
        with pytest.raises(GatewayUnavailable):
            failing.authorize(f"o{n}:authorize", "tok_visa", Decimal("1.00"), "USD")
    reached = calls_reaching_the_gateway()
    with pytest.raises(CircuitOpen):  # refused without calling the gateway
        failing.authorize("o9:authorize", "tok_visa", Decimal("1.00"), "USD")
    assert calls_reaching_the_gateway() == reached
    assert store.breaker_row("gateway").state.value == "OPEN"

    healthy = GuardedGateway(SimulatedGateway(store.engine, Faults(), random.Random(0)),
                             Breaker(store, "gateway", config))
    wait_until(lambda: store.breaker_row("gateway").changed_at is not None
               and (now() - store.breaker_row("gateway").changed_at).total_seconds() > 0.5,
               timeout=5, message="the open period to pass")
    assert healthy.authorize("o9:authorize", "tok_visa", Decimal("1.00"), "USD")["approved"]
    assert store.breaker_row("gateway").state.value == "CLOSED"
