"""The `pipeline` command: one module per command family, main holds the order commands."""

from pipeline.cli.main import main

__all__ = ["main"]
