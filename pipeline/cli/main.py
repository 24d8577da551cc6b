"""The `pipeline` command. Every read command takes --json."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from typing import Any

import click
from rich.table import Table

from pipeline.cli.common import _dump, _fail, console, err
from pipeline.cli.dlq import dlq
from pipeline.cli.doctor import doctor
from pipeline.cli.monitor import MONITORING_COMMANDS
from pipeline.cli.stock import stock
from pipeline.errors import REPORTED, PipelineError
from pipeline.retry import is_transient_database_error


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except REPORTED as error:
            _fail(str(error))
        except Exception as error:
            # A locked or unreachable database is weather, not a bug: say so, once.
            if not is_transient_database_error(error):
                raise
            cause = getattr(error, "orig", None) or error
            first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            _fail(f"the database did not answer: {first}. The failed statement changed "
                  "nothing; try again (`pipeline doctor` checks the database)")


@click.group(cls=_Group)
def main() -> None:
    """Order pipeline on Celery + Amazon SQS."""


main.add_command(dlq)
main.add_command(stock)
main.add_command(doctor)
for _command in MONITORING_COMMANDS:
    main.add_command(_command)


# ------------------------------------------------------------------ infra
@main.command()
@click.option("--port", type=int, default=None, help="Default: PIPELINE_EMULATOR_PORT.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="SQLite persistence; default PIPELINE_EMULATOR_DATA_DIR.")
@click.option("--in-memory", is_flag=True, help="Keep no state on disk.")
def sqs(port: int | None, data_dir: str | None, in_memory: bool) -> None:
    """Run the local SQS+SNS emulator in the foreground (127.0.0.1 only)."""
    from pathlib import Path

    from config.settings import load_settings
    from pipeline.sqs.emulator import start_emulator

    settings = load_settings()
    directory = None if in_memory else Path(data_dir or settings.emulator_data_dir)
    emulator = start_emulator(port if port is not None else settings.emulator_port,
                              data_dir=directory, region=settings.aws_region)
    click.echo(f"SQS/SNS emulator ready at {emulator.endpoint} "
               f"(state: {directory or 'in memory'})", err=True)

    def _stop(*_: Any) -> None:
        emulator.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.exit(emulator.process.wait())


@main.command()
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when anything differs.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--alarms", is_flag=True,
              help="Also create/update the CloudWatch alarms (AWS only; see pipeline.monitoring"
                   ".alarms).")
def provision(check: bool, as_json: bool, alarms: bool) -> None:
    """Create or reconcile queues, DLQs, redrive policies, topics and the database."""
    from pipeline.runtime import get_runtime
    from pipeline.sqs.provision import provision as run
    from pipeline.store import create_schema

    rt = get_runtime()
    if not check:  # say what is about to change before changing it
        from pipeline.sqs.provision import target

        err.print(f"provisioning prefix {rt.settings.queue_prefix!r} on "
                  f"{target(rt.settings, rt.aws_client('sts'))}")
    report = run(rt.settings, rt.aws_client("sqs"), rt.aws_client("sns"), check=check)
    if not check:
        create_schema(rt.store.engine)
    if alarms and not check:
        _provision_alarms(rt)
    if as_json:
        _dump(report.__dict__)
    else:
        for label, items in (("created", report.created), ("updated", report.updated),
                             ("drift", report.drift), ("CONFLICT", report.conflicts)):
            for item in items:
                console.print(f"{label:>8}  {item}")
        if not (report.changed or report.drift or report.conflicts):
            console.print("up to date: every queue, DLQ and topic matches the topology")
    if report.conflicts or (check and report.drift):
        raise SystemExit(1)


def _provision_alarms(rt: Any) -> None:
    from pipeline.monitoring.alarms import alarm_specs, put_alarms

    if rt.settings.uses_emulator:
        names = [spec["AlarmName"] for spec in alarm_specs(rt.settings, "000000000000")]
        err.print(f"[yellow]not created:[/] the local emulator has no CloudWatch; on AWS "
                  f"these {len(names)} alarms would be: {', '.join(names)}")
        return
    account = rt.aws_client("sts").get_caller_identity()["Account"]
    for name in put_alarms(rt.settings, rt.aws_client("cloudwatch"), account):
        console.print(f"   alarm  {name}")


@main.command()
@click.option("--cloudformation", is_flag=True, help="Print the whole topology as a "
              "CloudFormation template (JSON): queues, DLQs, topics, alarms, a dashboard "
              "and the IAM managed policies (see README, Deploy to AWS).")
def topology(cloudformation: bool) -> None:
    """Print the queue table (markdown), as declared in config/topology.py."""
    from config.topology import markdown_table

    if cloudformation:
        from config.settings import load_settings
        from pipeline.ops.cloudformation import template

        _dump(template(load_settings()))
        return
    click.echo(markdown_table())


@main.command("iam-policy")
@click.option("--role", default=None, help="worker-LANE, producer, beat, relay, flower or "
              "operator; default: every role's policy.")
@click.option("--account-id", default="*", show_default=True)
def iam_policy(role: str | None, account_id: str) -> None:
    """Print the least-privilege IAM policy of a role (see pipeline/ops/iam.py)."""
    from config.settings import load_settings
    from pipeline.ops.iam import policy, roles

    settings = load_settings()
    if role is not None:
        _dump(policy(settings, role, account_id))
    else:
        _dump({name: policy(settings, name, account_id) for name in roles()})


# ----------------------------------------------------------------- orders
MAX_SUBMIT_BYTES = 64 * 1024 * 1024


def _read_documents(text: str) -> tuple[list[tuple[int, Any]], list[str]]:
    """(line number, document) pairs from one JSON object or JSON lines, and problems."""
    def parse(chunk: str) -> Any:
        return json.loads(chunk)

    try:
        return [(1, parse(text))], []
    except (ValueError, RecursionError):  # JSON lines, or a problem reported per line
        pass
    documents: list[tuple[int, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            documents.append((number, parse(line)))
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: invalid JSON: {error.msg} at column {error.colno}")
        except RecursionError:
            problems.append(f"line {number}: invalid JSON: nested too deeply")
        except ValueError as error:  # e.g. an integer of more than 4300 digits
            problems.append(f"line {number}: invalid JSON: {str(error)[:200]}")
    return documents, problems


@main.command()
@click.argument("source", type=click.File("r"))
@click.option("--json", "as_json", is_flag=True)
def submit(source: Any, as_json: bool) -> None:
    """Submit orders from FILE or - : one JSON object, or JSON lines.

    Validation is all or nothing: if any document is invalid nothing is stored
    (exit 1, one message per bad field, per line). Then each order is stored and
    started in turn and the output says, line by line, what happened: stored
    (its id), or why not (a conflicting orderId, SQS unreachable); exit 1 if any
    line was not stored. Submitting a file again is safe.
    """
    from pipeline.api import submit_order
    from pipeline.domain import parse_order
    from pipeline.errors import InvalidOrder

    text = source.read(MAX_SUBMIT_BYTES + 1)
    if len(text) > MAX_SUBMIT_BYTES:
        _fail(f"nothing submitted: input over {MAX_SUBMIT_BYTES // 2**20} MiB", code=1)
    documents, problems = _read_documents(text)
    if not documents and not problems:
        problems.append("no order in the input")
    orders = []
    for number, document in documents:
        try:
            orders.append((number, parse_order(document)))
        except InvalidOrder as error:
            problems.extend(f"line {number}: {p}" for p in error.problems)
    if problems:  # all or nothing: nothing is stored when any order is bad
        _fail("nothing submitted:\n  " + "\n  ".join(problems[:200]), code=1)
    from pipeline.errors import BrokerUnavailable

    results = []
    for number, order in orders:
        try:
            results.append({"line": number, "orderId": submit_order(order), "stored": True,
                            "started": True})
        except BrokerUnavailable as error:  # stored; submitting again starts it
            results.append({"line": number, "orderId": order.order_id, "stored": True,
                            "started": False, "error": str(error)})
        except PipelineError as error:
            results.append({"line": number, "orderId": order.order_id, "stored": False,
                            "started": False, "error": str(error)})
    if as_json:
        _dump({"orderIds": [r["orderId"] for r in results if r["started"]], "lines": results})
    else:
        for r in results:
            if r["started"]:
                click.echo(r["orderId"])
            else:
                what = "stored but not started" if r["stored"] else "not stored"
                click.echo(f"line {r['line']}: order {r['orderId']} {what}: {r['error']}",
                           err=True)
    if any(not r["stored"] for r in results):
        raise SystemExit(1)  # refused (a conflicting orderId, say)
    if any(not r["started"] for r in results):
        raise SystemExit(2)  # SQS unreachable: submit again once it answers


@main.command()
@click.argument("order_id")
@click.option("--json", "as_json", is_flag=True)
def status(order_id: str, as_json: bool) -> None:
    """An order's status, timeline, payments, reservations, shipment, notifications."""
    from pipeline.api import get_order

    view = get_order(order_id)
    if as_json:
        _dump(view)
        return
    console.print(f"[bold]{view['orderId']}[/]  {view['status']}  terminal={view['terminal']}"
                  f"  {view['priority']}  {view['totalAmount']} {view['currency']}")
    if view["reasons"]:
        console.print("reasons: " + "; ".join(view["reasons"]))
    table = Table("step", "attempt", "outcome", "started", "finished", "detail")
    for s in view["timeline"]:
        table.add_row(s["step"], str(s["attempt"]), s["outcome"] or "…", s["startedAt"][11:23],
                      (s["finishedAt"] or "")[11:23], s["detail"] or "")
    console.print(table)
    for title, rows in (("payments", view["payments"]), ("reservations", view["reservations"]),
                        ("notifications", view["notifications"])):
        if rows:
            console.print(f"[bold]{title}[/]")
            for row in rows:
                console.print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))
    if view["shipment"]:
        console.print(f"[bold]shipment[/] {view['shipment']}")


