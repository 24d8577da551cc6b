"""What every `pipeline` command shares: the consoles, failing, printing JSON."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import click
from rich.console import Console

__all__ = ["_dump", "_fail", "console", "err"]

console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


