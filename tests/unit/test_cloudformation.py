"""`pipeline topology --cloudformation`: cfn-lint finds nothing (informational rules
included), and the template says what provision, the alarms and the IAM policies say."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from config.settings import Settings
from config.topology import QUEUES, TOPICS
from pipeline.dev.stack import resolve
from pipeline.monitoring.alarms import alarm_specs
from pipeline.ops.cloudformation import logical_id, template
from pipeline.ops.iam import policy, roles

SETTINGS = Settings(database_url="sqlite:///unused.db", queue_prefix="dev-",
                    visibility_cap_s=10)
ACCOUNT = "123456789012"
NAMES = {"Prefix": "prod-", "AWS::Region": "eu-west-1", "AWS::AccountId": ACCOUNT,
         "AWS::Partition": "aws"}
TEMPLATE = template(SETTINGS)


def of_type(kind: str) -> dict[str, Any]:
    return {rid: r for rid, r in TEMPLATE["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_finds_nothing_not_even_informational() -> None:
    matches = lint(json.dumps(TEMPLATE), config=ManualArgs(
        regions=["us-east-1", "eu-west-1"], include_checks=["I"]))
    assert [f"{m.rule.id} {m.message}" for m in matches] == []


def test_every_queue_and_dlq_with_the_topology_attributes_and_production_visibility() -> None:
    queues = of_type("AWS::SQS::Queue")
    assert len(queues) == 2 * len(QUEUES)
    for spec in QUEUES:
        work = queues[logical_id(spec.name, "Queue")]["Properties"]
        dlq = queues[logical_id(spec.dlq_name, "Queue")]["Properties"]
        assert resolve(work["QueueName"], NAMES) == "prod-" + spec.name
        # the settings' test cap never leaks into the stack
        assert work["VisibilityTimeout"] == spec.visibility_timeout
        assert work["MessageRetentionPeriod"] == spec.retention
        assert work["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
        assert work.get("FifoQueue", False) is spec.is_fifo
        assert dlq.get("FifoQueue", False) is spec.is_fifo
        assert work["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [logical_id(spec.dlq_name, "Queue"), "Arn"]},
            "maxReceiveCount": spec.max_receive_count}
        assert "RedrivePolicy" not in dlq
    assert {r["DeletionPolicy"] for r in queues.values()} == {"Retain"}


def test_topics_alarms_and_the_dashboard() -> None:
    topics = of_type("AWS::SNS::Topic")
    assert sorted(resolve(t["Properties"]["TopicName"], NAMES) for t in topics.values()) == \
        sorted("prod-" + topic for topic in TOPICS)
    alarms = of_type("AWS::CloudWatch::Alarm")
    prod = SETTINGS.model_copy(update={"queue_prefix": "prod-"})
    assert sorted(resolve(a["Properties"]["AlarmName"], NAMES) for a in alarms.values()) == \
        sorted(spec["AlarmName"] for spec in alarm_specs(prod, ACCOUNT))
    body = json.loads(resolve(of_type("AWS::CloudWatch::Dashboard")["Dashboard"]
                              ["Properties"]["DashboardBody"], NAMES))
    shown = {m[3] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert shown == {"prod-" + q.name for q in QUEUES} | {"prod-" + q.dlq_name for q in QUEUES}


@pytest.mark.parametrize("role", roles())
def test_each_managed_policy_is_the_roles_iam_policy(role: str) -> None:
    # parliament lints exactly these documents (tests/unit/test_iam.py).
    managed = TEMPLATE["Resources"][logical_id(role, "Policy")]["Properties"]
    prod = SETTINGS.model_copy(update={"queue_prefix": "prod-", "aws_region": "eu-west-1"})
    assert resolve(managed["PolicyDocument"], NAMES) == policy(prod, role, ACCOUNT)


def test_the_cli_prints_the_template() -> None:
    from click.testing import CliRunner

    from pipeline.cli import main

    done = CliRunner().invoke(main, ["topology", "--cloudformation"],
                              env={"PIPELINE_QUEUE_PREFIX": "dev-"})
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["Resources"].keys() == TEMPLATE["Resources"].keys()