@main.command()
@click.argument("order_id")
@click.option("--reason", default="cancelled on request", show_default=True)
def cancel(order_id: str, reason: str) -> None:
    """Cancel an order that has not shipped (it ends CANCELLED through compensation)."""
    from pipeline.api import cancel_order

    outcome = cancel_order(order_id, reason=reason)
    if outcome == "too_late":
        _fail(f"order {order_id} has shipped: it can no longer be cancelled", code=1)
    click.echo(f"{order_id}: {outcome}")


@main.command()
@click.option("--status", "status_filter", default=None)
@click.option("--stuck", is_flag=True, help="Only orders without progress past their "
              "reconciler deadline (the reconciler re-drives these), and orders waiting "
              "for attention.")
@click.option("--json", "as_json", is_flag=True)
def orders(status_filter: str | None, stuck: bool, as_json: bool) -> None:
    """List orders, optionally with one status."""
    from pipeline.domain import OrderStatus
    from pipeline.ops.reconcile import deadlines, stale_orders
    from pipeline.runtime import get_runtime

    if status_filter and status_filter.upper() not in OrderStatus.__members__:
        _fail(f"unknown status {status_filter}; one of {', '.join(OrderStatus)}")
    rt = get_runtime()
    listed = rt.store.list_orders(OrderStatus[status_filter.upper()] if status_filter else None)
    rows = [dict(asdict(r), status=r.status.value) for r in listed]
    idle: dict[str, float] = {}
    if stuck:
        s = rt.settings
        idle = {order_id: seconds for order_id, _, seconds in stale_orders(
            rt.store, deadlines(s.reconcile_slack_s, s.attention_retry_s, s.visibility),
            limit=10_000)}
        rows = [dict(r, idle_seconds=round(idle[r["id"]])) for r in rows if r["id"] in idle]
    if as_json:
        _dump(rows)
        return
    table = Table("order", "status", "priority", "total", "created",
                  *(["no progress for (s)"] if stuck else []))
    for r in rows:
        table.add_row(r["id"], r["status"], r["priority"], f"{r['total_amount']} {r['currency']}",
                      str(r["created_at"])[:19], *([str(r["idle_seconds"])] if stuck else []))
    console.print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def audit(as_json: bool) -> None:
    """Check invariants from the raw ledgers; exit 1 when any is violated."""
    from pipeline.ops.audit import audit as run
    from pipeline.runtime import get_runtime

    report = run(get_runtime().store)
    if as_json:
        _dump(report.as_dict())
    else:
        console.print(f"orders by status: {report.orders_by_status}")
        console.print(f"not terminal: {report.not_terminal}; max captures/order: "
                      f"{report.max_captures_per_order}; max effects per idempotency key: "
                      f"{report.max_charges_per_key}; max notifications per slot: "
                      f"{report.max_notifications_per_slot}")
        for v in report.violations:
            console.print(f"[red]VIOLATION[/] {v}")
        console.print("[green]clean[/]" if report.clean else "[red]not clean[/]")
    if not report.clean:
        raise SystemExit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def breakers(as_json: bool) -> None:
    """Circuit breakers (the payment gateway's): state, failures in a row, since when."""
    from pipeline.breaker_state import BreakerRow
    from pipeline.runtime import get_runtime

    rows = get_runtime().store.breakers() or {"gateway": BreakerRow()}
    if as_json:
        _dump([{"name": name, "state": b.state.value, "failures": b.failures,
                "changed_at": b.changed_at} for name, b in rows.items()])
        return
    table = Table("breaker", "state", "failures in a row", "since")
    for name, b in rows.items():
        table.add_row(name, b.state.value, str(b.failures), str(b.changed_at or ""))
    console.print(table)


