"""Run Procfile lines as supervised child processes (what `pipeline demo` uses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from config.settings import PROJECT_ROOT

PROCFILE = PROJECT_ROOT / "Procfile"


@dataclass(frozen=True)
class ProcLine:
    name: str
    command: str


def read_procfile(path: Path = PROCFILE) -> list[ProcLine]:
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, command = text.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise ValueError(f"{path}:{number}: expected 'name: command', got {raw!r}")
        lines.append(ProcLine(name.strip(), command.strip()))
    return lines


@dataclass
class Running:
    line: ProcLine
    process: subprocess.Popen[bytes]
    log: IO[bytes]


class ProcessGroup:
    """Processes started from Procfile lines, each in its own session."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[Running] = []

    def start(self, line: ProcLine) -> Running:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{line.name}.log").open("ab")
        bin_dir = str(Path(sys.executable).parent)
        env = {**self.env, "PATH": bin_dir + os.pathsep + self.env.get("PATH", "")}
        process = subprocess.Popen(["bash", "-c", f"exec {line.command}"], cwd=PROJECT_ROOT,
                                   env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        running = Running(line, process, log)
        self.running.append(running)
        return running

    def start_with(self, line: ProcLine, **env: str) -> Running:
        """Start `line` with some environment variables changed for it alone."""
        saved = self.env
        self.env = {**saved, **env}
        try:
            return self.start(line)
        finally:
            self.env = saved

    def live(self, name: str) -> Running:
        """The process of line `name` that is still running (the last started)."""
        for running in reversed(self.running):
            if running.line.name == name and running.process.poll() is None:
                return running
        raise LookupError(f"no running process for Procfile line {name!r}")

    def stop_one(self, running: Running, *, sig: int = signal.SIGTERM,
                 timeout: float = 60.0) -> None:
        """Stop one process and its children (its process group), and forget it."""
        if running.process.poll() is None:
            os.killpg(running.process.pid, sig)
            running.process.wait(timeout)
        if running in self.running:
            self.running.remove(running)
        running.log.close()

    def dead(self) -> list[Running]:
        return [r for r in self.running if r.process.poll() is not None]

    def stop(self, timeout: float = 20.0) -> None:
        for r in self.running:
            if r.process.poll() is None:
                os.killpg(r.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for r in self.running:
            try:
                r.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(r.process.pid, signal.SIGKILL)
                r.process.wait()
            r.log.close()
        self.running.clear()
