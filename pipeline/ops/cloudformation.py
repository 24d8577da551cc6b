"""The topology as a CloudFormation template (`pipeline topology --cloudformation`).

Derived from the same tables as `pipeline provision`, `pipeline iam-policy` and
`provision --alarms`, by calling them: each queue's attributes are provision's
own (`_desired`), the alarms are `alarm_specs`, the managed policies are
`pipeline.ops.iam.policy`. What those functions build for one environment is built
here once with placeholders, which become `Fn::Sub` strings over the stack's
`Prefix` parameter, its region and its account. So a stack made from this
template is what `pipeline provision --check` expects (tests/unit/test_cloudformation.py
creates one on the emulator and runs the check).

Parameters: `Prefix` (the PIPELINE_QUEUE_PREFIX of the environment) and
`AlarmTopicArn` (where the alarms notify; empty: the stack's own system-health
topic). The dashboard shows depth, age of the oldest message and dead letters
per queue; the steps publish no CloudWatch metrics of their own (their rates
are Prometheus's, `pipeline metrics`), so it has none of those.
"""

from __future__ import annotations

import json
import re
from typing import Any

from config.settings import Settings
from config.topology import QUEUES, TOPICS, QueueSpec

__all__ = ["logical_id", "template"]

PREFIX = "pfxplaceholder-"  # stands for ${Prefix} while the shared builders run
REGION = "${AWS::Region}"
ACCOUNT = "${AWS::AccountId}"
PREFIX_PATTERN = "^[a-z0-9][a-z0-9-]{0,40}[-_]$"


