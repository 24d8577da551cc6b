"""A throwaway stack per scenario: emulator, provisioned queues, database, workers."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.settings import PROJECT_ROOT
from pipeline.dev.procfile import ProcessGroup, ProcLine, read_procfile
from pipeline.runtime import Runtime, get_runtime, reconfigure
from pipeline.sqs.emulator import Emulator, start_emulator
from pipeline.sqs.provision import provision
from pipeline.store import create_schema
from pipeline.testing import postgres_database, postgres_reachable, restore_environment

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES = os.environ.get("PIPELINE_TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live descendants (prefork children)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for child_pid in child.read_text().split():
            total += tree_cpu_seconds(int(child_pid))
    return total


def procfile_line(name: str, **replace: str) -> ProcLine:
    """A Procfile line, with some of its options replaced (e.g. pool=..)."""
    line = next(line for line in read_procfile() if line.name == name)
    command = line.command
    for old, new in replace.items():
        if old not in command:
            raise KeyError(f"{old!r} is not in the {name} line: {command}")
        command = command.replace(old, new)
    return ProcLine(name, command)


def _postmaster(engine: Any) -> int | None:
    """The PostgreSQL server's main process (a backend's parent), when it runs here."""
    from sqlalchemy import text

    with engine.connect() as conn:
        backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    try:
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ValueError, IndexError):
        return None  # another host: its CPU is not this box's to count


@dataclass
class Stack:
    emulator: Emulator
    env: dict[str, str]
    log_dir: Path
    database_server: int | None = None  # PostgreSQL's postmaster (None: SQLite in-process)
    workers: ProcessGroup = field(init=False)

    def __post_init__(self) -> None:
        self.workers = ProcessGroup({**os.environ, **self.env}, self.log_dir)

    @property
    def rt(self) -> Runtime:
        return get_runtime()

    def start(self, *lines: ProcLine) -> None:
        for line in lines:
            self.workers.start(line)

    def cpu(self) -> dict[str, float]:
        seconds = {r.line.name: tree_cpu_seconds(r.process.pid) for r in self.workers.running}
        seconds["emulator"] = cpu_seconds(self.emulator.process.pid)
        if self.database_server is not None:  # its backends are its children
            seconds["database"] = tree_cpu_seconds(self.database_server)
        return seconds

    def freeze(self) -> None:
        """Stop every process of the system (SIGSTOP): a burst is published meanwhile."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        for running in self.workers.running:  # each line is its own process group
            os.killpg(running.process.pid, sig)


@contextmanager
def stack(work_dir: Path, name: str, *, extra_env: dict[str, str] | None = None,
          database: str = "sqlite") -> Iterator[Stack]:
    """A fresh emulator, queue prefix and database (SQLite, or a new PostgreSQL
    database dropped afterwards) for one scenario."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob(name + ".db*"):
        stale.unlink()
    with ExitStack() as stack_:
        if database == "postgresql":
            why = postgres_reachable(POSTGRES)
            if why:
                raise RuntimeError(f"PostgreSQL not reachable at {POSTGRES}: {why}")
            url = stack_.enter_context(postgres_database(POSTGRES))
        else:
            url = f"sqlite:///{work_dir / (name + '.db')}"
        emulator = start_emulator(0)
        stack_.callback(emulator.stop)
        env = {
            "PIPELINE_SQS_ENDPOINT_URL": emulator.endpoint,
            "PIPELINE_QUEUE_PREFIX": f"b{uuid.uuid4().hex[:6]}-",
            "PIPELINE_DATABASE_URL": url,
            "PIPELINE_WAIT_TIME_SECONDS": "10",
            **(extra_env or {}),
        }
        saved = reconfigure(env)

        stack_.callback(restore_environment, saved)
        rt = get_runtime()
        provision(rt.settings, rt.aws_client("sqs"), rt.aws_client("sns"))
        create_schema(rt.store.engine)
        s = Stack(emulator, env, work_dir / f"logs-{name}",
                  _postmaster(rt.store.engine) if database == "postgresql" else None)
        stack_.callback(s.workers.stop)
        yield s


def in_subprocess(module: str, *args: str, timeout: float = 900) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter (a Celery app keeps its broker
    settings for life) and return the JSON it prints last."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(0.05)


def describe(line: ProcLine) -> str:
    args = shlex.split(line.command)
    keep = [a for a in args if a.startswith(("-P", "-c", "--prefetch")) or a.isdigit()
            or a in ("solo", "threads", "prefork")]
    return " ".join(keep)


def alternating_pairs(runs: dict[str, Callable[[], dict[str, Any]]], rounds: int,
                      label: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`rounds` pairs of the two scenarios in `runs`, back to back, alternating which runs
    first (one pair cannot judge a ratio on this shared box); a failed run is reported
    and its pair dropped, the rest goes on."""
    first, second = runs
    results: dict[str, list[dict[str, Any]]] = {first: [], second: []}
    for n in range(rounds):
        for key in (first, second) if n % 2 == 0 else (second, first):
            try:
                results[key].append(runs[key]())
            except Exception as error:  # reported in the run's output
                print(f"  {key} {label}: FAILED {error}", flush=True)
    return list(zip(results[first], results[second], strict=False))
