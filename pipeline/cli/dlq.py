"""`pipeline dlq`: depth, contents with reasons, redrive and purge of the DLQs."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from pipeline.cli.common import console


def _clients() -> tuple[Any, Any]:
    from pipeline.runtime import get_runtime

    rt = get_runtime()
    return rt.settings, rt.sqs


def _queue_or_fail(queue: str) -> str:
    from pipeline.ops.dlq import resolve_queue

    try:
        return resolve_queue(queue).name
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="QUEUE") from None


@click.group()
def dlq() -> None:
    """Dead-letter queues: depth, contents, redrive, purge."""


@dlq.command("ls")
@click.option("--json", "as_json", is_flag=True)
def dlq_ls(as_json: bool) -> None:
    """Depth of every DLQ."""
    from pipeline.ops.dlq import depths

    rows = depths(*_clients())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("queue", "dead-letter queue", "messages", "in flight")
    for r in rows:
        style = "red" if r["depth"] or r["inFlight"] else ""
        table.add_row(r["queue"], r["dlq"], str(r["depth"]), str(r["inFlight"]), style=style)
    console.print(table)


@dlq.command("show")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def dlq_show(queue: str, limit: int, as_json: bool) -> None:
    """Dead letters of QUEUE (a queue or its DLQ) with reasons and order ids; left in place."""
    from pipeline.ops.dlq import peek

    letters = peek(*_clients(), _queue_or_fail(queue), limit=limit)
    if as_json:
        click.echo(json.dumps([x.summary() for x in letters], indent=2))
        return
    table = Table("message", "task", "order", "step", "attempts", "reason", "last failure")
    for x in letters:
        table.add_row(x.message_id[:12], x.task or "?", x.order_id or "?", x.step or "",
                      x.attempts or "", x.reason, (x.last_failure or "")[:19])
    console.print(table if letters else "no dead letters")


@dlq.command("redrive")
@click.argument("queue")
@click.option("--order", "order_id", default=None, help="Only this order's dead letters.")
@click.option("--all", "everything", is_flag=True, help="Every dead letter of QUEUE.")
def dlq_redrive(queue: str, order_id: str | None, everything: bool) -> None:
    """Send dead letters back to QUEUE, unchanged (same task id, same order)."""
    from pipeline.ops.dlq import redrive

    if bool(order_id) == everything:
        raise click.UsageError("give exactly one of --order ID or --all")
    from pipeline.errors import OrderNotFound
    from pipeline.runtime import get_runtime

    moved = redrive(*_clients(), _queue_or_fail(queue), order_id=order_id)
    store = get_runtime().store
    for x in moved:
        note = ""
        if x.order_id:
            try:
                status = store.status(x.order_id)
                if status.terminal:  # harmless: the step finds its order ended
                    note = f" (order already {status}: its step will find nothing to do)"
            except OrderNotFound:
                note = " (no such order: it will be dead-lettered again)"
        click.echo(f"redriven {x.message_id} {x.task or '?'} order {x.order_id or '?'}{note}")
    click.echo(f"{len(moved)} message(s) sent back to {queue}")


@dlq.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Required: the messages are deleted for good.")
def dlq_purge(queue: str, yes: bool) -> None:
    """Delete every message in QUEUE's DLQ."""
    from pipeline.ops.dlq import purge

    if not yes:
        raise click.UsageError("purging deletes every dead letter for good: add --yes")
    click.echo(f"purged {purge(*_clients(), _queue_or_fail(queue))}")
