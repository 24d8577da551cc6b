"""Least privilege, per role: one IAM policy for each kind of process.

Derived from the topology and the Procfile (each worker lane's `-Q` queues), so
a new queue or lane changes the policies with it. The roles:

* `worker-<lane>`: receive, delete and extend messages of its own queues and
  dead-letter them to their DLQs; send the next steps to the work queues (a
  step may continue the workflow on any lane); events and remote control
  (its mailbox, reply queues, the two fanout topics) and the janitor;
* `producer`: start orders and restocks: send to the entry queues only;
* `beat`: send the reconciler's message to its queue;
* `relay`: publish business events to the four topics;
* `flower`: its event queue and the remote-control replies;
* `operator`: `provision`, `dlq show/redrive/purge`, `monitor`/`metrics`,
  `cancel`, `janitor`: what people run, never what the lanes run.

Transient queue names are only known at run time, so they are granted by
pattern: `<prefix>celeryev-*` and `<prefix>*-celery-pidbox`. With a prefix that
ends in a separator, another environment's prefix (`dev2-` beside `dev-`) can
never match; an empty prefix, or one without a separator, is refused here.
Actions AWS authorizes only on "*" (ListQueues, ListTopics, Unsubscribe,
GetMetricData) get "*", in statements of their own.
"""

from __future__ import annotations

import shlex
from typing import Any

from config.settings import Settings
from config.topology import FANOUT_EXCHANGES, QUEUES, TASK_QUEUE, TOPICS, Task
from pipeline.errors import ConfigurationError

__all__ = ["ENTRY_QUEUES", "UNSCOPED_ACTIONS", "policy", "roles", "worker_lanes"]

FANOUT_TOPICS = tuple(exchange.replace(".", "-") for exchange in FANOUT_EXCHANGES)
ENTRY_QUEUES = ("orders", "priority", "inventory.fifo")  # validate (normal, VIP); restock
UNSCOPED_ACTIONS = frozenset({"sqs:ListQueues", "sns:ListTopics", "sns:Unsubscribe",
                              "cloudwatch:GetMetricData"})
CONSUME = ["sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
           "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
SEND = ["sqs:GetQueueUrl", "sqs:SendMessage"]
TRANSIENT = ["sqs:CreateQueue", "sqs:DeleteQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
             "sqs:SetQueueAttributes", "sqs:TagQueue", "sqs:ListQueueTags",
             "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"]


def worker_lanes() -> dict[str, tuple[str, ...]]:
    """Each Procfile worker lane and the queues it consumes (its `-Q`)."""
    from pipeline.dev.procfile import read_procfile

    lanes = {}
    for line in read_procfile():
        words = shlex.split(line.command)
        if "worker" in words and "-Q" in words:
            lanes[line.name] = tuple(words[words.index("-Q") + 1].split(","))
    return lanes


def roles() -> list[str]:
    return [f"worker-{lane}" for lane in worker_lanes()] + [
        "producer", "beat", "relay", "flower", "operator"]


class _Arns:
    def __init__(self, settings: Settings, account_id: str) -> None:
        prefix = settings.queue_prefix
        if not prefix or prefix[-1] not in "-_":
            raise ConfigurationError(
                f"PIPELINE_QUEUE_PREFIX {prefix!r}: least-privilege policies need a prefix "
                "that ends in '-' or '_' (so that no other environment's names match)")
        self.prefix = prefix
        self.sqs = f"arn:aws:sqs:{settings.aws_region}:{account_id}:{prefix}"
        self.sns = f"arn:aws:sns:{settings.aws_region}:{account_id}:{prefix}"
        self.alarm = f"arn:aws:cloudwatch:{settings.aws_region}:{account_id}:alarm:{prefix}"

    def queues(self, names: tuple[str, ...] | list[str]) -> list[str]:
        return [self.sqs + name for name in names]

    def dlqs(self, names: tuple[str, ...] | list[str]) -> list[str]:
        specs = {spec.name: spec for spec in QUEUES}
        return [self.sqs + specs[name].dlq_name for name in names]

    def transient(self) -> list[str]:
        return [self.sqs + "celeryev-*", self.sqs + "*-celery-pidbox"]

    def fanout(self) -> list[str]:
        return [self.sns + topic for topic in FANOUT_TOPICS]

    def topics(self) -> list[str]:
        return [self.sns + topic for topic in TOPICS]


def _allow(sid: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)),
            "Resource": sorted(set(resources))}


