"""The channel's botocore clients, with their hot calls signed by hand.

A mixin of pipeline.sqs.transport.Channel: kombu's SQS client becomes a
`signed.SignedCalls` (sends, receives, batch deletes) and its SNS fanout's client
a `signed.SignedSNS` (the Publish of a lane's batched events and of remote-control
broadcasts), unless the transport option says no or the queues/exchanges are
predefined (per-queue clients and STS roles stay kombu's alone).
"""

from __future__ import annotations

from typing import Any

import boto3
from kombu.transport import SQS
from kombu.transport.SQS.SNS import SNS as SnsFanout

from config.celery import SIGNED_CALLS_OPTION
from pipeline.sqs import signed
from pipeline.sqs.wire import SignedClient

__all__ = ["SignedClients", "SignedFanout"]

_SLOTS = ("_signed_calls", "_signed_sns_client")


class SignedFanout(SnsFanout):
    """kombu's SNS fanout, its client signed by the channel."""

    channel: SignedClients

    def get_client(self, exchange_name: str | None = None) -> Any:
        return self.channel._signed_sns(super().get_client(exchange_name))


class SignedClients(SQS.Channel):
    @property
    def fanout(self) -> SnsFanout:
        if not self._fanout:
            self._fanout = SignedFanout(self)
        return self._fanout

    def _signed(self, client: Any) -> Any:
        if self.predefined_queues:
            return client
        return self._wrapped(_SLOTS[0], signed.SignedCalls, client)

    def _signed_sns(self, client: Any) -> Any:
        if self.predefined_exchanges:
            return client
        return self._wrapped(_SLOTS[1], signed.SignedSNS, client)

    def _wrapped(self, slot: str, kind: type[SignedClient], client: Any) -> Any:
        """`client` in a `kind`, kept in `slot` for as long as kombu hands out that client."""
        if not self.transport_options.get(SIGNED_CALLS_OPTION):
            return client
        wrapped: SignedClient | None = self.__dict__.get(slot)
        if wrapped is None or wrapped.client is not client:
            if self.__dict__.get("_no_credentials"):
                return client  # looked up once: botocore will say so, as it always did
            # the credentials kombu gives boto3: the broker URL's keys, else the chain
            session = boto3.Session(aws_access_key_id=self.conninfo.userid or None,
                                    aws_secret_access_key=self.conninfo.password or None,
                                    region_name=self.region)
            credentials = session.get_credentials()
            if credentials is None:
                self.__dict__["_no_credentials"] = True
                return client
            if wrapped is not None:  # kombu made a new client: the old one's sockets go
                wrapped.close()
            wrapped = self.__dict__[slot] = kind(client, credentials.get_frozen_credentials)
        return wrapped

    def _close_signed(self) -> None:
        for slot in _SLOTS:
            wrapped = self.__dict__.pop(slot, None)
            if wrapped is not None:
                wrapped.close()
