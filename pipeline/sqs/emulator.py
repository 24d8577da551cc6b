"""The embedded SQS + SNS emulator (fauxqs on the project's own Node 22)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from config.settings import PROJECT_ROOT
from pipeline.errors import BrokerUnavailable, ConfigurationError

NODE = PROJECT_ROOT / "node_modules" / ".bin" / "node"
LAUNCHER = Path(__file__).with_name("fauxqs_launcher.mjs")


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    endpoint: str

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def request_counts(self) -> dict[str, int]:
        """Requests answered since the last reset, by API action ("SQS.SendMessage")."""
        import json
        import urllib.request

        with urllib.request.urlopen(self.endpoint + "/_pipeline/requests", timeout=10) as reply:
            counts: dict[str, int] = json.loads(reply.read())
        return counts

    def reset_request_counts(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(
            self.endpoint + "/_pipeline/requests/reset", method="POST", data=b""),
            timeout=10).close()

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()


def emulator_command(port: int, data_dir: Path | None, region: str,
                     fifo_receive: str = "aws") -> list[str]:
    if not NODE.exists():
        raise ConfigurationError(
            f"the emulator's Node 22 is not installed at {NODE}: run `make install` "
            "(or `npm ci` in the project root)")
    command = [str(NODE), "--no-warnings", str(LAUNCHER), "--port", str(port), "--region", region,
               "--fifo-receive", fifo_receive]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        command += ["--data-dir", str(data_dir)]
    return command


def start_emulator(port: int = 0, *, data_dir: Path | None = None, region: str = "us-east-1",
                   timeout: float = 20.0, stderr: int | None = None,
                   fifo_receive: str = "aws") -> Emulator:
    """Start fauxqs on 127.0.0.1 and return once it answers.

    `fifo_receive`: "aws" (several messages of a FIFO group per receive, as AWS
    does) or "fauxqs" (its own one per group)."""
    process = subprocess.Popen(emulator_command(port, data_dir, region, fifo_receive),
                               stdout=subprocess.PIPE, stderr=stderr, cwd=PROJECT_ROOT,
                               env={**os.environ, "FAUXQS_LOGGER": "false"})
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                process.kill()
                process.wait()
                process.stdout.close()
                raise BrokerUnavailable(
                    f"the SQS emulator did not start on port {port} within {timeout:.0f}s "
                    f"(exit code {process.poll()}); is the port taken?")
            if selector.select(remaining):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buffer += chunk
    ready = json.loads(buffer.split(b"\n", 1)[0])
    return Emulator(process, ready["endpoint"])
