"""Celery configuration, derived from the settings and the topology table.

Tuning, measured on this machine with Celery 5.7 / kombu 5.7 (see
shared/notes/celery-sqs-facts.md):
* kombu's default polling_interval=1 with a prefetch window of <= 10 stalled
  (0 of 200 chains in 60 s); 0.01 with long polling picks up work in ~50 ms at
  <= 0.2 idle requests/s per worker.
* acks_late costs nothing measurable and is what lets SQS redeliver a step
  whose worker died; a failed step is *not* acked, so poison messages reach
  the DLQ through the redrive policy.
* JSON only: a pickle body from a queue would be code execution.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.entity import Exchange, Queue

from config.settings import AWS_USER_AGENT, STEP_KILL_GRACE_S, Settings
from config.topology import EVENT_EXCHANGE, EVENT_QUEUE_PREFIX, QUEUES, TASK_QUEUE, Task

# SQS system attributes every task can read from its request (sequence number
# for FIFO audit trails, receive count for attempts).
MESSAGE_SYSTEM_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
]


def broker_url(settings: Settings) -> str:
    if settings.sqs_endpoint_url is None:
        return "sqs://"  # real AWS: boto3's credential chain
    parts = urlsplit(settings.sqs_endpoint_url)
    creds = settings.credentials()
    return (
        f"sqs://{creds['aws_access_key_id']}:{creds['aws_secret_access_key']}"
        f"@{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}//"
    )


# Read by pipeline.sqs.transport: send and batch-delete by hand (pipeline.sqs.signed).
SIGNED_CALLS_OPTION = "pipeline_signed_calls"


def task_queues() -> list[Queue]:
    # One direct exchange per queue, as kombu's SQS transport expects.
    return [Queue(spec.name, Exchange(spec.name), routing_key=spec.name) for spec in QUEUES]


def celery_config(settings: Settings) -> dict[str, Any]:
    endpoint = settings.sqs_endpoint_url
    transport_options: dict[str, Any] = {
        "region": settings.aws_region,
        "is_secure": endpoint is None or endpoint.startswith("https"),
        "queue_name_prefix": settings.queue_prefix,
        "wait_time_seconds": settings.wait_time_seconds,
        "polling_interval": settings.polling_interval,
        # Events and remote control fan out through SNS (pipeline.sqs.broadcast).
        "supports_fanout": True,
        "fanout_exchanges": [EVENT_EXCHANGE],
        "event_queue_prefix": EVENT_QUEUE_PREFIX,
        SIGNED_CALLS_OPTION: settings.sqs_signed_calls,
        "fetch_message_attributes": {"MessageSystemAttributeNames": MESSAGE_SYSTEM_ATTRIBUTES},
        "client-config": {
            "connect_timeout": settings.connect_timeout_s,
            # must outlast a long poll
            "read_timeout": settings.wait_time_seconds + 10,
            # 3 retries; given as total attempts, which botocore takes as it is (it
            # rewrites a `max_attempts` in place, in this shared dict).
            "retries": {"total_max_attempts": 4, "mode": "standard"},
            "user_agent": AWS_USER_AGENT,
        },
    }
    return {
        "broker_url": broker_url(settings),
        # kombu's SQS transport plus a refusal of FIFO publishes without a group.
        "broker_transport": "pipeline.sqs.transport:Transport",
        # Garbage on a queue is dead-lettered with a reason (pipeline.worker.consumer).
        "worker_consumer": "pipeline.worker.consumer:Consumer",
        "broker_transport_options": transport_options,
        "broker_connection_timeout": settings.connect_timeout_s,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": 10,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # No result backend: steps record outcomes in the order store and the
        # fan-in is done there, so nothing waits on AsyncResult.
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_acks_on_failure": False,
        "task_acks_on_timeout": False,
        "task_reject_on_worker_lost": True,
        # A wedged step must not hold its pool slot (and, through the visibility
        # keeper, its message) for good: soft limit -> retried (tasks.base); the hard
        # limit kills a prefork process and the kill is retried or given up like any
        # failure (tasks.base.StepRequest, which also ignores a sender's stamped limits).
        "task_soft_time_limit": settings.step_time_limit_s,
        "task_time_limit": settings.step_time_limit_s + STEP_KILL_GRACE_S,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "task_queues": task_queues(),
        "task_default_queue": "orders",
        "task_default_exchange": "orders",
        "task_default_routing_key": "orders",
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUE.items()},
        "task_create_missing_queues": False,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        # Events and remote control over SNS fanout, batched (pipeline.monitoring.events);
        # task-sent would be a publish per send from every producer: Flower does not need it.
        "worker_send_task_events": settings.events,
        "task_send_sent_event": False,
        "worker_enable_remote_control": settings.events,
        "event_exchange": EVENT_EXCHANGE,
        "event_queue_prefix": EVENT_QUEUE_PREFIX,
        "pipeline_event_flush_s": settings.event_flush_s,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_disable_rate_limits": True,
        "worker_deduplicate_successful_tasks": False,
        # Celery beat: the reconciler sweep (tasks.maintenance). In memory: a
        # restarted beat simply sweeps at once, which the lease makes harmless.
        "beat_scheduler": "celery.beat:Scheduler",
        "beat_schedule": {
            "reconcile": {
                "task": Task.RECONCILE.value,
                "schedule": settings.reconcile_interval_s,
                "options": {"queue": TASK_QUEUE[Task.RECONCILE],
                            "expires": settings.reconcile_interval_s},
            },
        },
        "enable_utc": True,
        "timezone": "UTC",
    }
