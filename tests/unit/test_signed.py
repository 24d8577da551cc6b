"""pipeline.sqs.signed: the hand-signed SendMessage / SendMessageBatch /
DeleteMessageBatch must be the requests botocore would send, and everything that
is not a plain 200 must end up botocore's to handle.

The emulator does not check signatures, AWS does: so the signature is checked
here against botocore's own SigV4 signer, and the request against the one
botocore builds for the same call, both caught by a real local HTTP server.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ParamValidationError

from pipeline.sqs import signed, wire
from pipeline.sqs.signed import SignedCalls, plain_call, sign_v4
from tests.unit.aws_stand_in import StandIn

AMZ_DATE = "20261204T211500Z"
QUEUE = "http://127.0.0.1/000000000000/orders"
QUERY_ERRORS = {"com.amazonaws.sqs#QueueDoesNotExist":
                "AWS.SimpleQueueService.NonExistentQueue;Sender"}


class Recorder(StandIn):
    """A local SQS stand-in: answers what `replies` says, in turn."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, Any]] | None] = []  # None: hang up
        super().__init__()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        reply = self.replies.pop(0) if self.replies else (200, {})
        if reply is None:
            handler.close_connection = True
            handler.connection.close()
            return
        status, answer = reply
        extra = {}
        if status != 200 and handler.headers.get("x-amzn-query-mode") == "true":
            # as SQS answers a client that asks for the query-era codes
            extra["x-amzn-query-error"] = QUERY_ERRORS[answer["__type"]]
        self.reply(handler, status, "application/x-amz-json-1.0", json.dumps(answer).encode(),
                   extra)


def _signed_headers(request: dict[str, Any]) -> str:
    authorization = request["headers"]["authorization"]
    return authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    while OPENED:
        OPENED.pop().close()
    r.close()


def _client(endpoint: str, token: str | None = None) -> Any:
    return boto3.client("sqs", region_name="eu-west-1", endpoint_url=endpoint,
                        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret/key",
                        aws_session_token=token,
                        config=Config(user_agent="test-agent", retries={"max_attempts": 1}))


OPENED: list[SignedCalls] = []


def _calls(client: Any, token: str | None = None) -> SignedCalls:
    creds = Credentials("AKIDEXAMPLE", "secret/key", token)
    calls = SignedCalls(client, creds.get_frozen_credentials,
                        now=lambda: datetime(2026, 12, 4, 21, 15, tzinfo=UTC))
    OPENED.append(calls)
    return calls


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("endpoint", ["https://sqs.eu-west-1.amazonaws.com",
                                      "http://127.0.0.1:4566"])
def test_the_signature_is_botocores_sigv4(endpoint: str, token: str | None) -> None:
    payload = b'{"QueueUrl":"q","MessageBody":"x y  z"}'
    host = endpoint.split("//")[1]
    headers = {"content-type": signed.CONTENT_TYPE, "host": host, "x-amz-date": AMZ_DATE,
               "x-amz-target": "AmazonSQS.SendMessage"}
    if token:
        headers["x-amz-security-token"] = token
    ours = sign_v4(method="POST", path="/", headers=headers, payload=payload,
                   access_key="AKIDEXAMPLE", secret_key="secret/key", region="eu-west-1",
                   service="sqs", amz_date=AMZ_DATE, key_cache={})

    request = AWSRequest(method="POST", url=endpoint + "/", data=payload,
                         headers={"Content-Type": signed.CONTENT_TYPE, "X-Amz-Date": AMZ_DATE,
                                  "X-Amz-Target": "AmazonSQS.SendMessage",
                                  **({"X-Amz-Security-Token": token} if token else {}),
                                  "User-Agent": "not signed"})
    request.context["timestamp"] = AMZ_DATE
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key", token), "sqs", "eu-west-1")
    botocore_signature = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request)
    signed_headers = auth.signed_headers(auth.headers_to_sign(request))
    assert ours == (f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/eu-west-1/sqs/"
                    f"aws4_request, SignedHeaders={signed_headers}, "
                    f"Signature={botocore_signature}")


