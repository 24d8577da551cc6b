"""Orders scenarios: the pipeline as the Procfile runs it (Flower off and on, tracing
on), and stock Celery 5.7 defaults on the same workflow.

"Tracing on": every process, the load's included, exports its spans over OTLP/HTTP
to a receiver in the load's process (pipeline.dev.otlp), which decodes them.

Each run: a fresh emulator, queue prefix and database (bench.harness), the
Procfile's worker lanes and relay (and Flower, for "Flower on"), a probe
through every queue, then the load; requests are counted from the load's
start to the last order's end, idle long polls and monitoring traffic included.
"""

from __future__ import annotations

import argparse
import json
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import in_subprocess, stack
from bench.workload import Load, run_load, stock_up
from pipeline.dev.otlp import receiving
from pipeline.dev.procfile import ProcLine, read_procfile
from pipeline.testing import WORKER_LANES, free_port


@dataclass(frozen=True)
class Config:
    name: str
    events: bool  # workers send events and answer remote control
    flower: bool  # a Flower process receives them
    stock: bool  # stock Celery 5.7 defaults instead of the project's tuning
    tracing: bool = False  # every process exports spans (pipeline.tracing) to a receiver
    trace_sql: bool = True  # ... SQL statements included
    env: tuple[tuple[str, str], ...] = ()  # settings of this configuration
    threads: tuple[str, ...] = ()  # prefork lanes run on the project's threads pool instead
    database: str = "sqlite"  # or "postgresql": a fresh database on the local server
    processes: int | None = None  # pool processes of each prefork lane (None: the Procfile's)
    merged: tuple[str, ...] = ()  # prefork lanes run as one worker (the first one's line)


THREADS_POOL = "env CELERY_CUSTOM_WORKER_POOL=pipeline.worker.pool:ThreadPool "


CONFIGS = {
    "flower-off": Config("pipeline, Flower off", events=False, flower=False, stock=False),
    "flower-on": Config("pipeline, Flower on", events=True, flower=True, stock=False),
    # Task events and remote control on, nobody receiving: the lanes' share of Flower's cost.
    "events-on": Config("pipeline, events on, no Flower", events=True, flower=False,
                        stock=False),
    "stock": Config("stock Celery 5.7 defaults", events=False, flower=False, stock=True),
    "tracing-on": Config("pipeline, tracing on", events=False, flower=False, stock=False,
                         tracing=True),
    "tracing-nosql": Config("pipeline, tracing on, no SQL spans", events=False, flower=False,
                            stock=False, tracing=True, trace_sql=False),
    # Lanes sized by measurement (#16): the prefork DB lanes as one process of threads.
    "threads": Config("pipeline, orders+notifications on threads", events=False,
                      flower=False, stock=False, threads=("orders", "notifications")),
    # The hand-signed SQS calls off (pipeline.sqs.signed): what they save, in every run.
    "botocore": Config("pipeline, sends and deletes through botocore", events=False,
                       flower=False, stock=False, env=(("PIPELINE_SQS_SIGNED_CALLS", "false"),)),
    # Admission control off (pipeline.worker.intake): what the overload section compares.
    "intake-off": Config("pipeline, no intake limit", events=False, flower=False, stock=False,
                         env=(("PIPELINE_INTAKE_LIMIT", "0"),)),
    # Fewer processes on one box: the orders and notifications lanes as one worker
    # (prefork x3, all three queues), instead of two of prefork x2.
    "merged": Config("pipeline, orders+notifications as one worker", events=False,
                     flower=False, stock=False, merged=("orders", "notifications")),
    # The scale-out database on the same box, its server's CPU counted.
    "postgres": Config("pipeline on PostgreSQL, Flower off", events=False, flower=False,
                       stock=False, database="postgresql"),
    # How cost grows with workers (bench.scaling): each prefork lane with 1 or 4 processes.
    **{f"processes-{n}": Config(f"pipeline, {n} process(es) per prefork lane", events=False,
                                flower=False, stock=False, processes=n) for n in (1, 4)},
}


def stock_line(line: ProcLine) -> ProcLine:
    """A Procfile worker line on the stock app, with Celery's default prefetch."""
    command = (line.command.replace("-A pipeline.app", "-A bench.stock_app")
               .replace(" --prefetch-multiplier 8", "")
               .replace(THREADS_POOL, "")
               .replace("-P custom", "-P threads"))
    return ProcLine(line.name, command)


