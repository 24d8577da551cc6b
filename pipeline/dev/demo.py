"""`pipeline demo`: the whole system on the local emulator, with a mixed set of orders."""

from __future__ import annotations

import os
import time
import uuid
from decimal import Decimal
from statistics import quantiles
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from config.settings import VAR_DIR, load_settings
from config.topology import QUEUES
from pipeline.dev.procfile import ProcessGroup, read_procfile
from pipeline.domain import TERMINAL
from pipeline.ops.audit import audit
from pipeline.runtime import get_runtime

console = Console()

CATALOG = {  # sku: (price, stock)
    "SKU-BOOK": (Decimal("12.50"), 500),
    "SKU-MUG": (Decimal("8.00"), 500),
    "SKU-LAMP": (Decimal("45.00"), 300),
    "SKU-DESK": (Decimal("199.99"), 200),
    "SKU-PEN": (Decimal("1.25"), 1000),
    "SKU-RARE": (Decimal("999.00"), 1),  # runs out: out-of-stock orders
}
ADDRESS = {"line1": "1 Main St", "city": "Springfield", "state": "IL", "postalCode": "62701",
           "country": "US"}


def sample_order(kind: str, n: int) -> dict[str, Any]:
    """One order of a named kind; the demo cycles through the kinds."""
    def line(sku: str, qty: int) -> dict[str, Any]:
        return {"productId": sku, "quantity": qty, "price": str(CATALOG[sku][0])}

    items = [line("SKU-BOOK", 1 + n % 3)]
    token, address, priority = "tok_visa", dict(ADDRESS), "normal"
    if kind == "multi":
        items = [line("SKU-BOOK", 1), line("SKU-MUG", 2), line("SKU-PEN", 5)]
    elif kind == "vip":
        priority, items = "vip", [line("SKU-LAMP", 1), line("SKU-MUG", 1)]
    elif kind == "invalid":
        items = [{"productId": "SKU-BOOK", "quantity": 1, "price": "0.99"}]  # wrong price
    elif kind == "declined":
        token = "tok_decline"
    elif kind == "out_of_stock":
        items = [line("SKU-RARE", 1), line("SKU-PEN", 1)]
    elif kind == "undeliverable":
        address["postalCode"] = "00000"
        address["country"] = "NL"
        address.pop("state")
    total = sum(Decimal(i["price"]) * i["quantity"] for i in items)
    return {
        "orderId": f"demo-{uuid.uuid4().hex[:12]}", "customerId": f"cust-{n % 17}",
        "items": items, "totalAmount": str(total), "currency": "USD", "priority": priority,
        "payment": {"token": token}, "shippingAddress": address,
        "contact": {"email": f"customer{n % 17}@example.com"},
    }


KINDS = ("single", "multi", "vip", "single", "invalid", "multi", "declined", "out_of_stock",
         "single", "undeliverable")


def _endpoint_answers() -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        get_runtime().aws_client("sqs").list_queues(MaxResults=1)
        return True
    except (BotoCoreError, ClientError):
        return False


def wait_for_lanes(timeout: float = 60.0) -> None:
    """Send a probe to every queue and wait until a worker consumed each."""
    from pipeline.app import app
    from pipeline.keys import probe_key
    from pipeline.store import operations

    store = get_runtime().store
    token = uuid.uuid4().hex[:8]
    for spec in QUEUES:
        options: dict[str, Any] = {"queue": spec.name}
        if spec.is_fifo:
            options |= {"MessageGroupId": "probe", "MessageDeduplicationId": f"probe-{token}"}
        app.signature("tasks.notification.lane_probe", args=(token,)).apply_async(**options)
    pending = {spec.name for spec in QUEUES}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        keys = operations.claimed_like(store.engine, probe_key(token))  # one per consumed probe
        pending -= {key.split(":", 3)[2] for key in keys}
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"no worker consumed from {sorted(pending)} within {timeout:.0f}s; "
                           f"see {VAR_DIR / 'log'}")


