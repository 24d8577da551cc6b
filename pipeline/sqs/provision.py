"""Create or reconcile every queue, DLQ, redrive policy and topic from the topology.

Idempotent: a second run changes nothing. With check=True nothing is changed
and the differences are reported. An immutable attribute that differs (FIFO
vs standard) is a conflict, reported and never "fixed" by recreating a queue
that may hold orders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from config.settings import Settings
from config.topology import QUEUES, TOPICS, QueueSpec
from pipeline.errors import BrokerUnavailable, ProvisioningError
from pipeline.sqs.sns import topic_arns

IMMUTABLE = ("FifoQueue",)


@dataclass
class ProvisionReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _desired(spec: QueueSpec, *, dlq: bool, dlq_arn: str | None,
             visibility: int) -> dict[str, str]:
    attributes = {
        "VisibilityTimeout": str(visibility),
        "MessageRetentionPeriod": str(spec.dlq_retention if dlq else spec.retention),
        "ReceiveMessageWaitTimeSeconds": str(spec.wait_time),
        "SqsManagedSseEnabled": "true",
    }
    if spec.is_fifo:
        attributes["FifoQueue"] = "true"
        attributes["ContentBasedDeduplication"] = "false"  # we send explicit dedup ids
    if dlq_arn is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count})
    return attributes


def _same(name: str, want: str, have: str | None) -> bool:
    if have is None:
        return name == "ContentBasedDeduplication" and want == "false"
    if name == "RedrivePolicy":
        a, b = json.loads(want), json.loads(have)
        return bool(a["deadLetterTargetArn"] == b.get("deadLetterTargetArn")
                    and int(a["maxReceiveCount"]) == int(b.get("maxReceiveCount", -1)))
    return want.lower() == have.lower()


def _queue_url(sqs: Any, name: str) -> str | None:
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as error:
        if "NonExistentQueue" in error.response["Error"]["Code"]:
            return None
        raise


def _reconcile(sqs: Any, name: str, desired: dict[str, str], check: bool,
               report: ProvisionReport) -> str | None:
    """Make one queue match; returns its ARN (None when checking a missing queue)."""
    url = _queue_url(sqs, name)
    if url is None:
        if check:
            report.drift.append(f"{name}: missing")
            return None
        url = sqs.create_queue(QueueName=name, Attributes=desired)["QueueUrl"]
        report.created.append(name)
    else:
        have = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        differing = {k: v for k, v in desired.items() if not _same(k, v, have.get(k))}
        for key in IMMUTABLE:
            if key in differing or (key in have and key not in desired
                                    and have[key].lower() == "true"):
                report.conflicts.append(
                    f"{name}: {key} is {have.get(key, 'false')}, the topology wants "
                    f"{desired.get(key, 'false')} (immutable: delete or rename the queue yourself)")
                differing.pop(key, None)
        if differing:
            change = ", ".join(f"{k}: {have.get(k)!r} -> {v!r}" for k, v in differing.items())
            if check:
                report.drift.append(f"{name}: {change}")
            else:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=differing)
                report.updated.append(f"{name}: {change}")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attrs["QueueArn"])


def provision(settings: Settings, sqs: Any, sns: Any, *, check: bool = False) -> ProvisionReport:
    report = ProvisionReport()
    prefix = settings.queue_prefix
    try:
        for spec in QUEUES:
            visibility = settings.visibility(spec)
            dlq_arn = _reconcile(sqs, prefix + spec.dlq_name,
                                 _desired(spec, dlq=True, dlq_arn=None, visibility=visibility),
                                 check, report)
            if dlq_arn is None:  # checking, DLQ missing: compare the rest without it
                dlq_arn = f"arn:aws:sqs:{settings.aws_region}:?:{prefix}{spec.dlq_name}"
            _reconcile(sqs, prefix + spec.name,
                       _desired(spec, dlq=False, dlq_arn=dlq_arn, visibility=visibility),
                       check, report)
        existing = {arn.rsplit(":", 1)[1] for arn in _topic_arns(sns)}
        for topic in TOPICS:
            name = prefix + topic
            if name in existing:
                continue
            if check:
                report.drift.append(f"topic {name}: missing")
            else:
                sns.create_topic(Name=name)
                report.created.append(f"topic {name}")
    except (EndpointConnectionError, BotoCoreError) as error:
        raise BrokerUnavailable(f"cannot reach SQS/SNS at "
                                f"{settings.sqs_endpoint_url or 'AWS'}: {error}") from error
    return report


def _topic_arns(sns: Any) -> list[str]:
    return list(topic_arns(sns).values())


def require_provisioned(settings: Settings) -> None:
    """Raise ProvisioningError naming the fix when a queue of the topology is missing."""
    from pipeline.runtime import Runtime

    sqs = Runtime(settings).aws_client("sqs")
    try:
        missing = [settings.queue_prefix + spec.name for spec in QUEUES
                   if _queue_url(sqs, settings.queue_prefix + spec.name) is None]
    except (EndpointConnectionError, BotoCoreError) as error:
        raise BrokerUnavailable(f"cannot reach SQS at {settings.sqs_endpoint_url or 'AWS'}: "
                                f"{error}") from error
    if missing:
        raise ProvisioningError(f"queues missing: {', '.join(missing)}; run `pipeline provision`")


def target(settings: Settings, sts: Any) -> str:
    """What provisioning is about to change, to say before changing it."""
    if settings.sqs_endpoint_url:
        return f"the endpoint {settings.sqs_endpoint_url}"
    return (f"AWS account {sts.get_caller_identity()['Account']} "
            f"({settings.aws_region})")


def raise_on_conflicts(report: ProvisionReport) -> None:
    if report.conflicts:
        raise ProvisioningError("conflicting queues:\n  " + "\n  ".join(report.conflicts))
