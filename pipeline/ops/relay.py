"""`pipeline relay`: move outbox events to their SNS topics.

Polls the outbox (a database query, no SQS traffic), publishes pending
events with SNS PublishBatch (ten per request), grouped by topic, each with
its message attributes for subscription filter policies, then marks them
published. At least once: a crash between publish and mark publishes again,
and consumers dedupe by `eventId`. A failed entry stays pending and is
retried on the next round (a failing SNS doubles the pause, up to 10 s); an
event SNS refuses for what it is (too large, an invalid attribute) is parked
with the reason, never retried forever, and counted by `pipeline metrics`.
Published rows older than a day are purged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from config.topology import TOPICS
from pipeline import tracing
from pipeline.errors import ProvisioningError
from pipeline.runtime import Runtime
from pipeline.sqs.sns import topic_arns
from pipeline.store import outbox

__all__ = ["Relay"]

log = logging.getLogger("pipeline.relay")
BATCH = 10  # SNS PublishBatch's limit
SNS_MAX_BYTES = 256 * 1024  # one message, and a whole PublishBatch request
LEASE_S = 10.0
KEEP_PUBLISHED = timedelta(days=1)
TRACE_ATTRIBUTE_BYTES = 128  # room for the `traceparent` attribute (55 characters)


class _Entry(NamedTuple):
    id: int
    entry: dict[str, Any]
    event: outbox.OutboxEvent


class Relay:
    def __init__(self, rt: Runtime, *, idle_poll_s: float = 0.5) -> None:
        self.rt = rt
        self.idle_poll_s = idle_poll_s
        self.sns = rt.sns_publisher()
        self.stopping = threading.Event()
        self.published = 0
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._topics: dict[str, str] = {}

    def topic_arn(self, topic: str) -> str:
        if not self._topics:
            prefix = self.rt.settings.queue_prefix
            for name, arn in topic_arns(self.sns).items():
                if name.startswith(prefix) and name.removeprefix(prefix) in TOPICS:
                    self._topics[name.removeprefix(prefix)] = arn
        if topic not in self._topics:
            raise ProvisioningError(f"SNS topic {self.rt.settings.queue_prefix}{topic} is "
                                    "missing; run `pipeline provision`")
        return self._topics[topic]

    def publish_pending(self, limit: int = 500) -> int:
        """One round: publish up to `limit` pending events; returns how many went out.

        Only the holder of the relay lease publishes, so two relays started by
        mistake never send an event twice (the other waits; it takes over when
        the holder stops renewing)."""
        if not self.rt.store.take_lease("relay", self.holder, LEASE_S):
            return 0
        events = outbox.pending(self.rt.store.engine, limit)
        by_topic: dict[str, list[outbox.OutboxEvent]] = defaultdict(list)
        for event in events:
            by_topic[event["topic"]].append(event)
        done: list[int] = []
        for topic, batch in by_topic.items():
            arn = self.topic_arn(topic)
            for chunk in self._batches(batch):
                done += self._publish_batch(arn, chunk)
        outbox.mark_published(self.rt.store.engine, done)
        self.published += len(done)
        return len(done)

    def _batches(self, events: list[outbox.OutboxEvent]) -> list[list[_Entry]]:
        """PublishBatch entries in batches of at most ten and SNS_MAX_BYTES together; an
        event that alone exceeds SNS's limit is parked (it would be refused forever)."""
        batches: list[list[_Entry]] = [[]]
        size = 0
        for event in events:
            message = json.dumps(event["body"], default=str)
            attributes = _attributes(event["attributes"])
            entry: dict[str, Any] = {"Id": str(event["id"]), "Message": message,
                                     "MessageAttributes": attributes}
            entry_size = TRACE_ATTRIBUTE_BYTES + len(message.encode()) + sum(
                len(k) + len(v["StringValue"].encode()) for k, v in attributes.items())
            if entry_size > SNS_MAX_BYTES:
                outbox.park(self.rt.store.engine, event["id"],
                            f"{entry_size} bytes: over SNS's {SNS_MAX_BYTES}-byte limit")
                log.error("parked event %s (%s): %d bytes is over SNS's limit",
                          event["event_id"], event["event_type"], entry_size)
                continue
            if len(batches[-1]) == BATCH or size + entry_size > SNS_MAX_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(_Entry(int(event["id"]), entry, event))
            size += entry_size
        return [b for b in batches if b]

    def _publish_batch(self, arn: str, batch: list[_Entry]) -> list[int]:
        # Each event continues the trace it was recorded in (pipeline.tracing).
        with tracing.producer_spans([(e.event.get("traceparent"),
                                      e.event["body"].get("orderId"),
                                      f"publish {e.event['event_type']}")
                                     for e in batch]) as carriers:
            for e, carrier in zip(batch, carriers, strict=True):
                e.entry["MessageAttributes"].update(_attributes(carrier))
            reply = self.sns.publish_batch(TopicArn=arn,
                                           PublishBatchRequestEntries=[e.entry for e in batch])
        for failure in reply.get("Failed", []):
            if failure.get("SenderFault"):  # refused for what it is: never retried forever
                outbox.park(self.rt.store.engine, int(failure["Id"]),
                            f"SNS refused it: {failure.get('Code')}: {failure.get('Message')}")
                log.error("parked event %s: SNS refused it (%s)", failure.get("Id"),
                          failure.get("Message"))
            else:
                log.warning("SNS did not take event %s (%s); retrying", failure.get("Id"),
                            failure.get("Message"))
        return [int(ok["Id"]) for ok in reply.get("Successful", [])]

    def run(self) -> None:
        backoff = self.idle_poll_s
        last_purge = 0.0
        while not self.stopping.is_set():
            try:
                sent = self.publish_pending()
                backoff = self.idle_poll_s
            except (BotoCoreError, ClientError) as error:
                log.warning("publishing events failed (%s); retrying in %.1fs", error, backoff)
                sent, backoff = 0, min(backoff * 2, 10.0)
            if time.monotonic() - last_purge > 600:
                outbox.purge_published(self.rt.store.engine, KEEP_PUBLISHED)
                last_purge = time.monotonic()
            if sent < 100:  # a quiet moment: let events gather into full batches
                self.stopping.wait(backoff)


def _attributes(attributes: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {key: {"DataType": "String", "StringValue": str(value)}
            for key, value in attributes.items() if value not in (None, "")}
