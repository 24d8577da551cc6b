"""Tracing is decided by the standard OTEL_* variables, and off it costs nothing:
not one OpenTelemetry module is imported by a process that runs the pipeline."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config.settings import PROJECT_ROOT
from pipeline.dev.otlp import ExportedSpan, render_tree
from pipeline.tracing import enabled_by_environment


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "shop"}, False),  # naming a service exports nothing
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
])
def test_the_standard_variables_decide(env: dict[str, str], on: bool) -> None:
    assert enabled_by_environment(env) is on


def test_off_nothing_of_opentelemetry_is_imported() -> None:
    script = """
import sys
from pipeline import tracing
from pipeline.app import app
app.loader.import_default_modules()
from pipeline import api
from pipeline.ops import reconcile, relay
from pipeline.runtime import get_runtime
get_runtime().step_context()
assert tracing.start() is False
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print(loaded)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={**env, "PIPELINE_DATABASE_URL": "sqlite:///:memory:"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def span(span_id: str, parent: str, name: str, kind: str = "CONSUMER", start: int = 0,
         **attributes: str) -> ExportedSpan:
    return ExportedSpan("t" * 32, span_id, parent, name, kind, start, attributes,
                        role="worker")


def test_the_tree_nests_children_in_start_order_and_leaves_out_client_spans() -> None:
    spans = [span("b", "a", "run/second", start=3), span("a", "", "root", "PRODUCER"),
             span("c", "a", "run/first", start=1, **{"pipeline.step": "reserve:SKU-1"}),
             span("d", "c", "SELECT", "CLIENT", start=2), span("e", "d", "run/under", start=4)]
    assert render_tree(spans) == "\n".join([
        "root  [producer, worker]",
        "  run/first (reserve:SKU-1)  [consumer, worker]",
        "    run/under  [consumer, worker]",  # a client span's child moves up to its place
        "  run/second  [consumer, worker]",
    ])
