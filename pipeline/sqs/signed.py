"""The AWS calls every message costs, signed and sent without botocore's request machinery.

Every step message costs a SendMessage (or a share of a SendMessageBatch) and a
share of a DeleteMessageBatch. Through botocore one SendMessage costs ~0.74 ms
of CPU here; the same request, SigV4-signed by hand and sent as SQS's JSON
protocol on a kept-alive connection, ~0.16 ms (stop 33, 3 x 2000 calls each
against the emulator). botocore spends the difference on its event hooks,
model-driven serialising, request objects, urllib3 and email-header parsing;
the connection here is a bare socket (pipeline.sqs.wire), as http.client alone
cost more than the signing. The relay's SNS PublishBatch (ten events a request)
goes the same way (`SignedSNS`), and so does every lane's Publish of its batched
task events and remote-control broadcasts (kombu's SNS fanout), and the blocking
ReceiveMessage of kombu's loop-less consumers: through botocore it was a third of
Flower's CPU.

`SignedCalls` wraps kombu's botocore client and takes over only those four SQS calls
(`SignedSNS` the two SNS ones), only in their plain shapes (string attributes, no
binary values); every other call and every other shape goes to the client unchanged.
Anything but a 200 answer -- an SQS error, throttling, a refused or dropped
connection -- is sent again through botocore, so errors, retries, validation and
exception types are botocore's own. Repeating a request that way can reach SQS
twice, as botocore's own retries can: a second send is a duplicate the steps absorb
(at-least-once; on FIFO queues the deduplication id drops it), a second delete is a
no-op, a receive whose answer was lost leaves its messages to come back after their
visibility timeout, a second outbox event is one its subscribers dedupe by
`eventId`, a second batch of task events one Flower counts twice (as it would after
botocore's own retry). What the request looks like is botocore's too: the test suite
compares headers, body and signature with what botocore builds for the same call.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import string
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote_plus
from xml.etree import ElementTree

from pipeline.sqs.wire import Connection, SignedClient, sign_v4

__all__ = ["FORM_SHORT", "Connection", "SignedCalls", "SignedSNS", "form_body", "plain_call",
           "plain_receive", "sign_v4"]

log = logging.getLogger("pipeline.sqs")

TARGET_PREFIX = "AmazonSQS"  # botocore's SQS model: protocol json, jsonVersion 1.0
CONTENT_TYPE = "application/x-amz-json-1.0"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"  # SNS: query protocol
SNS_VERSION = "2010-03-31"
SNS_XMLNS = "{http://sns.amazonaws.com/doc/2010-03-31/}"

_SEND_KEYS = frozenset({"QueueUrl", "MessageBody", "DelaySeconds", "MessageAttributes",
                        "MessageGroupId", "MessageDeduplicationId"})
_ENTRY_KEYS = (_SEND_KEYS - {"QueueUrl"}) | {"Id"}
_STR_KEYS = ("MessageBody", "MessageGroupId", "MessageDeduplicationId", "Id", "QueueUrl")
_SNS_ENTRY_KEYS = frozenset({"Id", "Message", "MessageAttributes"})
_SNS_PUBLISH_KEYS = frozenset({"TopicArn", "Message", "MessageAttributes"})
_RECEIVE_INTS = ("MaxNumberOfMessages", "WaitTimeSeconds", "VisibilityTimeout")
_RECEIVE_NAMES = ("AttributeNames", "MessageSystemAttributeNames", "MessageAttributeNames")
_RECEIVE_KEYS = frozenset({"QueueUrl", "ReceiveRequestAttemptId", *_RECEIVE_INTS,
                           *_RECEIVE_NAMES})


# SNS speaks the query protocol: a form body, every key and value through urllib's
# quote_plus (botocore's urlencode). quote_plus escapes a value byte by byte in
# Python: 1.8 ms for a 20 KB event batch, 18 us for an outbox event's JSON, 0.6 ms
# for a relay's batch of ten. Here a value with nothing to escape (most keys) is
# returned as it is, and an ASCII one of some length is escaped one character kind
# at a time (0.2 ms for the 20 KB), to the same text.
FORM_SHORT = 64  # shorter values with something to escape, or non-ASCII: quote_plus
_FORM_SAFE = string.ascii_letters + string.digits + "_.-~"  # quote_plus's always-safe
_FORM_SAFE_TEXT = re.compile(f"[{re.escape(_FORM_SAFE)}]*")
_FORM_ESCAPES = [(char, f"%{ord(char):02X}") for char in map(chr, range(128))
                 if char not in _FORM_SAFE and char not in "% "]


def _form_value(text: str) -> str:
    if _FORM_SAFE_TEXT.fullmatch(text):
        return text
    if len(text) < FORM_SHORT or not text.isascii():
        return quote_plus(text)
    if "%" in text:  # first: every escape below brings a "%" of its own
        text = text.replace("%", "%25")
    for char, escape in _FORM_ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    return text.replace(" ", "+")  # last: "+" itself is escaped above


def form_body(fields: Iterable[tuple[str, str]]) -> bytes:
    """`urlencode(fields).encode()`, faster on long values."""
    return "&".join(f"{_form_value(key)}={_form_value(value)}"
                    for key, value in fields).encode()


def _attribute_fields(prefix: str, attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """String message attributes as the query protocol's map entries, in botocore's order."""
    fields = []
    for m, (name, value) in enumerate(attributes.items(), 1):
        entry = f"{prefix}.entry.{m}"
        fields += [(f"{entry}.Name", name), (f"{entry}.Value.DataType", value["DataType"]),
                   (f"{entry}.Value.StringValue", value["StringValue"])]
    return fields


def _plain_attributes(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(name, str) and isinstance(attr, dict)
        and set(attr) == {"DataType", "StringValue"}
        and isinstance(attr["DataType"], str) and isinstance(attr["StringValue"], str)
        for name, attr in value.items())


def _plain(params: dict[str, Any], allowed: frozenset[str]) -> bool:
    """Only the shapes botocore would send as they are: strings, an int delay,
    string attributes. Anything else (a typo, a wrong type) is botocore's to refuse."""
    if not set(params) <= allowed:
        return False
    if any(key in params and not isinstance(params[key], str) for key in _STR_KEYS):
        return False
    delay = params.get("DelaySeconds")
    if delay is not None and type(delay) is not int:
        return False
    return "MessageAttributes" not in params or _plain_attributes(params["MessageAttributes"])