def test_a_cached_signing_key_is_the_days_own() -> None:
    cache: dict[tuple[str, str], bytes] = {}
    kwargs: dict[str, Any] = dict(method="POST", path="/", payload=b"{}",
                                  access_key="a", secret_key="s", region="eu-west-1",
                                  service="sqs", key_cache=cache)
    day1 = sign_v4(headers={"host": "h", "x-amz-date": AMZ_DATE}, amz_date=AMZ_DATE, **kwargs)
    late = "20261205T000001Z"
    day2 = sign_v4(headers={"host": "h", "x-amz-date": late}, amz_date=late, **kwargs)
    fresh = sign_v4(headers={"host": "h", "x-amz-date": late}, amz_date=late,
                    **{**kwargs, "key_cache": {}})
    assert day2 == fresh != day1 and len(cache) == 1


def test_a_send_is_the_request_botocore_builds(recorder: Recorder) -> None:
    client = _client(recorder.endpoint, token="tok")
    params = {"QueueUrl": QUEUE, "MessageBody": "{\"body\": \"é ☃\"}", "DelaySeconds": 3,
              "MessageAttributes": {"a": {"DataType": "String", "StringValue": "v"}}}
    recorder.replies = [(200, {"MessageId": "m1", "MD5OfMessageBody": "x"})] * 2
    assert client.send_message(**params)["MessageId"] == "m1"
    reply = _calls(client, token="tok").send_message(**params)
    assert reply == {"MessageId": "m1", "MD5OfMessageBody": "x"}
    theirs, ours = recorder.requests
    assert recorder.by_botocore() == [True, False]
    assert json.loads(ours["body"]) == json.loads(theirs["body"])
    assert ours["path"] == theirs["path"]
    assert _signed_headers(ours) == _signed_headers(theirs)
    for header in (*_signed_headers(theirs).split(";"), "user-agent"):
        if header != "x-amz-date":
            assert ours["headers"][header] == theirs["headers"][header], header


def test_batch_calls_go_by_hand_and_return_sqs_answer(recorder: Recorder) -> None:
    calls = _calls(_client(recorder.endpoint))
    recorder.replies = [(200, {"Successful": [{"Id": "0"}], "Failed": [{"Id": "1"}]}),
                        (200, {"Successful": [{"Id": "0"}]})]
    sent = calls.send_message_batch(QueueUrl=QUEUE, Entries=[
        {"Id": "0", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "d"},
        {"Id": "1", "MessageBody": "b", "MessageGroupId": "h", "MessageDeduplicationId": "e"}])
    deleted = calls.delete_message_batch(QueueUrl=QUEUE,
                                         Entries=[{"Id": "0", "ReceiptHandle": "r"}])
    assert sent["Failed"] == [{"Id": "1"}] and deleted == {"Successful": [{"Id": "0"}]}
    assert recorder.by_botocore() == [False, False]
    assert [r["headers"]["x-amz-target"] for r in recorder.requests] == [
        "AmazonSQS.SendMessageBatch", "AmazonSQS.DeleteMessageBatch"]


def test_an_sqs_error_is_botocores_to_raise(recorder: Recorder) -> None:
    calls = _calls(_client(recorder.endpoint))
    missing = (400, {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "gone"})
    recorder.replies = [missing, missing]
    with pytest.raises(ClientError) as raised:
        calls.send_message(QueueUrl=QUEUE, MessageBody="x")
    # the code kombu and botocore's modelled exceptions know SQS's errors by
    assert raised.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert recorder.by_botocore() == [False, True]


def test_a_dropped_connection_is_sent_again_through_botocore(recorder: Recorder) -> None:
    calls = _calls(_client(recorder.endpoint))
    recorder.replies = [None, (200, {"MessageId": "m2"})]
    assert calls.send_message(QueueUrl=QUEUE, MessageBody="x")["MessageId"] == "m2"
    recorder.replies = [(200, {"MessageId": "m3"})]  # and the next call opens a new one
    assert calls.send_message(QueueUrl=QUEUE, MessageBody="y")["MessageId"] == "m3"
    assert recorder.by_botocore() == [False, True, False]


def test_an_unreachable_endpoint_raises_what_botocore_raises() -> None:
    from botocore.exceptions import EndpointConnectionError

    calls = _calls(_client("http://127.0.0.1:9"))
    with pytest.raises(EndpointConnectionError):
        calls.delete_message_batch(QueueUrl=QUEUE, Entries=[{"Id": "0", "ReceiptHandle": "r"}])


