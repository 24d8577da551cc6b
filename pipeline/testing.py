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
from pipeline.dev.procfile import ProcessGroup, read_procfile

T = TypeVar("T")
WORKER_LANES = ("orders", "payments", "inventory", "notifications", "priority")
# What a test pipeline runs: the Celery workers, beat (the reconciler) and the relay.
PIPELINE_LANES = (*WORKER_LANES, "beat", "relay")


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
    from pipeline.dev.demo import CATALOG

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
    from pipeline.runtime import reconfigure

    reconfigure(saved)


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


# ------------------------------------------------------------------ hostile input
def hostile_bodies(count: int, seed: int = 0) -> list[str]:
    """SQS message bodies no worker may die of: deep nesting, huge numbers, wrong
    types, bad base64, oversized bodies, and well-formed Celery messages with forged
    task names and arguments. Each is distinct (it carries its index)."""
    import base64
    import json
    import random

    rng = random.Random(seed)

    def envelope(task: str, args: Any, kwargs: Any = None, *, raw_body: str | None = None,
                 n: int = 0) -> str:
        body = raw_body if raw_body is not None else base64.b64encode(json.dumps(
            [args, kwargs or {}, {"callbacks": None, "errbacks": None, "chain": None,
                                  "chord": None}]).encode()).decode()
        message = {"body": body, "content-encoding": "utf-8",
                   "content-type": "application/json",
                   "headers": {"lang": "py", "task": task, "id": f"hostile-{seed}-{n}",
                               "retries": 0, "argsrepr": "", "kwargsrepr": ""},
                   "properties": {"body_encoding": "base64", "delivery_tag": f"t{n}",
                                  "delivery_info": {"exchange": "", "routing_key": "x"},
                                  "priority": 0, "correlation_id": f"hostile-{n}"}}
        return base64.b64encode(json.dumps(message).encode()).decode()

    makers: list[Callable[[int], str]] = [
        lambda n: "[" * (2000 + n % 3000) + "]" * (2000 + n % 3000),
        lambda n: base64.b64encode(("[" * 3000 + f"{n}" + "]" * 3000).encode()).decode(),
        lambda n: f"{n}" + "9" * rng.randint(400, 4000),
        lambda n: json.dumps({"n": n, "x": 10 ** rng.randint(20, 300)}),
        lambda n: json.dumps([n, "not", "an", "envelope"]),
        lambda n: json.dumps(None if n % 2 else f"string {n}"),
        lambda n: f"%%%{n}%%% not base64 {{",
        lambda n: base64.b64encode(bytes([0xFF, 0xFE, n % 256]) + b"\x00binary").decode(),
        lambda n: f"{n}:" + "x" * rng.randint(70_000, 200_000),
        lambda n: envelope("tasks.nope.unknown", [f"o-{n}"], n=n),
        lambda n: envelope("tasks.inventory.apply_line", [f"ghost-{n}", "SKU-BOOK", 7,
                                                            "reserve"], n=n),
        lambda n: envelope("tasks.inventory.apply_line", [f"ghost-{n}", "SKU-BOOK", 7,
                                                            "bogus"], n=n),
        lambda n: envelope("tasks.inventory.apply_line", [{"$gt": n}, ["x"], 10 ** 30,
                                                            None], n=n),
        lambda n: envelope("tasks.validation.validate_order", [f"ghost:{n} with spaces"], n=n),
        lambda n: envelope("tasks.payment.authorize_payment", [], {"evil": n}, n=n),
        lambda n: envelope("tasks.shipping.ship_order", [f"o-{n}", "extra"], n=n),
        lambda n: envelope("tasks.notification.notify_customer", [f"nobody-{n}"], n=n),
        lambda n: envelope("tasks.inventory.restock", [f"r-{n}", "SKU-BOOK", 1000], n=n),
        lambda n: envelope("tasks.validation.validate_order", [f"o-{n}"],
                           raw_body=f"%%%{n}", n=n),
        lambda n: envelope("tasks.validation.validate_order", [f"o-{n}"],
                           raw_body=base64.b64encode(("[" * 5000).encode()).decode(), n=n),
    ]
    return [makers[n % len(makers)](n) for n in range(count)]


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(waiting, in flight) messages of the queue at `url`."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return (int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]))


def send_to_work_queues(sqs: Any, prefix: str, bodies: list[str], *, tag: str) -> dict[str, int]:
    """Body i onto work queue i mod len(QUEUES) (a FIFO one with a group and a
    deduplication id of its own), tagged `tag-i`; returns how many each queue got."""
    from concurrent.futures import ThreadPoolExecutor

    from config.topology import QUEUES

    urls = {spec.name: sqs.get_queue_url(QueueName=prefix + spec.name)["QueueUrl"]
            for spec in QUEUES}

    def send(index: int) -> str:
        spec = QUEUES[index % len(QUEUES)]
        message: dict[str, Any] = {"QueueUrl": urls[spec.name], "MessageBody": bodies[index],
                                   "MessageAttributes": {"hostile": {
                                       "DataType": "String", "StringValue": f"{tag}-{index}"}}}
        if spec.is_fifo:
            message |= {"MessageGroupId": f"hostile-{index % 7}",
                        "MessageDeduplicationId": f"{tag}-{index}"}
        sqs.send_message(**message)
        return spec.name

    sent: dict[str, int] = dict.fromkeys(urls, 0)
    with ThreadPoolExecutor(8) as pool:
        for name in pool.map(send, range(len(bodies))):
            sent[name] += 1
    return sent
