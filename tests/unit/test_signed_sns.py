"""pipeline.sqs.signed.SignedSNS: the relay's PublishBatch, sent by hand, must be the
request botocore sends (form body, signed headers, signature) and read the XML
answer as botocore does; anything else is botocore's to handle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ParamValidationError

from pipeline.sqs.signed import SignedSNS
from tests.unit.aws_stand_in import StandIn

TOPIC = "arn:aws:sns:eu-west-1:000000000000:dev-order-status"
NOW = datetime(2026, 12, 4, 21, 15, tzinfo=UTC)
OK = (b'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
      b"<PublishBatchResult><Successful><member><Id>1</Id><MessageId>m1</MessageId></member>"
      b"</Successful><Failed><member><Id>2</Id><Code>InvalidParameter</Code>"
      b"<Message>too big</Message><SenderFault>true</SenderFault></member></Failed>"
      b"</PublishBatchResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
      b"</PublishBatchResponse>")
NOT_FOUND = (b'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
             b"<Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist</Message>"
             b"</Error><RequestId>r</RequestId></ErrorResponse>")
ENTRIES = [
    {"Id": "1", "Message": '{"orderId": "o-1", "status": "SHIPPED", "note": "é ☃ & = +"}',
     "MessageAttributes": {"eventType": {"DataType": "String", "StringValue": "order.x"},
                           "terminal": {"DataType": "String", "StringValue": "false"}}},
    {"Id": "2", "Message": "plain"},
]


class XmlServer(StandIn):
    """A local SNS stand-in: answers (status, body) in turn."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        super().__init__()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        status, answer = self.replies.pop(0) if self.replies else (200, OK)
        self.reply(handler, status, "text/xml", answer)


@pytest.fixture
def sns() -> Iterator[tuple[XmlServer, Any, SignedSNS]]:
    server = XmlServer()
    client = boto3.client("sns", region_name="eu-west-1", endpoint_url=server.endpoint,
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret/key",
                          config=Config(user_agent="test-agent", retries={"max_attempts": 1}))
    signed = SignedSNS(client, Credentials("AKIDEXAMPLE", "secret/key").get_frozen_credentials,
                       now=lambda: NOW)
    yield server, client, signed
    signed.close()
    server.close()


def test_a_batch_is_the_request_botocore_sends_and_reads_as_botocore_reads_it(
        sns: tuple[XmlServer, Any, SignedSNS]) -> None:
    server, client, signed = sns
    theirs = client.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=ENTRIES)
    ours = signed.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=ENTRIES)
    assert server.by_botocore() == [True, False]
    assert ours == {k: theirs[k] for k in ("Successful", "Failed")}
    assert ours["Failed"] == [{"Id": "2", "Code": "InvalidParameter", "Message": "too big",
                               "SenderFault": True}]
    botocore_request, our_request = server.requests
    assert our_request["body"] == botocore_request["body"]  # byte for byte
    assert parse_qsl(our_request["body"].decode())[5] == ("PublishBatchRequestEntries.member.1."
                                                         "MessageAttributes.entry.1.Name",
                                                         "eventType")
    for header in ("content-type", "host", "user-agent"):
        assert our_request["headers"][header] == botocore_request["headers"][header], header


def test_the_signature_is_botocores(sns: tuple[XmlServer, Any, SignedSNS]) -> None:
    server, _, signed = sns
    signed.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=ENTRIES)
    (sent,) = server.requests
    request = AWSRequest(method="POST", url=server.endpoint + "/", data=sent["body"], headers={
        "Content-Type": sent["headers"]["content-type"], "X-Amz-Date": "20261204T211500Z"})
    request.context["timestamp"] = "20261204T211500Z"
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key"), "sns", "eu-west-1")
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                               request)
    assert sent["headers"]["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/eu-west-1/sns/aws4_request, "
        f"SignedHeaders=content-type;host;x-amz-date, Signature={signature}")


@pytest.mark.parametrize("call", [
    lambda signed: signed.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=ENTRIES),
    lambda signed: signed.publish(TopicArn=TOPIC, Message=ENVELOPE),
], ids=["PublishBatch", "Publish"])
def test_an_sns_error_is_botocores_to_raise(sns: tuple[XmlServer, Any, SignedSNS],
                                           call: Callable[[SignedSNS], Any]) -> None:
    server, _, signed = sns
    server.replies = [(404, NOT_FOUND), (404, NOT_FOUND)]
    with pytest.raises(ClientError) as raised:
        call(signed)
    assert raised.value.response["Error"]["Code"] == "NotFound"
    assert server.by_botocore() == [False, True]


