"""Settings fail fast naming the variable; Celery config and routes derive from the table."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.celery import broker_url, celery_config
from config.settings import Settings, SettingsError, load_settings
from config.topology import QUEUES, TASK_QUEUE, lane_for, queue_by_name
from pipeline.retry import backoff_seconds


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("PIPELINE_QUEUE_PREFIX", "bad prefix!", "at most 40 letters"),
    ("PIPELINE_SQS_ENDPOINT_URL", "localhost:4566", "expected http(s)://HOST[:PORT]"),
    ("PIPELINE_DATABASE_URL", "mysql://x", "expected sqlite:///PATH"),
    ("PIPELINE_PREFETCH_MULTIPLIER", "0", "greater than or equal to 1"),
    ("PIPELINE_GATEWAY_DECLINE_RATE", "1.5", "less than or equal to 1"),
    ("PIPELINE_RECONCILE_INTERVAL_S", "0", "greater than 0"),
    ("PIPELINE_RECONCILE_SLACK_S", "-5", "greater than or equal to 0"),
    ("PIPELINE_ATTENTION_RETRY_S", "-1", "greater than 0"),
    ("PIPELINE_VISIBILITY_CAP_S", "1", "greater than or equal to 5"),
    ("PIPELINE_METRICS_ADDRESS", "0.0.0.0", "PIPELINE_METRICS_PUBLIC"),
    ("PIPELINE_FLOWER_UNAUTHENTICATED_API", "maybe", "valid boolean"),
])
def test_a_bad_setting_is_reported_with_its_variable_name(
        clean_settings: pytest.MonkeyPatch, variable: str, value: str, says: str) -> None:
    clean_settings.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{variable}: " in str(caught.value) and says in str(caught.value)


def test_flower_off_loopback_without_auth_is_refused(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("PIPELINE_FLOWER_ADDRESS", "0.0.0.0")
    with pytest.raises(SettingsError, match="PIPELINE_FLOWER_BASIC_AUTH is required"):
        load_settings()


def test_every_routed_task_goes_to_a_declared_queue_and_celery_declares_them_all() -> None:
    config = celery_config(Settings(sqs_endpoint_url="http://127.0.0.1:4566"))
    declared = {q.name for q in config["task_queues"]}
    assert declared == {spec.name for spec in QUEUES}
    assert {r["queue"] for r in config["task_routes"].values()} <= declared
    assert set(config["task_routes"]) == set(TASK_QUEUE)
    assert config["accept_content"] == ["json"] and config["task_acks_late"] is True


def test_vip_moves_every_standard_queue_step_to_priority_but_keeps_fifo() -> None:
    for task, queue in TASK_QUEUE.items():
        expected = queue if queue_by_name(queue).is_fifo else "priority"
        assert lane_for(task, vip=True) == expected
        assert lane_for(task, vip=False) == queue


def test_fifo_queues_get_fifo_dead_letter_queues() -> None:
    for spec in QUEUES:
        assert spec.dlq_name.endswith(".fifo") == spec.is_fifo
        assert len("x" * 40 + spec.dlq_name) <= 80  # SQS's name limit with the longest prefix


def test_broker_url_carries_the_emulator_host_and_port_and_real_aws_uses_the_chain() -> None:
    assert broker_url(Settings(sqs_endpoint_url="http://127.0.0.1:4599")) == \
        "sqs://local:local@127.0.0.1:4599//"
    assert broker_url(Settings(sqs_endpoint_url=None)) == "sqs://"


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_at_least_one_second_and_never_above_the_cap(attempt: int, seed: int) -> None:
    delay = backoff_seconds(attempt, base=1.0, cap=30.0, rng=random.Random(seed))
    assert 1 <= delay <= 30


def test_env_example_lists_every_setting() -> None:
    """.env.example is where users look for settings: none may be missing from it."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    missing = [f"PIPELINE_{name.upper()}" for name in Settings.model_fields
               if f"PIPELINE_{name.upper()}" not in text]
    assert not missing, f"add to .env.example: {missing}"


