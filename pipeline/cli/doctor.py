"""`pipeline doctor`: is this deployment healthy, and if not, what to do."""

from __future__ import annotations

import click
from rich.table import Table

from pipeline.cli.common import _dump, console

__all__ = ["doctor"]


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--ping-timeout", default=5.0, show_default=True, type=click.FloatRange(0.5, 60),
              help="Seconds to wait for the workers to answer a remote-control ping.")
def doctor(as_json: bool, ping_timeout: float) -> None:
    """Check settings, endpoint, database, queues, DLQs, lanes, consumers, beat and the
    outbox; print what to do for each failure. Exit 0 only when every check passes."""
    from config.settings import load_settings
    from pipeline.ops.doctor import Doctor, all_passed

    checks = Doctor(load_settings, ping_timeout_s=ping_timeout).run()
    if as_json:
        _dump({"ok": all_passed(checks), "checks": [c.as_dict() for c in checks]})
    else:
        table = Table("check", "result", "found", "what to do")
        for c in checks:
            result = "[green]ok[/]" if c.ok else "[red]FAIL[/]" if c.ok is False else "-"
            table.add_row(c.name, result, c.detail, c.fix)
        console.print(table)
    if not all_passed(checks):
        raise SystemExit(1)