def _monitoring(arns: _Arns, sid: str) -> list[dict[str, Any]]:
    """Events and remote control over SNS fanout, and the janitor."""
    return [
        _allow(f"{sid}TransientQueues", TRANSIENT, arns.transient()),
        _allow(f"{sid}FanoutTopics", ["sns:CreateTopic", "sns:Publish", "sns:Subscribe",
                                      "sns:ListSubscriptionsByTopic"], arns.fanout()),
        _allow(f"{sid}Listing", ["sqs:ListQueues", "sns:ListTopics", "sns:Unsubscribe"], ["*"]),
    ]


def policy(settings: Settings, role: str, account_id: str = "*") -> dict[str, Any]:
    """The IAM policy document for `role` (one of roles())."""
    arns = _Arns(settings, account_id)
    every = [spec.name for spec in QUEUES]
    lanes = worker_lanes()
    statements: list[dict[str, Any]]
    if role.startswith("worker-") and role.removeprefix("worker-") in lanes:
        own = list(lanes[role.removeprefix("worker-")])
        statements = [
            _allow("ConsumeOwnQueues", CONSUME, arns.queues(own)),
            _allow("DeadLetterOwnQueues", SEND, arns.dlqs(own)),
            _allow("SendNextSteps", SEND, arns.queues(every)),
            _allow("CheckTopology", ["sqs:GetQueueUrl"], arns.queues(every)),
            *_monitoring(arns, "Monitoring"),
        ]
    elif role == "producer":
        statements = [_allow("StartOrdersAndRestocks", SEND, arns.queues(list(ENTRY_QUEUES)))]
    elif role == "beat":
        statements = [_allow("SendReconcile", SEND,
                             arns.queues([TASK_QUEUE[Task.RECONCILE]]))]
    elif role == "relay":
        statements = [_allow("PublishBusinessEvents", ["sns:Publish"], arns.topics()),
                      _allow("FindTopics", ["sns:ListTopics"], ["*"])]
    elif role == "flower":
        statements = _monitoring(arns, "Flower")
    elif role == "operator":
        statements = [
            _allow("ProvisionQueues", ["sqs:CreateQueue", "sqs:GetQueueUrl",
                                       "sqs:GetQueueAttributes", "sqs:SetQueueAttributes",
                                       "sqs:TagQueue"], arns.queues(every) + arns.dlqs(every)),
            _allow("ProvisionTopics", ["sns:CreateTopic", "sns:GetTopicAttributes"],
                   arns.topics()),
            _allow("DeadLetters", [*CONSUME, "sqs:PurgeQueue"], arns.dlqs(every)),
            _allow("RedriveAndCancel", SEND, arns.queues(every)),
            _allow("Alarms", ["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"],
                   [arns.alarm + "*"]),
            _allow("Janitor", ["sqs:DeleteQueue", "sqs:GetQueueAttributes",
                               "sqs:ListQueueTags", "sqs:GetQueueUrl"], arns.transient()),
            _allow("JanitorTopics", ["sns:ListSubscriptionsByTopic"], arns.fanout()),
            _allow("Listing", ["sqs:ListQueues", "sns:ListTopics", "sns:Unsubscribe",
                               "cloudwatch:GetMetricData"], ["*"]),
        ]
    else:
        raise ConfigurationError(f"unknown role {role!r}; one of {', '.join(roles())}")
    return {"Version": "2012-10-17", "Statement": statements}