def test_config_imports_nothing_of_the_pipeline() -> None:
    """config/ is the leaf every process reads first (issue #15): it must not import
    pipeline/, or a settings change can cycle through the code it configures."""
    import subprocess
    import sys

    probe = ("import sys, config.settings, config.topology, config.celery; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pipeline', 'tasks')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_one_long_poll_value_for_the_queues_and_the_workers(
        clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.delenv("PIPELINE_WAIT_TIME_SECONDS", raising=False)  # the suite's own
    options = celery_config(load_settings())["broker_transport_options"]
    assert {spec.wait_time for spec in QUEUES} == {options["wait_time_seconds"]}


def test_reconfigure_swaps_settings_and_gives_back_what_it_replaced(
        clean_settings: pytest.MonkeyPatch) -> None:
    from pipeline.runtime import reconfigure

    clean_settings.setenv("PIPELINE_QUEUE_PREFIX", "before-")
    clean_settings.delenv("PIPELINE_INTAKE_LIMIT", raising=False)
    assert load_settings().queue_prefix == "before-"
    saved = reconfigure({"PIPELINE_QUEUE_PREFIX": "after-", "PIPELINE_INTAKE_LIMIT": "7"})
    assert saved == {"PIPELINE_QUEUE_PREFIX": "before-", "PIPELINE_INTAKE_LIMIT": None}
    assert (load_settings().queue_prefix, load_settings().intake_limit) == ("after-", 7)
    reconfigure(saved)
    assert load_settings().queue_prefix == "before-"
    assert load_settings().intake_limit == Settings.model_fields["intake_limit"].default


class _Captured(Exception):
    pass


def _user_agent_sent(client: Any) -> str:
    """The User-Agent header of a request `client` signs, caught before it is sent."""
    def capture(request: Any, **_: Any) -> None:
        raise _Captured(request.headers["User-Agent"])

    client.meta.events.register_first("before-send.sqs", capture)
    with pytest.raises(_Captured) as caught:
        client.list_queues()
    return str(caught.value.args[0]).removeprefix("b'").removesuffix("'")


def test_every_botocore_client_sends_the_fixed_user_agent(
        clean_settings: pytest.MonkeyPatch) -> None:
    """botocore rebuilds its User-Agent per request unless one is given (13 % of a send's
    CPU); kombu's client (its client-config) and the runtime's must both give it."""
    import boto3
    from botocore.config import Config

    from config.settings import AWS_USER_AGENT
    from pipeline.runtime import Runtime

    clean_settings.setenv("PIPELINE_SQS_ENDPOINT_URL", "http://127.0.0.1:9")
    settings = load_settings()
    options = celery_config(settings)["broker_transport_options"]
    kombus = boto3.session.Session().client(  # as kombu's Channel.new_sqs_client builds it
        "sqs", region_name="us-east-1", endpoint_url=settings.sqs_endpoint_url,
        config=Config(**options["client-config"]), **settings.credentials())
    ours = Runtime(settings).aws_client("sqs")
    default = _user_agent_sent(boto3.client(
        "sqs", region_name="us-east-1", endpoint_url=settings.sqs_endpoint_url,
        **settings.credentials()))
    assert "ua/2.1" in default  # the control: botocore's per-request build
    for client in (kombus, ours):
        sent = _user_agent_sent(client)  # boto3's session may append its Botocore/x.y
        assert sent.startswith(AWS_USER_AGENT) and "ua/2.1" not in sent, sent


def test_each_process_rolls_its_own_dice_from_the_simulation_seed() -> None:
    # Seen in CI: every worker process seeded Random(7) alike, so two prefork
    # children failed their n-th inventory update together, and one message drew
    # four of the stream's early low rolls in a row.
    import json
    import os

    from pipeline.runtime import Runtime

    settings = Settings(simulation_seed=7)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as a prefork child, a fresh runtime after the fork
        try:
            os.write(write, json.dumps([Runtime(settings).rng.random() for _ in range(5)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = json.load(pipe)
    parent = [Runtime(settings).rng.random() for _ in range(5)]
    assert child != parent
    # ... and within a process the seed still fixes them
    assert [Runtime(settings).rng.random() for _ in range(5)] == parent
