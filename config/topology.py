"""The queue topology, declared once as data.

Celery's queues and routes (config/celery.py), ``pipeline provision``, the IAM
policy and the README's queue table all derive from the tables below.

Numbers come from the seed course material (queue settings per service):
orders 300 s visibility / DLQ after 3, payments 600 s / DLQ after 5,
notifications 60 s / DLQ after 2, 14-day retention, 20 s long polling.

Two deliberate departures from the seeds, both about correctness:
* The priority lane is a *standard* queue, not FIFO. A chain is sequential by
  construction, so FIFO would buy nothing for it but cost 300 msg/s per group
  limits and group head-of-line blocking.
* VIP orders do not get their own inventory queue: stock of one product must be
  changed in one global order, so every reservation, VIP or not, goes through
  the one ``inventory.fifo`` queue, grouped by product id.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DAY",
    "QUEUES",
    "TASK_QUEUE",
    "TOPICS",
    "QueueKind",
    "QueueSpec",
    "Task",
    "lane_for",
    "markdown_table",
    "queue_by_name",
]

DAY = 86_400


class QueueKind(StrEnum):
    STANDARD = "standard"
    FIFO = "fifo"


# How long a receive waits for a message (long polling): each queue's
# ReceiveMessageWaitTimeSeconds and what every worker asks for. Not SQS's maximum of
# 20 s: a worker's warm shutdown and the receive watchdog wait up to one poll.
LONG_POLL_S = 10


@dataclass(frozen=True)
class QueueSpec:
    """One work queue and the dead-letter queue behind it."""

    name: str
    kind: QueueKind
    visibility_timeout: int  # seconds; a step must finish (or extend) within it
    max_receive_count: int  # deliveries before SQS moves a message to the DLQ
    purpose: str
    retention: int = 14 * DAY
    wait_time: int = LONG_POLL_S  # ReceiveMessageWaitTimeSeconds
    dlq_retention: int = 14 * DAY
    # CloudWatch alarms (`pipeline provision --alarms`): a backlog this deep, or a
    # message this old, for five minutes; any dead letter at all.
    alarm_depth: int = 1000
    alarm_oldest_s: int = 300
    # Attempts a step on this queue runs before it gives up (None: one below
    # max_receive_count, so it dead-letters with its reasons before SQS's redrive
    # would move the message without any).
    step_attempts: int | None = None
    # New orders enter through this queue: workers stop receiving from it while
    # PIPELINE_INTAKE_LIMIT orders are in progress (pipeline.worker.intake).
    intake: bool = False

    @property
    def attempts(self) -> int:
        return self.step_attempts or max(self.max_receive_count - 1, 1)

    @property
    def is_fifo(self) -> bool:
        return self.kind is QueueKind.FIFO

    @property
    def dlq_name(self) -> str:
        # A FIFO queue's dead-letter queue must itself be FIFO.
        if self.is_fifo:
            return self.name.removesuffix(".fifo") + "-dlq.fifo"
        return self.name + "-dlq"


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        "orders", QueueKind.STANDARD, visibility_timeout=300, max_receive_count=3,
        intake=True,
        purpose="validation: new normal orders enter here, held back in SQS while "
                "PIPELINE_INTAKE_LIMIT orders are in progress",
    ),
    QueueSpec(
        "priority", QueueKind.STANDARD, visibility_timeout=120, max_receive_count=3,
        purpose="every non-inventory step of VIP orders",
    ),
    QueueSpec(
        "payments", QueueKind.STANDARD, visibility_timeout=600, max_receive_count=5,
        purpose="authorize, void, refund (normal orders)",
    ),
    QueueSpec(
        # 10 receives, of which the step runs at most 4: a message handed back unrun
        # behind a failed one of its group (tasks.fifo) is received again, and SQS
        # counts that receive too.
        "inventory.fifo", QueueKind.FIFO, visibility_timeout=60, max_receive_count=10,
        step_attempts=4,
        purpose="per-line reserve/release; MessageGroupId = product id",
    ),
    QueueSpec(
        "shipping", QueueKind.STANDARD, visibility_timeout=300, max_receive_count=3,
        purpose="shipment creation and capture, resumed reservations and releases, "
                "the reconciler sweep (normal orders)",
    ),
    QueueSpec(
        "notifications", QueueKind.STANDARD, visibility_timeout=60, max_receive_count=2,
        purpose="customer notifications (normal orders); the step that ends an order",
    ),
)

TOPICS: tuple[str, ...] = ("order-status", "payment-events", "inventory-alerts", "system-health")



# Celery's own exchanges, which this transport carries over SNS fanout: the
# events Flower and `celery events` read, and remote control (pidbox). SNS
# topics and queues take their names with '.' as '-'.
EVENT_EXCHANGE = "celeryev"
EVENT_QUEUE_PREFIX = "celeryev"
PIDBOX_EXCHANGE = "celery.pidbox"
FANOUT_EXCHANGES = (EVENT_EXCHANGE, PIDBOX_EXCHANGE)


class Task(StrEnum):
    """Every task name, declared once (decorators, routes and the workflow read these).

    Names are part of the message format: a message already on a queue names
    its task, so a name never changes once deployed.
    """

    VALIDATE = "tasks.validation.validate_order"
    AUTHORIZE = "tasks.payment.authorize_payment"
    RESERVE = "tasks.inventory.reserve_inventory"  # legacy hop: authorize fans out now
    APPLY_LINE = "tasks.inventory.apply_line"
    RESTOCK = "tasks.inventory.restock"
    RELEASE = "tasks.inventory.release_inventory"
    SHIP = "tasks.shipping.ship_order"
    CANCEL_SHIPMENT = "tasks.shipping.cancel_shipment"
    REVERSE_PAYMENT = "tasks.payment.reverse_payment"
    NOTIFY = "tasks.notification.notify_customer"
    LANE_PROBE = "tasks.notification.lane_probe"
    RECONCILE = "tasks.maintenance.reconcile"


# Which queue runs each task for a normal order. VIP orders move every task
# that is not on a FIFO queue to the priority lane (see lane_for).
TASK_QUEUE: dict[str, str] = {
    Task.VALIDATE: "orders",
    # Only validation is behind the intake gate: whatever finishes an order in
    # progress (these two now only resume one, see pipeline.steps) never waits on it.
    Task.RESERVE: "shipping",
    Task.RELEASE: "shipping",
    Task.APPLY_LINE: "inventory.fifo",
    Task.RESTOCK: "inventory.fifo",
    Task.AUTHORIZE: "payments",
    Task.REVERSE_PAYMENT: "payments",
    Task.SHIP: "shipping",
    Task.CANCEL_SHIPMENT: "shipping",
    Task.NOTIFY: "notifications",
    Task.LANE_PROBE: "notifications",
    # Not behind the intake gate either: the sweep re-drives orders in progress.
    Task.RECONCILE: "shipping",
}


def queue_by_name(name: str) -> QueueSpec:
    for spec in QUEUES:
        if spec.name == name:
            return spec
    raise KeyError(f"no queue named {name!r} in the topology")


def lane_for(task_name: str, *, vip: bool) -> str:
    """The queue a task runs on for an order of the given priority."""
    queue = TASK_QUEUE[task_name]
    if vip and not queue_by_name(queue).is_fifo:
        return "priority"
    return queue


def markdown_table() -> str:
    """The queue table as the README shows it (a test keeps the two equal)."""
    rows = ["| queue | kind | visibility | retention | long poll | DLQ after | DLQ | purpose |",
            "|---|---|---|---|---|---|---|---|"]
    for q in QUEUES:
        rows.append(f"| `{q.name}` | {q.kind.value} | {q.visibility_timeout} s | "
                    f"{q.retention // DAY} d | {q.wait_time} s | {q.max_receive_count} receives | "
                    f"`{q.dlq_name}` ({q.dlq_retention // DAY} d) | {q.purpose} |")
    return "\n".join(rows)
