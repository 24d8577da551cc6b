"""A chaos controller: a pipeline whose processes, broker and messages can be broken.

Shipped beside pipeline.testing: the chaos test in `make test` and `make chaos`
(bench/chaos.py) both drive it. It starts an emulator on a fixed port with
persisted state (so a restart keeps the endpoint and the messages), provisions a
prefix of its own, runs the Procfile's pipeline lines as a process manager would
(restarting what dies), and offers the faults: SIGKILL of a pool process or of a
whole worker, the emulator frozen (SIGSTOP) and restarted, and messages destroyed
behind the workers' backs (received and deleted) or a queue purged. Producers are
`pipeline submit` processes, so a producer that gives up during an outage is simply
run again (submit is idempotent).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.settings import PROJECT_ROOT
from config.topology import QUEUES
from pipeline.dev.procfile import ProcessGroup, ProcLine, read_procfile
from pipeline.sqs.emulator import Emulator, start_emulator

__all__ = ["Chaos", "children"]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


@dataclass
class Chaos:
    work_dir: Path
    database_url: str
    settings: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    destroyed: int = 0
    exits: list[str] = field(default_factory=list)  # lanes that died of something not sent
    rng: random.Random = field(default_factory=lambda: random.Random(5))

    def __post_init__(self) -> None:
        from pipeline.testing import free_port

        self.port = free_port()
        self.data_dir = self.work_dir / "fauxqs"
        self.emulator: Emulator = start_emulator(self.port, data_dir=self.data_dir)
        self.env = {
            **os.environ,
            "PIPELINE_SQS_ENDPOINT_URL": self.emulator.endpoint,
            "PIPELINE_QUEUE_PREFIX": f"c{uuid.uuid4().hex[:6]}-",
            "PIPELINE_DATABASE_URL": self.database_url,
            "PIPELINE_WAIT_TIME_SECONDS": "2",
            "PIPELINE_CONNECT_TIMEOUT_S": "2",
            **self.settings,
        }
        self.lanes = ProcessGroup(self.env, self.work_dir / "logs")
        self._sqs: Any = None
        self._log_starts: dict[str, int] = {}

    # --- the pipeline ----------------------------------------------------------
    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        import sys

        return subprocess.run([sys.executable, "-m", "pipeline", *args], input=stdin,
                              text=True, capture_output=True, env=self.env, cwd=PROJECT_ROOT,
                              timeout=180, check=False)

    def start(self, stock: dict[str, tuple[Any, int]], lanes: tuple[str, ...]) -> None:
        provisioned = self.run("provision")
        if provisioned.returncode != 0:
            raise RuntimeError(provisioned.stderr)
        for sku, (price, quantity) in stock.items():
            done = self.run("stock", "set", sku, str(quantity), "--price", str(price))
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
        for line in read_procfile():
            if line.name in lanes:
                self._start_lane(line)

    def _start_lane(self, line: ProcLine) -> None:
        log = self.lanes.log_dir / f"{line.name}.log"
        self._log_starts[line.name] = log.stat().st_size if log.exists() else 0
        self.lanes.start(line)

    def submit_until_accepted(self, documents: list[dict[str, Any]]) -> int:
        """One producer batch, submitted again while SQS is unreachable. Returns tries."""
        payload = "\n".join(json.dumps(d) for d in documents)
        for attempt in range(1, 120):
            done = self.run("submit", "-", stdin=payload)
            if done.returncode == 0:
                return attempt
            if "could not be published" not in done.stderr:
                raise RuntimeError(f"a producer was refused: {done.stderr[-2000:]}")
            time.sleep(1)  # back off before producing again (a producer's pace)
        raise RuntimeError("a producer never got its orders accepted")

    def supervise(self) -> None:
        """What a process manager does: start a lane again when it has died."""
        for running in self.lanes.dead():
            self.lanes.running.remove(running)
            running.log.close()
            if running.process.returncode not in (-signal.SIGKILL, -signal.SIGTERM):
                log = self.lanes.log_dir / f"{running.line.name}.log"
                with log.open("rb") as f:  # what this run of the lane wrote
                    f.seek(self._log_starts.get(running.line.name, 0))
                    tail = f.read()[-20_000:].decode(errors="replace")
                if "WorkerLostError('Could not start worker processes')" in tail:
                    # Celery's own rule: a pool child killed before it came up ends
                    # the worker; the kill did it, the supervisor restarts it.
                    self.events.append(f"lane {running.line.name}: a pool process was "
                                       "killed while the worker started")
                else:
                    self.exits.append(f"{running.line.name} exited "
                                      f"{running.process.returncode}: {tail[-3000:]}")
            self._start_lane(running.line)
            self.events.append(f"lane {running.line.name} restarted after exit "
                               f"{running.process.returncode}")

    def stop(self) -> None:
        self.lanes.stop()
        self.emulator.stop()

    # --- the faults -----------------------------------------------------------
    def kill_a_pool_process(self) -> None:
        pool = [pid for r in self.lanes.running if r.process.poll() is None
                for pid in children(r.process.pid)]
        if pool:
            victim = self.rng.choice(pool)
            os.kill(victim, signal.SIGKILL)
            self.events.append(f"SIGKILL pool process {victim}")

    def kill_a_worker(self) -> None:
        """The whole worker (main process and pool): what it held waits out its visibility."""
        workers = [r for r in self.lanes.running if r.process.poll() is None
                   and "worker" in r.line.command]
        if workers:
            victim = self.rng.choice(workers)
            os.killpg(victim.process.pid, signal.SIGKILL)
            self.events.append(f"SIGKILL worker {victim.line.name}")

    def freeze_emulator(self, seconds: float) -> None:
        os.kill(self.emulator.process.pid, signal.SIGSTOP)
        time.sleep(seconds)  # the outage itself
        os.kill(self.emulator.process.pid, signal.SIGCONT)
        self.events.append(f"emulator frozen for {seconds:.0f}s")

    def restart_emulator(self) -> None:
        self.emulator.stop()
        self.emulator = start_emulator(self.port, data_dir=self.data_dir)
        self._sqs = None
        self.events.append("emulator restarted on its persisted state")

    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client(
                "sqs", endpoint_url=self.emulator.endpoint, region_name="us-east-1",
                aws_access_key_id="local", aws_secret_access_key="local")
        return self._sqs

    def queue_url(self, queue: str) -> str:
        return str(self.sqs().get_queue_url(
            QueueName=self.env["PIPELINE_QUEUE_PREFIX"] + queue)["QueueUrl"])

    def destroy_messages(self, share: float) -> int:
        """Receive from a random work queue behind the workers' backs; delete `share`
        of what comes, hand the rest back at once. Returns how many were destroyed."""
        from botocore.exceptions import BotoCoreError, ClientError

        spec = self.rng.choice(QUEUES)
        sqs = self.sqs()
        try:
            url = self.queue_url(spec.name)
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                      VisibilityTimeout=30).get("Messages", [])
        except (BotoCoreError, ClientError):  # frozen or restarting: try again next round
            return 0
        gone = 0
        for message in got:
            try:
                if self.rng.random() < share:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    gone += 1
                else:
                    sqs.change_message_visibility(QueueUrl=url, VisibilityTimeout=0,
                                                  ReceiptHandle=message["ReceiptHandle"])
            except ClientError:  # the emulator restarted meanwhile: the receipt is stale
                continue
        self.destroyed += gone
        return gone

    def destroy_one(self, queue: str, timeout: float = 30.0) -> bool:
        """Take one message off `queue` for good (a loss the pipeline must recover from)."""
        sqs = self.sqs()
        url = self.queue_url(queue)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1,
                                      WaitTimeSeconds=1).get("Messages", [])
            if got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
                self.destroyed += 1
                self.events.append(f"destroyed a message on {queue}")
                return True
        return False

    def waiting(self, queue: str) -> int:
        from pipeline.testing import queue_depth

        return queue_depth(self.sqs(), self.queue_url(queue))[0]

    def purge(self, queue: str) -> None:
        depth = self.waiting(queue)
        self.sqs().purge_queue(QueueUrl=self.queue_url(queue))
        self.destroyed += depth
        self.events.append(f"purged {queue} ({depth} waiting messages)")
