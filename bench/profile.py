"""Where a worker lane's CPU goes: py-spy (GIL-holding samples) during an orders run.

Samples are sorted into a few buckets by the frames they pass through, so the
report says, e.g., how much of the lane's CPU is botocore building and signing
requests, SQLAlchemy, or the pipeline's own steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import in_subprocess, stack
from bench.workload import Load, drive, stock_up, wait_terminal
from pipeline.dev.procfile import read_procfile
from pipeline.testing import WORKER_LANES

# Checked in order: a sample counts for the first bucket one of its frames matches.
BUCKETS = [
    ("publishing the next step (Celery + kombu + botocore)", ("Task.apply_async",
                                                             "publish_stock_updates")),
    ("deleting acked messages (botocore)", ("basic_ack", "flush_acks", "_delete_batch")),
    ("receiving (kombu async client)", ("_get_async", "CurlClient", "_on_messages_ready")),
    ("event dispatch and flush", ("BatchingDispatcher", "EventDispatcher", "send_event")),
    ("SQL (SQLAlchemy + driver)", ("sqlalchemy/",)),
    ("other botocore calls", ("botocore/",)),
    ("step code (services, timeline)", ("tasks/", "pipeline/services", "pipeline/store")),
    ("Celery tracing and pool I/O", ("celery/app/trace", "billiard/", "asynpool")),
]


def buckets(raw: Path) -> dict[str, float]:
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        bucket = next((name for name, keys in BUCKETS if any(k in stack_ for k in keys)),
                      "other")
        counts[bucket] += int(n)
    return {name: round(count / total, 3) for name, count in counts.most_common()} if total \
        else {}


def run(work_dir: Path, lane: str, rate: float, seconds: float) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with stack(work_dir, f"profile-{lane}") as s:
        stock_up(s.rt.store, int(rate * seconds))
        lines = {line.name: line for line in read_procfile()}
        for name in (*WORKER_LANES, "relay"):
            s.start(lines[name])
        from pipeline.api import submit_order
        from pipeline.dev.demo import wait_for_lanes

        wait_for_lanes(timeout=120)
        pid = next(r.process.pid for r in s.workers.running if r.line.name == lane)
        raw = work_dir / f"profile-{lane}.txt"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--subprocesses", "--gil", "--nonblocking",
             "--rate", "200", "--duration", str(int(seconds)), "--format", "raw", "-o",
             str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ids, _ = drive(Load(rate, seconds), lambda docs: [submit_order(d) for d in docs])
        recorder.wait(timeout=seconds + 60)
        wait_terminal(s.rt.store, ids, 60)
        return {"lane": lane, "rate": rate, "seconds": seconds, "buckets": buckets(raw)}


def scenario(work_dir: Path, lane: str, rate: float, seconds: float) -> dict[str, Any]:
    return in_subprocess("bench.profile", "--lane", lane, "--rate", str(rate), "--seconds",
                         str(seconds), "--work-dir", str(work_dir), timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description="profile one lane; prints JSON")
    parser.add_argument("--lane", default="orders")
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.work_dir, args.lane, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
