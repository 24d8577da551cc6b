"""Monitoring commands: flower, metrics, monitor, janitor."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table

from pipeline.cli.common import console


@click.command()
def flower() -> None:
    """Run Flower (hardened: pipeline.monitoring.flower) with the address, port and auth
    from settings.

    Basic auth unless PIPELINE_FLOWER_UNAUTHENTICATED_API is set (loopback only);
    without PIPELINE_FLOWER_BASIC_AUTH a password is made up and printed once.
    Workers send events by configuration, so Flower's own "enable events"
    broadcast every 5 s is switched off.
    """
    import secrets
    import sys

    from config.settings import load_settings

    s = load_settings()
    args = [sys.executable, "-m", "pipeline.monitoring.flower", "-A", "pipeline.app", "flower",
            f"--address={s.flower_address}", f"--port={s.flower_port}",
            "--enable_events=False", "--inspect_timeout=3000"]
    if s.flower_unauthenticated_api:  # Settings allow it on loopback only
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
        click.echo(f"Flower on http://{s.flower_address}:{s.flower_port} without "
                   "authentication (loopback; cross-site requests refused)", err=True)
    else:
        os.environ.pop("FLOWER_UNAUTHENTICATED_API", None)
        auth = s.flower_basic_auth
        if auth is None:
            auth = f"pipeline:{secrets.token_urlsafe(12)}"
            click.echo(f"Flower on http://{s.flower_address}:{s.flower_port}: user pipeline, "
                       f"password {auth.split(':', 1)[1]} (set PIPELINE_FLOWER_BASIC_AUTH "
                       "to choose one)", err=True)
        args.append(f"--basic-auth={auth}")
    os.execv(args[0], args)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def janitor(as_json: bool) -> None:
    """Remove event, mailbox and reply queues whose owner is gone, and dead SNS
    subscriptions (workers do this at start and every lease period too)."""
    from config.settings import load_settings
    from pipeline.monitoring.janitor import sweep_with_settings

    report = sweep_with_settings(load_settings())
    if as_json:
        click.echo(json.dumps(report.__dict__, indent=2))
        return
    for name in report.queues_deleted:
        console.print(f"deleted queue {name}")
    for arn in report.subscriptions_removed:
        console.print(f"removed subscription {arn}")
    console.print(f"{report.queues_kept} live transient queue(s) kept")


@click.command()
@click.option("--address", default=None, help="Default: PIPELINE_METRICS_ADDRESS.")
@click.option("--port", type=int, default=None, help="Default: PIPELINE_METRICS_PORT.")
def metrics(address: str | None, port: int | None) -> None:
    """Serve Prometheus metrics: queues, dead letters, steps, breakers, stuck products."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import Collector, CollectorRegistry

    from pipeline.monitoring.metrics import prometheus_families, snapshot
    from pipeline.runtime import get_runtime

    rt = get_runtime()

    class Figures(Collector):
        def collect(self) -> Any:
            return prometheus_families(snapshot(rt))

    registry = CollectorRegistry()
    registry.register(Figures())
    host = address or rt.settings.metrics_address
    if host not in ("127.0.0.1", "localhost", "::1") and not rt.settings.metrics_public:
        raise click.UsageError(f"--address {host} is not loopback: set PIPELINE_METRICS_PUBLIC="
                               "true to serve metrics (no authentication) beyond this host")
    bound = port if port is not None else rt.settings.metrics_port
    start_http_server(bound, addr=host, registry=registry)
    click.echo(f"metrics on http://{host}:{bound}/metrics", err=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        time.sleep(3600)


@click.command()
@click.option("--once", is_flag=True, help="Print one snapshot and exit.")
@click.option("--json", "as_json", is_flag=True, help="One snapshot as JSON.")
@click.option("--interval", type=click.FloatRange(min=0.5), default=2.0, show_default=True)
def monitor(once: bool, as_json: bool, interval: float) -> None:
    """A live table of queues, dead letters, steps, breakers and stuck products."""
    from pipeline.monitoring.metrics import snapshot
    from pipeline.runtime import get_runtime

    rt = get_runtime()
    if as_json:
        click.echo(json.dumps(snapshot(rt).as_dict(), indent=2, default=str))
        return
    if once:
        console.print(_render(snapshot(rt)))
        return
    with Live(_render(snapshot(rt)), console=console, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_render(snapshot(rt)))
        except KeyboardInterrupt:
            pass


def _render(snap: Any) -> Group:
    queues = Table("queue", "waiting", "in flight", "delayed", "oldest (s)",
                   title=f"queues at {snap.taken_at[11:19]} UTC")
    for q in snap.queues:
        style = "red" if q.dead_letter and q.depth else None
        age = "?" if q.oldest_age_s is None else f"{q.oldest_age_s:.1f}"
        queues.add_row(q.queue, str(q.depth), str(q.in_flight), str(q.delayed), age,
                       style=style)
    steps = Table("step", "runs/s (1 min)", "p50 (s)", "p95 (s)", "outcomes (recent)",
                  title="steps")
    for s in snap.steps:
        steps.add_row(s.step, f"{s.per_second:.2f}", _seconds(s.p50_s), _seconds(s.p95_s),
                      ", ".join(f"{k} {v}" for k, v in sorted(s.runs.items())))
    side = Table("what", "state", title="breakers, stuck products, orders")
    for b in snap.breakers:
        side.add_row(f"breaker {b['name']}", f"{b['state']} ({b['failures']} failures)",
                     style="red" if b["state"] != "CLOSED" else None)
    for p in snap.products_in_flight:
        side.add_row(f"product {p['productId']}",
                     f"{p['inFlight']} in flight, oldest {p['oldestAgeSeconds']:.1f}s")
    side.add_row("orders", ", ".join(f"{k} {v}" for k, v in sorted(
        snap.orders_by_status.items())))
    for c in snap.consumers:
        side.add_row(f"consumer {c['lane']} {c['queue']}", f"last receive {c['ageSeconds']:.0f}s "
                     f"ago ({c['host']})", style="red" if c["ageSeconds"] > 60 else None)
    parts: list[Any] = [queues, steps, side]
    parts += [f"[yellow]{note}[/]" for note in snap.notes]
    return Group(*parts)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@click.command()
def relay() -> None:
    """Publish outbox events (order status, payments, inventory alerts, health) to SNS."""
    from pipeline import tracing
    from pipeline.ops.relay import Relay
    from pipeline.runtime import get_runtime

    tracing.start("relay")
    worker = Relay(get_runtime())
    worker.topic_arn("order-status")  # fail at start, naming the fix, if unprovisioned
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    click.echo("relaying outbox events to SNS", err=True)
    worker.run()
    tracing.flush()
    click.echo(f"stopped after publishing {worker.published} event(s)", err=True)


MONITORING_COMMANDS = [flower, janitor, metrics, monitor, relay]
