"""The ceiling: the emulator's raw capacity with batched boto3 calls.

Several client threads send batches of ten 1 KiB messages, then receive ten
and delete them with one DeleteMessageBatch, against a fresh emulator on the
same CPUs. Divided by the messages an order needs, it bounds what any
design on this emulator and machine could reach.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from bench.harness import cpu_seconds, in_subprocess
from pipeline.sqs.emulator import start_emulator


def run(messages: int, threads: int = 4) -> dict[str, Any]:
    emulator = start_emulator(0)
    try:
        sqs = boto3.client("sqs", endpoint_url=emulator.endpoint, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local",
                           config=Config(max_pool_connections=threads * 2))
        url = sqs.create_queue(QueueName="ceiling")["QueueUrl"]
        body = "x" * 1024
        batches = messages // 10

        def send(_: int) -> None:
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(n), "MessageBody": body} for n in range(10)])

        def drain(_: int) -> int:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                       for n, m in enumerate(got.get("Messages", []))]
            if entries:
                sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            return len(entries)

        cpu0 = cpu_seconds(emulator.process.pid)
        with ThreadPoolExecutor(threads) as pool:
            started = time.monotonic()
            list(pool.map(send, range(batches)))
            sent_s = time.monotonic() - started
            received, started = 0, time.monotonic()
            while received < batches * 10:
                received += sum(pool.map(drain, range(threads)))
            drained_s = time.monotonic() - started
        cpu = cpu_seconds(emulator.process.pid) - cpu0
        return {"messages": batches * 10, "threads": threads,
                "sendPerSecond": round(batches * 10 / sent_s),
                "receiveDeletePerSecond": round(batches * 10 / drained_s),
                "emulatorCpuMsPerMessage": round(cpu / (batches * 20) * 1000, 3)}
    finally:
        emulator.stop()


def scenario(messages: int) -> dict[str, Any]:
    return in_subprocess("bench.ceiling", "--messages", str(messages), timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description="emulator ceiling; prints JSON")
    parser.add_argument("--messages", type=int, default=20_000)
    print(json.dumps(run(parser.parse_args().messages)))


if __name__ == "__main__":
    main()
