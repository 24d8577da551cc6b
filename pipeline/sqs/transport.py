"""kombu's SQS transport with the project's guarantees added.

Selected by `broker_transport` in config.celery. Events and remote control
over SNS are in pipeline.sqs.broadcast; here:

* kombu files a FIFO publish that carries no MessageGroupId under the group
  "default" with a random deduplication id (celery#8352: retries and
  worker-lost redelivery do exactly that), which puts it behind later
  updates of its product and defeats deduplication. Here that is an error.
* A "redelivered" put is how kombu hands back a received message it will
  not run (a warm shutdown restoring what it prefetched, a requeue): kombu
  hides it for wait_time_seconds more; here it becomes visible at once, so
  SIGTERM leaves nothing invisible for the next worker to wait on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kombu
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from kombu.transport import SQS, virtual
from vine import promise

from pipeline.errors import FifoGroupMissing
from pipeline.sqs.broadcast import BroadcastChannel

# Overrides below reach into kombu's SQS channel (_put, _on_messages_ready,
# _loop1, _get_from_sqs, _lookup, ...): checked against this release only.
KOMBU_SERIES = "5.7."
if not kombu.__version__.startswith(KOMBU_SERIES):
    raise ImportError(f"pipeline.sqs.transport was written for kombu {KOMBU_SERIES}x, "
                      f"found {kombu.__version__}: re-check its overrides before upgrading")

__all__ = ["Channel", "Transport"]

log = logging.getLogger("pipeline.sqs")
ACK_RETRY_S = 15.0
RECEIVE_FAILURE_PAUSE_S = 1.0


class Channel(BroadcastChannel):
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        properties = message.get("properties") or {}
        # A `redelivered` put only changes the visibility of the received
        # message, which keeps its group; every other put is a new message.
        if queue.endswith(".fifo") and not message.get("redelivered"):
            group = properties.get("MessageGroupId")
            dedup = properties.get("MessageDeduplicationId")
            if not group or group == "default" or not dedup:
                raise FifoGroupMissing(
                    f"refusing to publish to FIFO queue {queue!r} without a real "
                    f"MessageGroupId and MessageDeduplicationId (got {group!r}, {dedup!r}); "
                    "kombu would file it under group 'default' behind later updates")
        if message.get("redelivered"):
            receipt = properties.get("delivery_tag")
            if receipt:
                try:
                    self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
                        QueueUrl=self._new_queue(queue), ReceiptHandle=receipt,
                        VisibilityTimeout=0)
                except ClientError as error:
                    # Already visible again or gone (e.g. its visibility ran out
                    # during a broker outage): nothing left to hand back.
                    log.info("not handing back a message SQS no longer holds for us: %s",
                             error)
                return
        super()._put(queue, message, **kwargs)

    # --- riding out broker outages -------------------------------------------
    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> Any:
        if not isinstance(messages, dict):  # kombu's stand-in for a failed receive
            log.warning("receive from %s failed (SQS timed out or answered 5xx); polling "
                        "again in %ss", qname, RECEIVE_FAILURE_PAUSE_S)
            self.__dict__["_receive_failed"] = True
            return 0
        return super()._on_messages_ready(queue, qname, messages)

    def _loop1(self, queue: str, messages_fetched: Any = None) -> None:
        hub = self.hub
        if self.__dict__.pop("_receive_failed", False) and hub is not None:
            hub.call_later(RECEIVE_FAILURE_PAUSE_S, self._schedule_queue, queue)  # no spinning
            return
        super()._loop1(queue, messages_fetched)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        try:
            info = self.qos.get(delivery_tag).delivery_info
            receipt = info["sqs_message"]["ReceiptHandle"]
        except KeyError:
            super().basic_ack(delivery_tag, multiple)
            return
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        deadline = time.monotonic() + ACK_RETRY_S
        while True:
            try:
                self.sqs(queue=queue).delete_message(QueueUrl=info["sqs_queue"],
                                                     ReceiptHandle=receipt)
                break
            except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError) as error:
                if time.monotonic() > deadline:
                    log.error("could not delete an acked message (%s); it comes back after "
                              "its visibility timeout and its step absorbs the repeat", error)
                    break
                time.sleep(0.5)
            except ClientError as error:  # e.g. a receipt from before a broker restart
                log.warning("SQS refused to delete an acked message: %s", error)
                break
        virtual.Channel.basic_ack(self, delivery_tag, multiple)

    # --- no long poll left behind on shutdown -------------------------------
    def _get_from_sqs(self, queue_name: str, queue_url: str, connection: Any,
                      count: int = 1, callback: Any = None) -> Any:
        self.__dict__["_polls"] = self.__dict__.get("_polls", 0) + 1

        def answered(response: Any) -> Any:
            self.__dict__["_polls"] -= 1
            return callback(response) if callback is not None else response

        return super()._get_from_sqs(queue_name, queue_url, connection, count,
                                     callback=promise(answered))

    def basic_cancel(self, consumer_tag: str) -> Any:
        result = super().basic_cancel(consumer_tag)
        hub = getattr(self, "hub", None)
        deadline = time.monotonic() + self.wait_time_seconds + 2
        while hub is not None and self.__dict__.get("_polls") and time.monotonic() < deadline:
            hub.run_once()
        if self.__dict__.get("_polls"):
            log.warning("%d long poll(s) still open at shutdown; what they receive stays "
                        "invisible until its visibility timeout", self.__dict__["_polls"])
        return result


class Transport(SQS.Transport):
    Channel = Channel
    # Fanout goes through SNS (kombu's `supports_fanout`); advertising it is
    # what lets Celery start the worker's remote-control step.
    implements = SQS.Transport.implements.extend(
        exchange_type=frozenset(["direct", "fanout"]))
