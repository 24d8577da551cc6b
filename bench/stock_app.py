"""The pipeline's own workflow on stock Celery 5.7 / kombu 5.7 defaults (bench baseline).

What `make bench` compares the project's tuning against: kombu's own SQS
transport and Celery's consumer (none of pipeline.sqs / pipeline.worker.consumer),
polling_interval 1 s, prefetch multiplier 4, early ack, kombu's default
wait_time_seconds (10 s), no events. Run as ``celery -A bench.stock_app worker``.
Not for production: early ack loses a task whose worker dies.
"""

from __future__ import annotations

from pipeline.app import app
from tasks.base import OrderStep

_transport = dict(app.conf.broker_transport_options)
for tuned in ("polling_interval", "wait_time_seconds", "supports_fanout", "fanout_exchanges"):
    _transport.pop(tuned, None)

app.conf.update(
    broker_transport="sqs",
    worker_consumer="celery.worker.consumer:Consumer",
    broker_transport_options=_transport,
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    worker_send_task_events=False,
    worker_enable_remote_control=False,
)
OrderStep.acks_late = False  # the project declares acks_late on its base task

__all__ = ["app"]
