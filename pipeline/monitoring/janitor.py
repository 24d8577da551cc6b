"""Remove what monitoring left behind: transient queues whose lease ran out, and
SNS subscriptions whose queue is gone.

Runs when a worker starts, every lease period in any process that owns a
transient queue, and as `pipeline janitor`. Idempotent: two janitors at once
delete the same things once (the second gets "does not exist" and moves on).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from config.topology import EVENT_QUEUE_PREFIX, FANOUT_EXCHANGES
from pipeline.sqs.sns import topic_arns
from pipeline.sqs.transient import Lease, transient_kind

__all__ = ["JanitorReport", "fanout_topics", "sweep", "sweep_with_settings"]

log = logging.getLogger("pipeline.janitor")
MISSING = ("NonExistentQueue", "QueueDoesNotExist", "NotFound")


@dataclass
class JanitorReport:
    queues_kept: int = 0
    queues_deleted: list[str] = field(default_factory=list)
    subscriptions_removed: list[str] = field(default_factory=list)


def fanout_topics(prefix: str, exchanges: list[str]) -> list[str]:
    """SNS topic names kombu makes for fanout exchanges ('.' becomes '-')."""
    return [prefix + exchange.replace(".", "-") for exchange in exchanges]


def _missing(error: ClientError) -> bool:
    return any(code in str(error) for code in MISSING)


def sweep(sqs: Any, sns: Any, *, prefix: str, lease_s: float, topics: list[str],
          event_prefix: str = EVENT_QUEUE_PREFIX, now: float | None = None) -> JanitorReport:
    """Delete expired transient queues under `prefix`, then dead subscriptions of `topics`."""
    now = time.time() if now is None else now
    report = JanitorReport()
    urls: list[str] = []
    for page in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix):
        urls.extend(page.get("QueueUrls", []))
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        if transient_kind(name.removeprefix(prefix), event_prefix=event_prefix) is None:
            continue
        try:
            tags = sqs.list_queue_tags(QueueUrl=url).get("Tags") or {}
            created = float(sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["CreatedTimestamp"])["Attributes"]
                ["CreatedTimestamp"])
            if not Lease.expired(tags, created, now, lease_s):
                report.queues_kept += 1
                continue
            sqs.delete_queue(QueueUrl=url)
            report.queues_deleted.append(name)
            log.info("janitor: deleted %s (lease ran out; owner %s)", name,
                     tags.get("pipeline-owner", "unknown"))
        except ClientError as error:
            if not _missing(error):
                raise
    existing = {url.rsplit("/", 1)[-1] for url in urls} - set(report.queues_deleted)
    for topic in topics:
        arn = _topic_arn(sns, topic)
        if arn is None:
            continue
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
            for sub in page.get("Subscriptions", []):
                if sub.get("Protocol") != "sqs":
                    continue
                queue = str(sub["Endpoint"]).rsplit(":", 1)[-1]
                if queue in existing:
                    continue
                try:
                    sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
                    report.subscriptions_removed.append(sub["SubscriptionArn"])
                except ClientError as error:
                    if not _missing(error):
                        raise
    return report


def sweep_with_settings(settings: Any) -> JanitorReport:
    """One sweep with clients built from the settings (worker start, `pipeline janitor`)."""
    from pipeline.runtime import Runtime

    rt = Runtime(settings)
    return sweep(rt.aws_client("sqs"), rt.aws_client("sns"), prefix=settings.queue_prefix,
                 lease_s=settings.transient_lease_s,
                 topics=fanout_topics(settings.queue_prefix, list(FANOUT_EXCHANGES)),
                 event_prefix=EVENT_QUEUE_PREFIX)


def _topic_arn(sns: Any, topic: str) -> str | None:
    return topic_arns(sns).get(topic)