def test_an_answer_that_is_not_publish_batchs_goes_to_botocore(
        sns: tuple[XmlServer, Any, SignedSNS]) -> None:
    server, _, signed = sns
    server.replies = [(200, b"<html>proxy says hi</html>"), (200, OK)]
    assert signed.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=ENTRIES)[
        "Successful"] == [{"Id": "1", "MessageId": "m1"}]
    assert server.by_botocore() == [False, True]


@pytest.mark.parametrize("entries", [
    [{"Id": "1", "Message": "x", "Subject": "s"}],
    [{"Id": "1", "Message": "x", "MessageAttributes": {
        "a": {"DataType": "Binary", "BinaryValue": b"\x00"}}}],
    [{"Id": str(n), "Message": "x"} for n in range(11)],
])
def test_other_shapes_are_left_to_botocore(sns: tuple[XmlServer, Any, SignedSNS],
                                           entries: list[dict[str, Any]]) -> None:
    server, _, signed = sns
    signed.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=entries)
    assert server.by_botocore() == [True]


# --- Publish: the lanes' events and remote control over SNS fanout (kombu's SNS.publish)
PUBLISHED = (b'<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
             b"<PublishResult><MessageId>m-7</MessageId></PublishResult>"
             b"<ResponseMetadata><RequestId>r-7</RequestId></ResponseMetadata>"
             b"</PublishResponse>")
# kombu's envelope around a batch of events: long, JSON punctuation, base64's + / =
ENVELOPE = ('{"body": "' + "eJzt/Q+9a=" * 400 + '", "content-encoding": "utf-8", '
            '"headers": {"hostname": "orders@box 1", "note": "100% & more;"}, '
            '"properties": {"delivery_mode": 1, "priority": 0}}')
ATTRIBUTES = {"kind": {"DataType": "String", "StringValue": "task events"}}


@pytest.mark.parametrize("message", [ENVELOPE, ENVELOPE.replace("orders", "ordrés"), "short"])
def test_a_publish_is_the_request_botocore_sends_and_reads_as_botocore_reads_it(
        sns: tuple[XmlServer, Any, SignedSNS], message: str) -> None:
    server, client, signed = sns
    server.replies = [(200, PUBLISHED), (200, PUBLISHED)]
    theirs = client.publish(TopicArn=TOPIC, Message=message, MessageAttributes=ATTRIBUTES)
    ours = signed.publish(TopicArn=TOPIC, Message=message, MessageAttributes=ATTRIBUTES)
    assert server.by_botocore() == [True, False]
    botocore_request, our_request = server.requests
    assert our_request["body"] == botocore_request["body"]  # byte for byte
    for header in ("content-type", "host", "user-agent"):
        assert our_request["headers"][header] == botocore_request["headers"][header], header
    assert ours["MessageId"] == theirs["MessageId"] == "m-7"
    # kombu's SNS.publish checks this status and raises on anything but 200
    assert ours["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert ours["ResponseMetadata"]["RequestId"] == theirs["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize("params", [
    {"TopicArn": TOPIC, "Message": "x", "Subject": "s"},
    {"TopicArn": TOPIC, "Message": "x", "MessageGroupId": "g"},
    {"TopicArn": TOPIC, "Message": "x", "MessageAttributes": {
        "a": {"DataType": "Binary", "BinaryValue": b"\x00"}}},
])
def test_other_publish_shapes_are_left_to_botocore(sns: tuple[XmlServer, Any, SignedSNS],
                                                   params: dict[str, Any]) -> None:
    server, _, signed = sns
    server.replies = [(200, PUBLISHED)]
    signed.publish(**params)
    assert server.by_botocore() == [True]


def test_a_wrong_type_is_botocores_to_refuse(sns: tuple[XmlServer, Any, SignedSNS]) -> None:
    server, _, signed = sns
    with pytest.raises(ParamValidationError):
        signed.publish(TopicArn=TOPIC, Message=b"bytes")
    assert server.requests == []