def plain_call(action: str, params: dict[str, Any]) -> bool:
    if action == "SendMessage":
        return _plain(params, _SEND_KEYS) and "MessageBody" in params
    entries = params.get("Entries")
    if set(params) != {"QueueUrl", "Entries"} or not isinstance(params["QueueUrl"], str) \
            or not isinstance(entries, list) or not 0 < len(entries) <= 10:
        return False
    if action == "SendMessageBatch":
        return all(isinstance(e, dict) and "Id" in e and "MessageBody" in e
                   and _plain(e, _ENTRY_KEYS) for e in entries)
    return all(isinstance(e, dict) and set(e) == {"Id", "ReceiptHandle"}
               and all(isinstance(v, str) for v in e.values()) for e in entries)


def plain_receive(params: dict[str, Any]) -> bool:
    return (set(params) <= _RECEIVE_KEYS and isinstance(params.get("QueueUrl"), str)
            and all(type(params[k]) is int for k in _RECEIVE_INTS if k in params)
            and all(isinstance(params[k], list) and all(isinstance(n, str) for n in params[k])
                    for k in _RECEIVE_NAMES if k in params)
            and isinstance(params.get("ReceiveRequestAttemptId", ""), str))


def _fallback_on_failure(action: str, send: Callable[[], tuple[int, bytes]],
                         read: Callable[[bytes], Any], fallback: Callable[[], Any]) -> Any:
    """Send by hand; anything but a readable 200 answer goes to botocore."""
    try:
        status, answer = send()
    except (OSError, http.client.HTTPException) as error:
        log.debug("%s by hand failed (%s); sending it through botocore", action, error)
        return fallback()
    if status != 200:
        return fallback()  # botocore raises (or retries) as it always did
    try:
        reply = read(answer)
    except (ValueError, ElementTree.ParseError):
        reply = None
    return fallback() if reply is None else reply


