"""`pipeline stock`: catalog, stock levels, restocks, FIFO updates in flight, history."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

import click
from rich.table import Table

from pipeline.cli.common import _dump, _fail, console

__all__ = ["stock"]


@click.group()
def stock() -> None:
    """Catalog and stock."""


@stock.command("set")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=0))
@click.option("--price", type=Decimal, default=None, help="Required for a new product.")
def stock_set(sku: str, quantity: int, price: Decimal | None) -> None:
    """Set SKU's available quantity (adds the product when unknown)."""
    from pipeline.runtime import get_runtime

    try:
        level = get_runtime().store.set_stock(sku, quantity, price=price)
    except ValueError as error:
        _fail(str(error))
    click.echo(f"{sku}: {level}")


@stock.command("show")
@click.option("--json", "as_json", is_flag=True)
def stock_show(as_json: bool) -> None:
    from pipeline.runtime import get_runtime

    rows = get_runtime().store.stock_levels()
    if as_json:
        _dump([asdict(r) for r in rows])
        return
    table = Table("product", "price", "available", "reserved", "shipped")
    for r in rows:
        table.add_row(r.sku, str(r.price), str(r.available), str(r.reserved), str(r.shipped))
    console.print(table)


@stock.command("restock")
@click.argument("sku")
@click.argument("quantity", type=click.IntRange(min=1))
@click.option("--id", "restock_id", default=None, help="Idempotency: a repeated id is a no-op.")
def stock_restock(sku: str, quantity: int, restock_id: str | None) -> None:
    """Add delivered stock, applied in SKU's FIFO order behind earlier updates."""
    from pipeline.api import restock

    try:
        click.echo(restock(sku, quantity, restock_id=restock_id))
    except ValueError as error:
        _fail(str(error))


@stock.command("inflight")
@click.option("--json", "as_json", is_flag=True)
def stock_inflight(as_json: bool) -> None:
    """Per product: FIFO updates published and not yet applied, and the oldest's age."""
    from pipeline.runtime import get_runtime

    rows = get_runtime().store.in_flight()
    if as_json:
        _dump([r.as_json() for r in rows])
        return
    table = Table("product", "in flight", "oldest age (s)")
    for r in rows:
        table.add_row(r.sku, str(r.updates), f"{r.oldest_age_s:.1f}")
    console.print(table if rows else "nothing in flight")


@stock.command("history")
@click.argument("sku")
@click.option("--json", "as_json", is_flag=True)
def stock_history(sku: str, as_json: bool) -> None:
    """Movements in the order they were applied, with each one's SQS sequence number."""
    from pipeline.runtime import get_runtime

    rows = get_runtime().store.stock_history(sku)
    if as_json:
        _dump([asdict(r) for r in rows])
        return
    table = Table("#", "kind", "Δavailable", "Δreserved", "Δshipped", "order", "sqs sequence",
                  "applied")
    for r in rows:
        table.add_row(str(r.id), r.kind, str(r.delta_available), str(r.delta_reserved),
                      str(r.delta_shipped), r.order_id or "", r.sqs_sequence or "",
                      str(r.applied_at)[:23])
    console.print(table)


@stock.command("expire-holds")
def stock_expire_holds() -> None:
    """Release stock held past PIPELINE_RESERVATION_HOLD_S by orders stuck before shipment."""
    from pipeline import steps
    from pipeline.runtime import get_runtime
    from pipeline.services import inventory

    rt = get_runtime()
    store = rt.store
    expired = 0
    for order_id in inventory.stale_holds(store):
        if inventory.expire_hold(store, order_id):
            steps.advance(rt.step_context(), order_id)
            expired += 1
            click.echo(f"{order_id}: hold expired, compensating")
    click.echo(f"{expired} order(s) expired")
