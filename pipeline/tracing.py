"""OpenTelemetry: one trace per order, across every process and every hop.

Off unless the standard variables ask for it: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER` (`otlp`, `console`);
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` wins. Everything else
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`, headers, ...) is the
SDK's own. Off, nothing of OpenTelemetry is imported and every function here
returns at once.

The shape of an order's trace:
* `order.submit` (the producer) is the root; its context is stored with the order
  (`orders.trace_context`), so whatever later acts on the order from outside a
  step (a re-drive by the reconciler, a cancellation) continues the same trace.
* Each hop is Celery's own producer span (`apply_async/<task>`) and consumer span
  (`run/<task>`, opentelemetry-instrumentation-celery), the context carried in the
  task headers, which on SQS travel inside the body: an in-place retry, a deferral
  and a DLQ redrive resend the body unchanged, so they stay in the trace. The
  fan-out's lines are children of the payment step that published them (not span
  links): a line belongs to exactly one order and its outcome is the order's.
* An outbox event stores the context it was recorded in; the relay publishes it
  as the `traceparent` SNS message attribute of a producer span that continues
  that context, so a subscriber's work joins the order's trace.
* Every span carries `order.id`: from the baggage that travels with the headers,
  or from its parent span in this process.

Client spans with no parent (a worker's batched deletes, the relay's polls, the
store's queries outside any step) are not sampled: they belong to no order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

__all__ = ["ORDER_ID", "STEP", "continued", "current_traceparent", "enabled_by_environment",
           "flush", "is_on", "order_scope", "producer_spans", "start", "submitted"]

ORDER_ID = "order.id"
STEP = "pipeline.step"
MAX_ORDER_ID = 64  # baggage arrives in message headers: untrusted, so bounded
_lock = threading.Lock()
_on: bool | None = None  # decided once per process tree (a forked child inherits it)


def enabled_by_environment(env: Mapping[str, str] = os.environ) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def is_on() -> bool:
    return bool(_on)


def start(role: str = "producer") -> bool:
    """Instrument this process once, when it starts (never at import); returns whether
    tracing is on. A prefork child inherits it: the SDK's batch processor restarts
    its export thread after a fork."""
    global _on
    with _lock:
        if _on is None:
            _on = enabled_by_environment()
            if _on:
                _install(role)
        return _on


def _install(role: str) -> None:
    from opentelemetry import trace
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased

    attributes = {"pipeline.role": role}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = "order-pipeline"
    provider = TracerProvider(resource=Resource.create(attributes),
                              sampler=ParentBased(root=_no_orphan_clients()))
    provider.add_span_processor(_order_id_processor())
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    # The standard switch of the Python distro: e.g. "sqlalchemy" leaves statements
    # out (the bench's "tracing on" row says what each costs).
    disabled = {name.strip() for name in
                os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if "celery" not in disabled:
        CeleryInstrumentor().instrument()
    if "botocore" not in disabled:
        BotocoreInstrumentor().instrument()
    if "sqlalchemy" in disabled:
        return
    # Engines created from now on are traced. The instrumentation declares
    # sqlalchemy < 2.1 while 2.1 keeps the engine events it hooks (the tracing
    # test checks that statements are traced), so its version check is skipped.
    SQLAlchemyInstrumentor().instrument(skip_dep_check=True)


def _no_orphan_clients() -> Any:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoOrphanClients(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str,
                          kind: Any = None, attributes: Any = None, links: Any = None,
                          trace_state: Any = None) -> SamplingResult:
            if kind is SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "NoOrphanClients"

    return NoOrphanClients()


def _order_id_processor() -> Any:
    from opentelemetry import baggage, context, trace
    from opentelemetry.sdk.trace import SpanProcessor

    class OrderIdProcessor(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            ctx = parent_context if parent_context is not None else context.get_current()
            order_id = baggage.get_baggage(ORDER_ID, ctx)
            if order_id is None:
                order_id = (getattr(trace.get_current_span(ctx), "attributes", None)
                            or {}).get(ORDER_ID)
            if order_id is not None:
                span.set_attribute(ORDER_ID, str(order_id)[:MAX_ORDER_ID])

    return OrderIdProcessor()


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered (a prefork child may exit without running atexit)."""
    if _on:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush(timeout_ms)


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("pipeline")


def current_traceparent() -> str | None:
    """The current span's W3C traceparent, to store beside a row; None when off."""
    if not _on:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def _scope(order_id: str, name: str | None, traceparent: str | None,
           kind: str = "INTERNAL", step: str | None = None) -> Iterator[str | None]:
    from opentelemetry import baggage, context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    order_id = order_id[:MAX_ORDER_ID]
    ctx = (TraceContextTextMapPropagator().extract({"traceparent": traceparent})
           if traceparent else context.get_current())
    token = context.attach(baggage.set_baggage(ORDER_ID, order_id, ctx))
    try:
        if name is None:
            current = trace.get_current_span()
            if current.is_recording():
                current.set_attribute(ORDER_ID, order_id)
                if step:
                    current.set_attribute(STEP, step[:MAX_ORDER_ID])
            yield current_traceparent()
        else:
            with _tracer().start_as_current_span(name, kind=getattr(trace.SpanKind, kind),
                                                 attributes={ORDER_ID: order_id}):
                yield current_traceparent()
    finally:
        context.detach(token)


def order_scope(order_id: str, step: str | None = None) -> AbstractContextManager[str | None]:
    """Within a step: the current span and everything under it, and every message
    published, carry the order's id; the current span also names the step
    (`reserve:SKU-1`, as the order's timeline does)."""
    return _scope(order_id, None, None, step=step) if _on else nullcontext()


def submitted(order_id: str) -> AbstractContextManager[str | None]:
    """The root of an order's trace; yields its traceparent, to store with the order."""
    return _scope(order_id, "order.submit", None, "PRODUCER") if _on else nullcontext()


def continued(name: str, order_id: str,
              stored: Callable[[], str | None]) -> AbstractContextManager[str | None]:
    """Work on an order from outside its steps (a re-drive, a cancellation), as a span
    in the order's own trace; `stored` reads its traceparent (only when tracing is on)."""
    return _scope(order_id, name, stored(), "PRODUCER") if _on else nullcontext()


@contextmanager
def producer_spans(events: Sequence[tuple[str | None, str | None, str]],
                   ) -> Iterator[list[dict[str, str]]]:
    """One producer span per event `(stored traceparent, order id, name)`, each
    continuing the context its event was recorded in; yields, per event, the
    attributes that carry its span's context (empty when off). Other
    instrumentation's propagation is suppressed meanwhile, so it cannot overwrite
    them with the publisher's own context."""
    if not _on:
        yield [{} for _ in events]
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.utils import suppress_instrumentation
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    spans, carriers = [], []
    for traceparent, order_id, name in events:
        parent = propagator.extract({"traceparent": traceparent}) if traceparent else None
        span = _tracer().start_span(name, context=parent, kind=trace.SpanKind.PRODUCER,
                                    attributes={ORDER_ID: order_id[:MAX_ORDER_ID]}
                                    if order_id else None)
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=trace.set_span_in_context(span))
        spans.append(span)
        carriers.append(carrier)
    try:
        with suppress_instrumentation():
            yield carriers
    finally:
        for span in spans:
            span.end()