class SignedCalls(SignedClient):
    """kombu's botocore SQS client, with SendMessage, SendMessageBatch,
    DeleteMessageBatch and the blocking ReceiveMessage sent by hand (see the
    module's docstring)."""

    service = "sqs"

    # the three calls; the rest is the client's
    def send_message(self, **params: Any) -> Any:
        return self._call("SendMessage", params, self._client.send_message)

    def send_message_batch(self, **params: Any) -> Any:
        return self._call("SendMessageBatch", params, self._client.send_message_batch)

    def delete_message_batch(self, **params: Any) -> Any:
        return self._call("DeleteMessageBatch", params, self._client.delete_message_batch)

    def receive_message(self, **params: Any) -> Any:
        """The blocking receive (Flower's and `celery inspect`'s consumers; workers
        receive through pipeline.sqs.receive). A message attribute's binary value is
        base64 on the wire: an answer with attributes is read by botocore's parser."""
        fallback = self._client.receive_message
        if not plain_receive(params):
            return fallback(**params)
        return _fallback_on_failure("ReceiveMessage",
                                    lambda: self._request("ReceiveMessage", params),
                                    self._read_received, lambda: fallback(**params))

    def _read_received(self, answer: bytes) -> dict[str, Any] | None:
        reply = _json_object(answer)
        if reply is None or not any(isinstance(m, dict) and "MessageAttributes" in m
                                    for m in reply.get("Messages") or []):
            return reply
        model = self._client.meta.service_model.operation_model("ReceiveMessage")
        parsed: dict[str, Any] = self._client._response_parser.parse(
            {"status_code": 200, "headers": {}, "body": answer}, model.output_shape)
        return parsed

    def _call(self, action: str, params: dict[str, Any], fallback: Callable[..., Any]) -> Any:
        if not plain_call(action, params):
            return fallback(**params)
        return _fallback_on_failure(action, lambda: self._request(action, params), _json_object,
                                    lambda: fallback(**params))

    def _request(self, action: str, params: dict[str, Any]) -> tuple[int, bytes]:
        payload = json.dumps(params, separators=(",", ":")).encode()
        return self._post({"content-type": CONTENT_TYPE,
                           "x-amz-target": f"{TARGET_PREFIX}.{action}",
                           # SQS is "awsQueryCompatible": botocore asks for the query-era
                           # error codes, which callers (kombu, ours) compare against
                           "x-amzn-query-mode": "true"}, payload)


def _json_object(answer: bytes) -> dict[str, Any] | None:
    reply = json.loads(answer) if answer else {}
    return reply if isinstance(reply, dict) else None