def _progress(store: Any, ids: list[str]) -> Table:
    counts = store.count_by_status()
    table = Table("status", "orders", title=f"{len(ids)} orders submitted")
    for status, n in sorted(counts.items()):
        table.add_row(status, str(n))
    return table


def _latencies(store: Any, ids: set[str]) -> list[float]:
    return [(r.terminal_at - r.created_at).total_seconds()
            for r in store.list_orders(limit=100_000) if r.id in ids and r.terminal_at]


def run_demo(count: int, *, exit_when_done: bool, timeout: float) -> int:
    from pipeline.api import submit_order
    from pipeline.sqs.provision import provision, raise_on_conflicts, target
    from pipeline.store import create_schema

    settings = load_settings()
    rt = get_runtime()
    # A local demo: Flower without a password, on loopback, cross-site requests refused.
    group = ProcessGroup({**os.environ, "PIPELINE_FLOWER_UNAUTHENTICATED_API": "true"},
                         VAR_DIR / "log")
    lines = {line.name: line for line in read_procfile()}
    try:
        if settings.uses_emulator and not _endpoint_answers():
            console.print(f"starting the SQS emulator ({settings.sqs_endpoint_url})")
            group.start(lines.pop("sqs"))
            deadline = time.monotonic() + 20
            while not _endpoint_answers():
                if time.monotonic() > deadline or group.dead():
                    console.print("[red]the emulator did not start; see var/log/sqs.log[/]")
                    return 2
                time.sleep(0.2)
        else:
            lines.pop("sqs", None)
        console.print(f"provisioning prefix {settings.queue_prefix!r} on "
                      f"{target(settings, rt.aws_client('sts'))}")
        report = provision(settings, rt.aws_client("sqs"), rt.aws_client("sns"))
        raise_on_conflicts(report)
        create_schema(rt.store.engine)
        console.print(f"provisioned: {len(report.created)} created, "
                      f"{len(report.updated)} updated (prefix {settings.queue_prefix!r})")
        for line in lines.values():
            group.start(line)
        console.print(f"started {', '.join(lines)}; logs in {VAR_DIR / 'log'}")
        wait_for_lanes()
        for sku, (price, quantity) in CATALOG.items():
            rt.store.set_stock(sku, quantity, price=price)
        ids = [submit_order(sample_order(KINDS[n % len(KINDS)], n)) for n in range(count)]
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        with Live(_progress(rt.store, ids), console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                live.update(_progress(rt.store, ids))
                done = [r for r in rt.store.list_orders(limit=100_000)
                        if r.id in wanted and r.status in TERMINAL]
                if len(done) == len(wanted):
                    break
                if group.dead():
                    names = [r.line.name for r in group.dead()]
                    console.print(f"[red]process(es) exited: {names}; see var/log[/]")
                    break
                time.sleep(0.25)
        latencies = sorted(_latencies(rt.store, wanted))
        report_ = audit(rt.store)
        summary = Table("status", "orders", title="summary")
        for status, n in sorted(rt.store.count_by_status().items()):
            summary.add_row(status, str(n))
        console.print(summary)
        if len(latencies) >= 2:
            cuts = quantiles(latencies, n=100)
            console.print(f"latency submit→terminal: p50 {cuts[49]:.3f}s  p95 {cuts[94]:.3f}s  "
                          f"({len(latencies)} orders)")
        console.print("audit: " + ("[green]clean[/]" if report_.clean
                                   else "[red]" + "; ".join(report_.violations) + "[/]"))
        console.print(f"Flower: http://{settings.flower_address}:{settings.flower_port}   "
                      f"metrics: http://{settings.metrics_address}:{settings.metrics_port}"
                      "/metrics   live table: pipeline monitor")
        ok = len(latencies) == len(wanted) and report_.clean
        if exit_when_done:
            return 0 if ok else 1
        console.print("running; Ctrl-C to stop")
        while not group.dead():
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        group.stop()
