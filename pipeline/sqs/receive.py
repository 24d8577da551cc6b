"""kombu's asynchronous ReceiveMessage, signed by hand and read without botocore's parser.

A worker's receives go through kombu's own HTTP client (pycurl, on the event
loop), but kombu signs each request with botocore's RequestSigner and reads each
answer with botocore's response parser: 13 % of the inventory lane's loop CPU
went to the signing alone (a FIFO lane receives ~1-2 messages a request). Here the
request is the one kombu builds, signed by pipeline.sqs.wire's SigV4 (the tests
compare it with botocore's), and a 200 answer is JSON read as it is: SQS's JSON
protocol needs no shape-driven parsing for string attributes. An answer with
message attributes (binary values are base64 to be decoded) or anything but a
200 goes to kombu and botocore as before.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection

from pipeline.sqs.signed import CONTENT_TYPE, TARGET_PREFIX, SignedCalls

__all__ = ["SignedReceives"]

RECEIVE = "ReceiveMessage"


class _Request(NamedTuple):
    """What kombu's _mexe reads of a prepared request."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str]


class SignedReceives(AsyncSQSConnection):
    """kombu's async SQS connection over a SignedCalls client."""

    def __init__(self, sqs_connection: SignedCalls, **kwargs: Any) -> None:
        super().__init__(sqs_connection, **kwargs)
        self._signer = sqs_connection

    def make_request(self, operation_name: str, params: dict[str, Any], queue_url: str,
                     verb: str, callback: Any = None, protocol_params: Any = None) -> Any:
        if operation_name != RECEIVE or self.sqs_connection.meta.service_model.protocol != "json":
            return super().make_request(operation_name, params, queue_url, verb,
                                        callback=callback, protocol_params=protocol_params)
        body = self._build_make_request_params(params=params, protocol_params=protocol_params,
                                               protocol="json")
        payload = json.dumps({**body, "QueueUrl": queue_url}).encode()
        headers = self._signer.signed({"content-type": CONTENT_TYPE,
                                       "x-amz-target": f"{TARGET_PREFIX}.{RECEIVE}"}, payload)
        del headers["host"]  # the HTTP client's, from the URL (as botocore leaves it)
        headers["content-length"] = str(len(payload))
        request = _Request("POST", self.sqs_connection._endpoint.host, payload, headers)
        return self._mexe(request, callback=callback)

    def _on_list_ready(self, parent: Any, markers: Any, operation: str, response: Any) -> Any:
        if operation == RECEIVE and response.status == self.STATUS_CODE_OK:
            try:
                parsed = json.loads(response.read() or b"{}")
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and all(
                    isinstance(m, dict) and "MessageAttributes" not in m
                    for m in parsed.get("Messages") or []):
                return parsed
        return super()._on_list_ready(parent, markers, operation, response)
