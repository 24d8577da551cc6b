"""CloudWatch alarms derived from the topology: backlog, stuck messages, dead letters.

For every work queue: ApproximateNumberOfMessagesVisible above its
`alarm_depth`, and ApproximateAgeOfOldestMessage above its `alarm_oldest_s`,
both for five minutes; for every DLQ: any message at all. Every alarm
notifies the `system-health` topic. `pipeline provision --alarms` creates or
updates them (PutMetricAlarm replaces an alarm of the same name).
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from config.topology import QUEUES

__all__ = ["alarm_specs", "put_alarms"]


def _alarm(settings: Settings, name: str, queue: str, metric: str, threshold: float,
           periods: int, description: str, topic_arn: str) -> dict[str, Any]:
    return {
        "AlarmName": f"{settings.queue_prefix}{name}",
        "AlarmDescription": description,
        "Namespace": "AWS/SQS", "MetricName": metric,
        "Dimensions": [{"Name": "QueueName", "Value": settings.queue_prefix + queue}],
        "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": periods,
        "DatapointsToAlarm": periods, "Threshold": float(threshold),
        "ComparisonOperator": "GreaterThanThreshold",
        # No data means an idle queue, not a broken one.
        "TreatMissingData": "notBreaching",
        "AlarmActions": [topic_arn], "OKActions": [topic_arn],
    }


def alarm_specs(settings: Settings, account_id: str) -> list[dict[str, Any]]:
    topic = (f"arn:aws:sns:{settings.aws_region}:{account_id}:"
             f"{settings.queue_prefix}system-health")
    specs = []
    for q in QUEUES:
        specs.append(_alarm(
            settings, f"{q.name.removesuffix('.fifo')}-backlog", q.name,
            "ApproximateNumberOfMessagesVisible", q.alarm_depth, 5,
            f"{q.name}: more than {q.alarm_depth} messages waiting for 5 minutes", topic))
        specs.append(_alarm(
            settings, f"{q.name.removesuffix('.fifo')}-oldest", q.name,
            "ApproximateAgeOfOldestMessage", q.alarm_oldest_s, 5,
            f"{q.name}: a message older than {q.alarm_oldest_s}s for 5 minutes", topic))
        specs.append(_alarm(
            settings, f"{q.dlq_name.removesuffix('.fifo')}-not-empty", q.dlq_name,
            "ApproximateNumberOfMessagesVisible", 0, 1,
            f"{q.dlq_name}: a message was dead-lettered (see `pipeline dlq show`)", topic))
    return specs


def put_alarms(settings: Settings, cloudwatch: Any, account_id: str) -> list[str]:
    """Create or update every alarm; returns their names."""
    names = []
    for spec in alarm_specs(settings, account_id):
        cloudwatch.put_metric_alarm(**spec)
        names.append(spec["AlarmName"])
    return names