class SignedSNS(SignedClient):
    """A botocore SNS client whose PublishBatch (the relay's one call per ten events)
    and Publish (a lane's batch of task events, once a second; a remote-control
    broadcast) go by hand: SNS speaks the query protocol, a form body and an XML
    answer, and through botocore a batch cost the relay ~3.5 ms of CPU (its
    serialiser, validation, signing and urllib3), and an event batch's Publish
    3-6 % of a busy lane's."""

    service = "sns"

    def publish_batch(self, **params: Any) -> Any:
        return self._by_hand("PublishBatch", params, _plain_sns_batch, self._publish_batch,
                             _batch_answer, self._client.publish_batch)

    def publish(self, **params: Any) -> Any:
        return self._by_hand("Publish", params, _plain_publish, self._publish,
                             _publish_answer, self._client.publish)

    @staticmethod
    def _by_hand(action: str, params: dict[str, Any], plain: Callable[[dict[str, Any]], bool],
                 send: Callable[[dict[str, Any]], tuple[int, bytes]],
                 read: Callable[[bytes], Any], fallback: Callable[..., Any]) -> Any:
        if not plain(params):
            return fallback(**params)
        return _fallback_on_failure(action, lambda: send(params), read,
                                    lambda: fallback(**params))

    def _publish_batch(self, params: dict[str, Any]) -> tuple[int, bytes]:
        # the fields in botocore's order, so the body is the one botocore sends
        fields = [("Action", "PublishBatch"), ("Version", SNS_VERSION),
                  ("TopicArn", params["TopicArn"])]
        for n, entry in enumerate(params["PublishBatchRequestEntries"], 1):
            member = f"PublishBatchRequestEntries.member.{n}"
            fields += [(f"{member}.Id", entry["Id"]), (f"{member}.Message", entry["Message"])]
            fields += _attribute_fields(f"{member}.MessageAttributes",
                                        entry.get("MessageAttributes", {}))
        return self._post({"content-type": FORM_CONTENT_TYPE}, form_body(fields))

    def _publish(self, params: dict[str, Any]) -> tuple[int, bytes]:
        fields = [("Action", "Publish"), ("Version", SNS_VERSION),
                  ("TopicArn", params["TopicArn"]), ("Message", params["Message"]),
                  *_attribute_fields("MessageAttributes", params.get("MessageAttributes", {}))]
        return self._post({"content-type": FORM_CONTENT_TYPE}, form_body(fields))


def _plain_publish(params: dict[str, Any]) -> bool:
    return (set(params) <= _SNS_PUBLISH_KEYS and isinstance(params.get("TopicArn"), str)
            and isinstance(params.get("Message"), str)
            and _plain_attributes(params.get("MessageAttributes", {})))


def _publish_answer(answer: bytes) -> dict[str, Any] | None:
    """Publish's XML answer as botocore parses it, with the status kombu checks."""
    root = ElementTree.fromstring(answer)
    message_id = root.findtext(f"{SNS_XMLNS}PublishResult/{SNS_XMLNS}MessageId")
    if message_id is None:
        return None
    reply: dict[str, Any] = {"MessageId": message_id}
    sequence = root.findtext(f"{SNS_XMLNS}PublishResult/{SNS_XMLNS}SequenceNumber")
    if sequence is not None:
        reply["SequenceNumber"] = sequence
    reply["ResponseMetadata"] = {
        "RequestId": root.findtext(f"{SNS_XMLNS}ResponseMetadata/{SNS_XMLNS}RequestId") or "",
        "HTTPStatusCode": 200, "RetryAttempts": 0}
    return reply


def _plain_sns_batch(params: dict[str, Any]) -> bool:
    entries = params.get("PublishBatchRequestEntries")
    return (set(params) == {"TopicArn", "PublishBatchRequestEntries"}
            and isinstance(params["TopicArn"], str) and isinstance(entries, list)
            and 0 < len(entries) <= 10
            and all(isinstance(e, dict) and set(e) <= _SNS_ENTRY_KEYS and "Id" in e
                    and "Message" in e and isinstance(e["Id"], str)
                    and isinstance(e["Message"], str)
                    and _plain_attributes(e.get("MessageAttributes", {}))
                    for e in entries))


def _batch_answer(answer: bytes) -> dict[str, Any] | None:
    """PublishBatch's XML answer as botocore parses it: Successful and Failed."""
    root = ElementTree.fromstring(answer)
    result = root.find(f"{SNS_XMLNS}PublishBatchResult")
    if result is None:
        return None

    def members(name: str) -> list[dict[str, Any]]:
        found = []
        for member in result.iterfind(f"{SNS_XMLNS}{name}/{SNS_XMLNS}member"):
            item: dict[str, Any] = {child.tag.removeprefix(SNS_XMLNS): child.text or ""
                                    for child in member}
            if "SenderFault" in item:
                item["SenderFault"] = item["SenderFault"] == "true"
            found.append(item)
        return found

    return {"Successful": members("Successful"), "Failed": members("Failed")}