@pytest.mark.parametrize(("params", "botocore_sends"), [
    ({"QueueUrl": QUEUE, "MessageBody": "x",
      "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": b"\x00"}}}, True),
    ({"QueueUrl": QUEUE, "MessageBody": "x", "MessageSystemAttributes": {}}, True),
    ({"QueueUrl": QUEUE, "MessageBody": "x", "DelaySeconds": "3"}, False),
    ({"QueueUrl": QUEUE, "MessageBody": 5}, False),
])
def test_other_shapes_are_left_to_botocore(recorder: Recorder, params: dict[str, Any],
                                           botocore_sends: bool) -> None:
    from botocore.exceptions import ParamValidationError

    assert not plain_call("SendMessage", params)
    calls = _calls(_client(recorder.endpoint))
    if botocore_sends:
        calls.send_message(**params)
        assert recorder.by_botocore() == [True]
    else:  # botocore's validation refuses it before anything is sent, as it always did
        with pytest.raises(ParamValidationError):
            calls.send_message(**params)
        assert recorder.requests == []


def test_plain_shapes_are_recognised() -> None:
    assert plain_call("SendMessage", {"QueueUrl": QUEUE, "MessageBody": "x",
                                      "MessageGroupId": "g", "MessageDeduplicationId": "d"})
    assert not plain_call("SendMessage", {"QueueUrl": QUEUE})
    assert plain_call("DeleteMessageBatch", {"QueueUrl": QUEUE,
                                             "Entries": [{"Id": "0", "ReceiptHandle": "r"}]})
    assert not plain_call("DeleteMessageBatch", {"QueueUrl": QUEUE, "Entries": []})
    assert not plain_call("DeleteMessageBatch", {"QueueUrl": QUEUE, "Entries": [
        {"Id": str(n), "ReceiptHandle": "r"} for n in range(11)]})
    assert not plain_call("SendMessageBatch", {"QueueUrl": QUEUE,
                                               "Entries": [{"MessageBody": "x"}]})


def test_a_forked_child_opens_its_own_connection(recorder: Recorder,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _calls(_client(recorder.endpoint))
    parents = calls._connection()
    calls._release(parents)
    assert calls._connection() is parents  # kept alive, reused
    calls._release(parents)
    monkeypatch.setattr(wire.os, "getpid", lambda: -1)  # what a prefork child sees
    childs = calls._connection()
    assert childs is not parents
    assert parents.sock is not None  # the parent's socket is left alone
    childs.close()
    monkeypatch.undo()
    parents.close()


def test_threads_borrow_connections_and_close_leaves_none_open(recorder: Recorder) -> None:
    calls = _calls(_client(recorder.endpoint))
    barrier = threading.Barrier(4)
    recorder.replies = [(200, {"MessageId": str(n)}) for n in range(8)]

    def send(n: int) -> None:
        barrier.wait()
        calls.send_message(QueueUrl=QUEUE, MessageBody=str(n))
        calls.send_message(QueueUrl=QUEUE, MessageBody=str(n))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recorder.requests) == 8 and recorder.by_botocore() == [False] * 8
    idle = list(calls._idle)
    assert 1 <= len(idle) <= 4  # at most one per thread at a time, all handed back
    calls.close()
    assert all(conn.sock is None for conn in idle) and calls._idle == []


def test_every_other_call_is_the_clients(recorder: Recorder) -> None:
    client = _client(recorder.endpoint)
    calls = _calls(client)
    assert calls.client is client
    assert calls.get_queue_url == client.get_queue_url
    assert calls.meta is client.meta


def test_tls_verifies_against_botocores_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.httpsession import get_cert_path

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    context = SignedCalls._tls()
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
    assert get_cert_path(True).endswith(".pem")
    # AWS_CA_BUNDLE is honoured as botocore honours it (a missing one: botocore's call)
    monkeypatch.setenv("AWS_CA_BUNDLE", "/nonexistent/bundle.pem")
    with pytest.raises(FileNotFoundError):
        SignedCalls._tls()