@main.command()
@click.option("--orders", "count", type=click.IntRange(min=1), default=40, show_default=True)
@click.option("--exit-when-done", is_flag=True,
              help="Exit (0 only if every order is terminal and the audit is clean).")
@click.option("--timeout", type=float, default=600.0, show_default=True)
@click.option("--aws", is_flag=True, help="Run against real AWS (the credentials' account) "
              "instead of the embedded emulator. It creates queues and topics there.")
def demo(count: int, exit_when_done: bool, timeout: float, aws: bool) -> None:
    """Start the emulator and Procfile lanes, provision, seed, submit a mix, watch.

    Always on the embedded emulator (127.0.0.1:PIPELINE_EMULATOR_PORT) unless
    PIPELINE_SQS_ENDPOINT_URL names another endpoint or --aws is given: a demo never
    creates anything in an AWS account by accident."""

    from config.settings import load_settings
    from pipeline.dev.demo import run_demo
    from pipeline.runtime import reconfigure

    settings = load_settings()
    if aws and settings.sqs_endpoint_url:
        _fail("--aws and PIPELINE_SQS_ENDPOINT_URL contradict each other: unset one")
    if not aws and settings.sqs_endpoint_url is None:
        reconfigure({"PIPELINE_SQS_ENDPOINT_URL": f"http://127.0.0.1:{settings.emulator_port}"})
    where = "real AWS" if aws else f"the emulator at {load_settings().sqs_endpoint_url}"
    err.print(f"demo on {where}")
    raise SystemExit(run_demo(count, exit_when_done=exit_when_done, timeout=timeout))
