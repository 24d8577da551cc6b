"""`pipeline relay`: move outbox events to their SNS topics.

Polls the outbox (a database query, no SQS traffic), publishes pending
events with SNS PublishBatch (ten per request), grouped by topic, each with
its message attributes for subscription filter policies, then marks them
published. At least once: a crash between publish and mark publishes again,
and consumers dedupe by `eventId`. A failed entry stays pending and is
retried with backoff; published rows older than a day are purged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from config.topology import TOPICS
from pipeline.errors import ProvisioningError
from pipeline.runtime import Runtime
from pipeline.store import outbox

__all__ = ["Relay"]

log = logging.getLogger("pipeline.relay")
BATCH = 10  # SNS PublishBatch's limit
KEEP_PUBLISHED = timedelta(days=1)


class Relay:
    def __init__(self, rt: Runtime, *, idle_poll_s: float = 0.5) -> None:
        self.rt = rt
        self.idle_poll_s = idle_poll_s
        self.sns = rt.aws_client("sns")
        self.stopping = threading.Event()
        self.published = 0
        self._topics: dict[str, str] = {}

    def topic_arn(self, topic: str) -> str:
        if not self._topics:
            prefix = self.rt.settings.queue_prefix
            for page in self.sns.get_paginator("list_topics").paginate():
                for entry in page.get("Topics", []):
                    name = str(entry["TopicArn"]).rsplit(":", 1)[-1]
                    if name.startswith(prefix) and name.removeprefix(prefix) in TOPICS:
                        self._topics[name.removeprefix(prefix)] = str(entry["TopicArn"])
        if topic not in self._topics:
            raise ProvisioningError(f"SNS topic {self.rt.settings.queue_prefix}{topic} is "
                                    "missing; run `pipeline provision`")
        return self._topics[topic]

    def publish_pending(self, limit: int = 500) -> int:
        """One round: publish up to `limit` pending events; returns how many went out."""
        events = outbox.pending(self.rt.store.engine, limit)
        by_topic: dict[str, list[outbox.OutboxEvent]] = defaultdict(list)
        for event in events:
            by_topic[event["topic"]].append(event)
        done: list[int] = []
        for topic, batch in by_topic.items():
            arn = self.topic_arn(topic)
            for start in range(0, len(batch), BATCH):
                done += self._publish_batch(arn, batch[start:start + BATCH])
        outbox.mark_published(self.rt.store.engine, done)
        self.published += len(done)
        return len(done)

    def _publish_batch(self, arn: str, batch: list[outbox.OutboxEvent]) -> list[int]:
        entries = [{"Id": str(event["id"]), "Message": json.dumps(event["body"], default=str),
                    "MessageAttributes": _attributes(event["attributes"])} for event in batch]
        reply = self.sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        for failure in reply.get("Failed", []):
            log.warning("SNS refused event %s: %s", failure.get("Id"), failure.get("Message"))
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
