"""pipeline.sqs.receive: a worker's ReceiveMessage signed by hand is the request kombu
builds and botocore signs, and its JSON answer reads as botocore's parser reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection

from pipeline.sqs.receive import SignedReceives
from pipeline.sqs.signed import SignedCalls

ENDPOINT = "http://127.0.0.1:4566"
QUEUE = f"{ENDPOINT}/000000000000/t-inventory.fifo"
ATTRIBUTES = ["ApproximateReceiveCount", "SequenceNumber", "MessageGroupId"]


def _client(token: str | None) -> Any:
    return boto3.client("sqs", region_name="eu-west-1", endpoint_url=ENDPOINT,
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret/key",
                        aws_session_token=token, config=Config(user_agent="test-agent"))


def _sent(connection: AsyncSQSConnection) -> dict[str, Any]:
    """The request the connection hands its HTTP client for one receive."""
    seen: dict[str, Any] = {}

    def capture(request: Any, callback: Any = None) -> None:
        seen.update(method=request.method, url=request.url, body=request.body,
                    headers={k.lower(): v for k, v in dict(request.headers).items()})

    connection._mexe = capture  # type: ignore[method-assign]
    connection.receive_message("q", QUEUE, number_messages=10, wait_time_seconds=10)
    return seen


@pytest.mark.parametrize("token", [None, "session-token"])
def test_a_receive_is_the_request_kombu_builds_and_botocore_signs(token: str | None) -> None:
    client = _client(token)
    theirs = _sent(AsyncSQSConnection(client, region="eu-west-1", http_client=object(),
                                      message_system_attribute_names=ATTRIBUTES))
    stamp = datetime.strptime(theirs["headers"]["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=UTC)  # the same second, so the same signature
    signer = SignedCalls(client, Credentials("AKIDEXAMPLE", "secret/key", token)
                         .get_frozen_credentials, now=lambda: stamp)
    ours = _sent(SignedReceives(signer, region="eu-west-1", http_client=object(),
                                message_system_attribute_names=ATTRIBUTES))
    assert ours == theirs
    assert ("x-amz-security-token" in ours["headers"]) == bool(token)


class _Answer(SimpleNamespace):
    """kombu's AsyncHTTPResponse as _on_list_ready reads it."""

    def read(self) -> bytes:
        return self.body  # type: ignore[no-any-return]


def _answer(body: dict[str, Any]) -> _Answer:
    data = json.dumps(body).encode()
    raw = SimpleNamespace(status_code=200, headers={"content-type": "application/x-amz-json-1.0"},
                          content=data, body=data)
    return _Answer(status=200, body=data, response=raw, reason="OK")


def _receives() -> tuple[AsyncSQSConnection, SignedReceives]:
    client = _client(None)
    signer = SignedCalls(client, Credentials("AKIDEXAMPLE", "secret/key").get_frozen_credentials)
    return (AsyncSQSConnection(client, region="eu-west-1", http_client=object()),
            SignedReceives(signer, region="eu-west-1", http_client=object()))


def test_an_answer_reads_as_botocores_parser_reads_it() -> None:
    botocore_reads, ours_reads = _receives()
    body = {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "MD5OfBody": "x",
                          "Body": "eyJhIjogMX0=", "Attributes": {
                              "ApproximateReceiveCount": "2", "SequenceNumber": "1890"}}]}
    theirs = botocore_reads._on_list_ready(None, [], "ReceiveMessage", _answer(body))
    ours = ours_reads._on_list_ready(None, [], "ReceiveMessage", _answer(body))
    theirs.pop("ResponseMetadata", None)
    assert ours == theirs == body
    assert ours_reads._on_list_ready(None, [], "ReceiveMessage", _answer({})) == {}


def test_message_attributes_go_to_botocores_parser() -> None:
    _, ours_reads = _receives()
    body = {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "b",
                          "MessageAttributes": {"bin": {"DataType": "Binary",
                                                        "BinaryValue": "AAE="}}}]}
    parsed = ours_reads._on_list_ready(None, [], "ReceiveMessage", _answer(body))
    # botocore decodes a binary value; read as it is, it would stay base64 text
    assert parsed["Messages"][0]["MessageAttributes"]["bin"]["BinaryValue"] == b"\x00\x01"
