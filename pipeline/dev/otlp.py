"""A small OTLP/HTTP trace receiver on 127.0.0.1, and a text rendering of a trace.

What the tracing test and the bench's "tracing on" row export to: the real
exporter of every process (opentelemetry-exporter-otlp-proto-http) posts real
protobuf to it, so nothing of the export path is faked.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ExportedSpan", "SpanReceiver", "receiving", "render_tree"]

MAX_BODY = 32 * 1024 * 1024
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER",
         5: "CONSUMER"}


@dataclass(frozen=True)
class ExportedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    start_ns: int
    attributes: dict[str, Any] = field(hash=False)
    service: str = ""
    role: str = ""


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def _decode(body: bytes) -> list[ExportedSpan]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ExportedSpan(
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                    span.name, KINDS.get(span.kind, str(span.kind)), span.start_time_unix_nano,
                    {a.key: _value(a.value) for a in span.attributes},
                    str(resource.get("service.name", "")),
                    str(resource.get("pipeline.role", ""))))
    return spans


class SpanReceiver:
    """Collects every span posted to `endpoint` + /v1/traces."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ExportedSpan] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.path != "/v1/traces" or not 0 <= length <= MAX_BODY:
                    self.send_error(404 if self.path != "/v1/traces" else 413)
                    return
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = _decode(body)
                with receiver._lock:
                    receiver._spans.extend(spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="otlp-receiver")

    def start(self) -> SpanReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[ExportedSpan]:
        with self._lock:
            return list(self._spans)

    def count(self) -> int:
        with self._lock:
            return len(self._spans)

    def of_order(self, order_id: str) -> list[ExportedSpan]:
        return [s for s in self.spans() if s.attributes.get("order.id") == order_id]

    def env(self, **extra: str) -> dict[str, str]:
        """What a process needs to export here."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "200", **extra}


@contextmanager
def receiving() -> Iterator[SpanReceiver]:
    receiver = SpanReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def render_tree(spans: Iterable[ExportedSpan], *, skip_kinds: tuple[str, ...] = ("CLIENT",)
                ) -> str:
    """The spans as an indented tree, children in start order (CLIENT spans, the
    SQL statements and SQS calls, are left out unless `skip_kinds` is empty)."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[ExportedSpan]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in by_id else ""
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(span: ExportedSpan, depth: int) -> None:
        shown = span.kind not in skip_kinds
        if shown:
            step = span.attributes.get("pipeline.step")
            lines.append(f"{'  ' * depth}{span.name}{f' ({step})' if step else ''}  "
                         f"[{span.kind.lower()}, {span.role or span.service}]")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1 if shown else depth)

    for root in children.get("", []):
        walk(root, 0)
    return "\n".join(lines)
