"""`pipeline provision` against the real emulator: create, no-op, drift, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from config.settings import Settings
from config.topology import QUEUES, TOPICS
from pipeline.errors import BrokerUnavailable
from pipeline.runtime import Runtime
from pipeline.sqs.emulator import Emulator
from pipeline.sqs.provision import provision

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh(emulator: Emulator) -> tuple[Settings, Runtime]:
    settings = Settings(sqs_endpoint_url=emulator.endpoint,
                        queue_prefix=f"p{uuid.uuid4().hex[:6]}-")
    return settings, Runtime(settings)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **env}, timeout=60)


def test_provision_creates_every_queue_with_the_table_attributes(
        fresh: tuple[Settings, Runtime]) -> None:
    settings, rt = fresh
    sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
    report = provision(settings, sqs, sns)
    assert len(report.created) == 2 * len(QUEUES) + len(TOPICS)
    for spec in QUEUES:
        url = sqs.get_queue_url(QueueName=settings.queue_prefix + spec.name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attrs["VisibilityTimeout"]) == spec.visibility_timeout
        assert int(attrs["MessageRetentionPeriod"]) == spec.retention
        assert int(attrs["ReceiveMessageWaitTimeSeconds"]) == spec.wait_time
        assert attrs["SqsManagedSseEnabled"] == "true"
        assert (attrs.get("FifoQueue") == "true") == spec.is_fifo
        redrive = json.loads(attrs["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == spec.max_receive_count
        assert redrive["deadLetterTargetArn"].endswith(settings.queue_prefix + spec.dlq_name)
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"]}
    assert {settings.queue_prefix + name for name in TOPICS} <= topics


def test_a_second_provision_changes_nothing(fresh: tuple[Settings, Runtime]) -> None:
    settings, rt = fresh
    provision(settings, rt.aws_client("sqs"), rt.aws_client("sns"))
    again = provision(settings, rt.aws_client("sqs"), rt.aws_client("sns"))
    assert not again.changed and not again.drift and not again.conflicts


def test_check_reports_drift_and_exits_1_then_provision_repairs_it(
        fresh: tuple[Settings, Runtime], tmp_path: Path) -> None:
    settings, rt = fresh
    sqs = rt.aws_client("sqs")
    provision(settings, sqs, rt.aws_client("sns"))
    url = sqs.get_queue_url(QueueName=settings.queue_prefix + "payments")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "31"})
    env = {"PIPELINE_SQS_ENDPOINT_URL": str(settings.sqs_endpoint_url),
           "PIPELINE_QUEUE_PREFIX": settings.queue_prefix,
           "PIPELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    checked = cli("provision", "--check", env=env)
    assert checked.returncode == 1, checked.stderr
    assert f"{settings.queue_prefix}payments: VisibilityTimeout: '31' -> '600'" in checked.stdout
    repaired = cli("provision", env=env)
    assert repaired.returncode == 0, repaired.stderr
    # what is about to change is named before it changes
    assert (f"provisioning prefix '{settings.queue_prefix}' on the endpoint "
            f"{settings.sqs_endpoint_url}") in " ".join(repaired.stderr.split())
    assert "updated" in repaired.stdout
    assert cli("provision", "--check", env=env).returncode == 0


@pytest.mark.timeout(30)
def test_an_unreachable_endpoint_is_a_clear_error_not_a_hang() -> None:
    settings = Settings(sqs_endpoint_url="http://127.0.0.1:9", connect_timeout_s=1)
    rt = Runtime(settings)
    with pytest.raises(BrokerUnavailable, match=r"cannot reach SQS/SNS at http://127.0.0.1:9"):
        provision(settings, rt.aws_client("sqs"), rt.aws_client("sns"))




def test_a_stack_made_from_the_cloudformation_template_has_no_drift(
        fresh: tuple[Settings, Runtime]) -> None:
    from pipeline.dev.stack import create_stack
    from pipeline.ops.cloudformation import template

    settings, rt = fresh
    sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
    created = create_stack(template(settings), sqs, sns, prefix=settings.queue_prefix)
    assert len(created) == 2 * len(QUEUES) + len(TOPICS)
    report = provision(settings, sqs, sns, check=True)
    assert (report.drift, report.conflicts, report.created) == ([], [], [])


def test_provision_check_sees_a_stack_whose_queue_differs_from_the_template(
        fresh: tuple[Settings, Runtime]) -> None:
    # The drift test above can fail: one attribute changed in the template is found.
    from pipeline.dev.stack import create_stack
    from pipeline.ops.cloudformation import logical_id, template

    settings, rt = fresh
    sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
    changed = template(settings)
    changed["Resources"][logical_id("payments", "Queue")]["Properties"]["VisibilityTimeout"] = 30
    create_stack(changed, sqs, sns, prefix=settings.queue_prefix)
    report = provision(settings, sqs, sns, check=True)
    assert report.drift == [f"{settings.queue_prefix}payments: VisibilityTimeout: '30' -> '600'"]
