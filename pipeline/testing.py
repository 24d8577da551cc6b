"""Test helpers, shipped with the package: real emulator, real workers, real databases.

Used by this project's suite and usable by anyone testing against the pipeline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

from config.settings import PROJECT_ROOT
from pipeline.procfile import ProcessGroup, read_procfile

T = TypeVar("T")
WORKER_LANES = ("orders", "payments", "inventory", "notifications", "priority")
# What a test pipeline runs: the Celery workers and the outbox relay.
PIPELINE_LANES = (*WORKER_LANES, "relay")


def wait_until(condition: Callable[[], T], *, timeout: float, interval: float = 0.1,
               message: str = "condition") -> T:
    """Poll until `condition()` is truthy; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `pipeline ARGS...` as a user would, with `env` on top of this environment."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT,
                          text=True, input=stdin, capture_output=True, timeout=timeout,
                          env={**os.environ, **env})


def stock_catalog(store: Any, times: int = 1) -> None:
    """Put the demo catalog in stock (`times` its demo quantities)."""
    from pipeline.demo import CATALOG

    for sku, (price, quantity) in CATALOG.items():
        store.set_stock(sku, quantity * times, price=price)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def restore_environment(saved: dict[str, str | None]) -> None:
    """Put back environment variables saved before a test or benchmark changed them,
    and forget the settings and clients built from the changed ones."""
    from config.settings import load_settings
    from pipeline.runtime import reset_runtime

    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    load_settings.cache_clear()
    reset_runtime()


@contextmanager
def worker_lanes(env: dict[str, str], log_dir: Path,
                 lanes: tuple[str, ...] = PIPELINE_LANES) -> Iterator[ProcessGroup]:
    """Start the Procfile's worker lines with `env`; stop them on exit."""
    group = ProcessGroup({**os.environ, **env}, log_dir)
    try:
        for line in read_procfile():
            if line.name in lanes:
                group.start(line)
        yield group
    finally:
        group.stop()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test session; dropped afterwards."""
    name = f"pipeline_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_reachable(admin_url: str) -> str | None:
    """None when reachable, else why not."""
    try:
        engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as error:  # any failure means: not usable here
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
