"""`pipeline demo` with nothing configured runs on the embedded emulator, never on AWS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.testing import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_the_demo_without_an_endpoint_uses_the_embedded_emulator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIPELINE_", "AWS_"))}
    port = free_port()
    env |= {"PIPELINE_EMULATOR_PORT": str(port),
            "PIPELINE_EMULATOR_DATA_DIR": str(tmp_path / "fauxqs"),
            "PIPELINE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
            "PIPELINE_FLOWER_PORT": str(free_port()), "PIPELINE_METRICS_PORT": str(free_port()),
            "PIPELINE_QUEUE_PREFIX": "demo-test-", "PIPELINE_WAIT_TIME_SECONDS": "2",
            # Were AWS reachable, these would be used: the demo must not try.
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "demo", "--orders", "10",
                           "--exit-when-done", "--timeout", "180"], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=280)
    assert f"demo on the emulator at http://127.0.0.1:{port}" in done.stderr, done.stderr
    assert (f"provisioning prefix 'demo-test-' on the endpoint http://127.0.0.1:{port}"
            in done.stdout), done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "audit: clean" in done.stdout