def logical_id(name: str, suffix: str) -> str:
    """`inventory.fifo` + Queue -> InventoryFifoQueue (CloudFormation ids are alphanumeric)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name)) + suffix


def _sub(value: Any) -> Any:
    """Every string that names the prefix, region or account becomes an Fn::Sub."""
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sub(v) for v in value]
    if isinstance(value, str) and (PREFIX in value or "${AWS::" in value):
        # The partition too: the same template deploys to aws-cn and aws-us-gov.
        return {"Fn::Sub": value.replace(PREFIX, "${Prefix}")
                .replace("arn:aws:", "arn:${AWS::Partition}:")}
    return value


def _placeholder_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"queue_prefix": PREFIX, "aws_region": REGION,
                                       "visibility_cap_s": None})


def _typed(attributes: dict[str, str]) -> dict[str, Any]:
    typed: dict[str, Any] = {}
    for key, value in attributes.items():
        if key == "RedrivePolicy":
            continue
        typed[key] = (value == "true" if value in ("true", "false")
                      else int(value) if value.isdigit() else value)
    return typed


def _queue(spec: QueueSpec, *, dlq: bool) -> tuple[str, dict[str, Any]]:
    from pipeline.sqs.provision import _desired

    name = spec.dlq_name if dlq else spec.name
    target = None if dlq else logical_id(spec.dlq_name, "Queue")
    attributes = _desired(spec, dlq=dlq, dlq_arn=None if dlq else "placeholder",
                          visibility=spec.visibility_timeout)
    properties: dict[str, Any] = {"QueueName": {"Fn::Sub": "${Prefix}" + name},
                                  **_typed(attributes)}
    if target is not None:
        policy = json.loads(attributes["RedrivePolicy"])
        properties["RedrivePolicy"] = {"deadLetterTargetArn": {"Fn::GetAtt": [target, "Arn"]},
                                       "maxReceiveCount": policy["maxReceiveCount"]}
    # A queue holds orders: deleting the stack (or replacing the queue) keeps it.
    return logical_id(name, "Queue"), {"Type": "AWS::SQS::Queue", "Properties": properties,
                                       "DeletionPolicy": "Retain",
                                       "UpdateReplacePolicy": "Retain"}


def _alarms(settings: Settings) -> dict[str, Any]:
    from pipeline.monitoring.alarms import alarm_specs

    resources = {}
    for spec in alarm_specs(_placeholder_settings(settings), ACCOUNT):
        properties = _sub({k: v for k, v in spec.items()
                           if k not in ("AlarmActions", "OKActions")})
        action = {"Fn::If": ["OwnAlarmTopic", {"Ref": logical_id("system-health", "Topic")},
                             {"Ref": "AlarmTopicArn"}]}
        properties["AlarmActions"] = [action]
        properties["OKActions"] = [action]
        name = str(spec["AlarmName"]).removeprefix(PREFIX)
        resources[logical_id(name, "Alarm")] = {"Type": "AWS::CloudWatch::Alarm",
                                                "Properties": properties}
    return resources


def _dashboard() -> dict[str, Any]:
    def widget(title: str, metric: str, names: list[str], y: int, x: int) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 8, "height": 6, "properties": {
            "title": title, "region": REGION, "stat": "Maximum", "period": 60,
            "view": "timeSeries", "stacked": False,
            "metrics": [["AWS/SQS", metric, "QueueName", "${Prefix}" + n] for n in names]}}

    work = [q.name for q in QUEUES]
    dead = [q.dlq_name for q in QUEUES]
    body = {"widgets": [
        widget("Messages waiting", "ApproximateNumberOfMessagesVisible", work, 0, 0),
        widget("Age of the oldest message (s)", "ApproximateAgeOfOldestMessage", work, 0, 8),
        widget("Dead letters", "ApproximateNumberOfMessagesVisible", dead, 0, 16),
        widget("Messages in flight", "ApproximateNumberOfMessagesNotVisible", work, 6, 0),
        widget("Sent per minute", "NumberOfMessagesSent", work, 6, 8),
        widget("Deleted (done) per minute", "NumberOfMessagesDeleted", work, 6, 16),
    ]}
    return {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
        "DashboardName": {"Fn::Sub": "${Prefix}order-pipeline"},
        "DashboardBody": {"Fn::Sub": json.dumps(body, separators=(",", ":"))}}}


def _policies(settings: Settings) -> dict[str, Any]:
    from pipeline.ops.iam import policy, roles

    placeholder = _placeholder_settings(settings)
    resources = {}
    for role in roles():
        resources[logical_id(role, "Policy")] = {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {
                "ManagedPolicyName": {"Fn::Sub": "${Prefix}order-pipeline-" + role},
                "Description": f"order pipeline: least privilege of the {role} processes "
                               "(pipeline iam-policy)",
                "PolicyDocument": _sub(policy(placeholder, role, ACCOUNT)),
            }}
    return resources


def template(settings: Settings) -> dict[str, Any]:
    """The whole stack: queues, DLQs, topics, alarms, a dashboard, managed policies."""
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for spec in QUEUES:
        for dlq in (True, False):
            rid, resource = _queue(spec, dlq=dlq)
            resources[rid] = resource
        outputs[logical_id(spec.name, "QueueUrl")] = {
            "Value": {"Ref": logical_id(spec.name, "Queue")}}
    for topic in TOPICS:
        rid = logical_id(topic, "Topic")
        resources[rid] = {"Type": "AWS::SNS::Topic",
                          "Properties": {"TopicName": {"Fn::Sub": "${Prefix}" + topic}}}
        outputs[rid + "Arn"] = {"Value": {"Ref": rid}}
    resources.update(_alarms(settings))
    resources["Dashboard"] = _dashboard()
    policies = _policies(settings)
    resources.update(policies)
    for rid in policies:
        outputs[rid + "Arn"] = {"Value": {"Ref": rid}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Order pipeline on Celery + SQS: work queues and DLQs, SNS topics, "
                       "CloudWatch alarms and dashboard, IAM managed policies per role. "
                       "Generated by `pipeline topology --cloudformation`; do not edit.",
        "Parameters": {
            "Prefix": {"Type": "String", "Default": "prod-", "AllowedPattern": PREFIX_PATTERN,
                       "Description": "PIPELINE_QUEUE_PREFIX: prepended to every queue, "
                                      "topic, alarm and policy name; ends in - or _"},
            "AlarmTopicArn": {"Type": "String", "Default": "",
                              "Description": "SNS topic the alarms notify; empty: this "
                                             "stack's system-health topic"},
        },
        "Conditions": {"OwnAlarmTopic": {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}},
        "Resources": resources,
        "Outputs": outputs,
    }