def threads_line(line: ProcLine, slots: int = 4) -> ProcLine:
    """A prefork Procfile lane on the project's threads pool, one process."""
    command = re.sub(r"-P prefork -c \d+", f"-P custom -c {slots}", line.command)
    if command == line.command:
        raise ValueError(f"{line.name} is not a prefork lane: {line.command}")
    return ProcLine(line.name, THREADS_POOL + command)


def sized_line(line: ProcLine, processes: int) -> ProcLine:
    """A prefork Procfile lane with `processes` pool processes; other lanes as they are."""
    return ProcLine(line.name, re.sub(r"-P prefork -c \d+", f"-P prefork -c {processes}",
                                      line.command))


def merged_line(lines: dict[str, ProcLine], names: tuple[str, ...]) -> ProcLine:
    """Prefork lanes as one worker: the first lane's line consuming every lane's queues,
    with one pool process more than the first lane's per lane merged into it."""
    first = lines[names[0]].command
    queues = [re.search(r"-Q (\S+)", lines[n].command) for n in names]
    slots = re.search(r"-P prefork -c (\d+)", first)
    if slots is None or not all(queues):
        raise ValueError(f"not prefork lanes with queues: {names}")
    command = re.sub(r"-Q \S+", "-Q " + ",".join(q.group(1) for q in queues if q), first)
    command = command.replace(slots.group(0),
                              f"-P prefork -c {int(slots.group(1)) + len(names) - 1}")
    return ProcLine(names[0], command)


def run(work_dir: Path, config: Config, load: Load) -> dict[str, Any]:
    tag = re.sub(r"[^A-Za-z0-9.]+", "-", f"orders-{config.name}-{load.label.replace('/', 'ps')}")
    env = {"PIPELINE_EVENTS": str(config.events).lower(),
           "PIPELINE_FLOWER_PORT": str(free_port()), **dict(config.env)}
    with ExitStack() as scope:
        if config.tracing:  # the load's process (the producer) traces too
            receiver = scope.enter_context(receiving())
            env |= receiver.env(OTEL_BSP_SCHEDULE_DELAY="1000")
            if not config.trace_sql:
                env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "sqlalchemy"
        result = _run(work_dir, config, load, tag, env)
        if config.tracing:
            result["spansExported"] = receiver.count()
        return result


def _run(work_dir: Path, config: Config, load: Load, tag: str,
         env: dict[str, str]) -> dict[str, Any]:
    suffix = ("-on" if config.flower else "-traced" if config.trace_sql and config.tracing
              else "-traced-nosql" if config.tracing else "")
    with stack(work_dir, tag + suffix, extra_env=env, database=config.database) as s:
        stock_up(s.rt.store, load.orders)
        lines = {line.name: line for line in read_procfile()}
        for name in (*WORKER_LANES, "relay"):
            line = lines[name]
            if name in config.merged[1:]:
                continue  # consumed by the merged worker
            if name in config.merged[:1]:
                line = merged_line(lines, config.merged)
            elif config.stock and name != "relay":
                line = stock_line(line)
            elif name in config.threads:
                line = threads_line(line)
            elif config.processes is not None:
                line = sized_line(line, config.processes)
            s.start(line)
        if config.flower:
            s.start(lines["flower"])
        from pipeline.api import submit_order, submit_orders
        from pipeline.dev.demo import wait_for_lanes

        wait_for_lanes(timeout=120)
        return run_load(s, config.name, load, submit_orders if load.batch > 1
                        else lambda documents: [submit_order(d) for d in documents])


def scenario(work_dir: Path, config_key: str, load: Load) -> dict[str, Any]:
    args = ["--config", config_key, "--work-dir", str(work_dir), *load.arguments()]
    return in_subprocess("bench.orders", *args, timeout=600 + (load.drain_s or 0))


def main() -> None:
    parser = argparse.ArgumentParser(description="one orders scenario; prints JSON")
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, help="s to wait for the last order")
    parser.add_argument("--batch", type=int, default=1, help="orders per producer call, at most")
    parser.add_argument("--lines", type=int, help="lines per order (default: one or three)")
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args()
    load = Load.from_arguments(args)
    print(json.dumps(run(args.work_dir, CONFIGS[args.config], load)))


if __name__ == "__main__":
    main()