@contextmanager
def answering(answer: bytes) -> Iterator[signed.Connection]:
    """A bare connection whose peer has sent `answer` and hung up."""
    ours, theirs = socket.socketpair()
    with theirs:
        theirs.sendall(answer)
        theirs.shutdown(socket.SHUT_WR)
        conn = signed.Connection(ours)
        try:
            yield conn
        finally:
            conn.close()


@pytest.mark.parametrize(("answer", "expected"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", (200, b"hello", True)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nTrailer: t\r\n\r\n", (200, b"hello", True)),
    (b"HTTP/1.1 400 Bad\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
     (400, b"{}", False)),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", (200, b"ok", False)),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
     (200, b"ok", True)),
    (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", (200, b"until the end", False)),
])
def test_the_bare_connection_reads_what_http_allows(answer: bytes,
                                                    expected: tuple[int, bytes, bool]) -> None:
    with answering(answer) as conn:
        assert conn.exchange(b"POST / HTTP/1.1\r\n\r\n") == expected
    assert conn.sock is None


@pytest.mark.parametrize("answer", [
    b"", b"SMTP ready\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
])
def test_an_answer_it_cannot_read_raises_for_botocore_to_take_over(answer: bytes) -> None:
    import http.client

    with answering(answer) as conn, pytest.raises(http.client.HTTPException):
        conn.exchange(b"POST / HTTP/1.1\r\n\r\n")


def test_a_blocking_receive_is_the_request_botocore_builds(recorder: Recorder) -> None:
    """Flower's and `celery inspect`'s consumers receive without an event loop."""
    client = _client(recorder.endpoint)
    params = {"QueueUrl": QUEUE, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1,
              "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
              "MessageAttributeNames": ["All"]}
    answer = {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "MD5OfBody": "x",
                            "Body": "{\"a\": 1}",
                            "Attributes": {"ApproximateReceiveCount": "2"}}]}
    recorder.replies = [(200, answer)] * 2
    theirs_reply = client.receive_message(**params)
    ours_reply = _calls(client).receive_message(**params)
    assert ours_reply["Messages"] == theirs_reply["Messages"] == answer["Messages"]
    theirs, ours = recorder.requests
    assert recorder.by_botocore() == [True, False]
    assert json.loads(ours["body"]) == json.loads(theirs["body"])
    assert _signed_headers(ours) == _signed_headers(theirs)
    for header in _signed_headers(theirs).split(";"):
        if header != "x-amz-date":
            assert ours["headers"][header] == theirs["headers"][header], header


def test_a_received_binary_attribute_is_decoded_as_botocore_decodes_it(
        recorder: Recorder) -> None:
    client = _client(recorder.endpoint)
    answer = {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "MD5OfBody": "x",
                            "Body": "b", "MessageAttributes": {
                                "blob": {"DataType": "Binary", "BinaryValue": "AAEC/w=="},
                                "text": {"DataType": "String", "StringValue": "v"}}}]}
    recorder.replies = [(200, answer)] * 2
    theirs = client.receive_message(QueueUrl=QUEUE, MessageAttributeNames=["All"])
    ours = _calls(client).receive_message(QueueUrl=QUEUE, MessageAttributeNames=["All"])
    assert recorder.by_botocore() == [True, False]
    assert ours["Messages"] == theirs["Messages"]
    assert ours["Messages"][0]["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\x02\xff"


@pytest.mark.parametrize("params", [
    {"QueueUrl": QUEUE, "MaxNumberOfMessages": "10"},  # a string: botocore refuses it
    {"QueueUrl": QUEUE, "MessageAttributeNames": "All"},
    {"QueueUrl": QUEUE, "Unknown": 1},
])
def test_a_receive_of_another_shape_is_botocores_to_refuse(recorder: Recorder,
                                                           params: dict[str, Any]) -> None:
    calls = _calls(_client(recorder.endpoint))
    with pytest.raises(ParamValidationError):
        calls.receive_message(**params)
    assert recorder.requests == []  # refused before anything was sent


def test_a_receive_botocore_would_coerce_is_sent_by_botocore(recorder: Recorder) -> None:
    recorder.replies = [(200, {})]
    _calls(_client(recorder.endpoint)).receive_message(QueueUrl=QUEUE, WaitTimeSeconds=True)
    assert recorder.by_botocore() == [True]
