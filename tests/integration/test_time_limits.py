"""A step that never returns is killed at its time limit; its lane goes on.

Without time limits a wedged step held its prefork process for good, and the
visibility keeper kept its message hidden for good: two of them and the orders lane
(two processes) ran nothing more, with every order behind them stranded.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import STEP_KILL_GRACE_S
from pipeline.api import submit_order
from pipeline.app import app
from pipeline.dev.demo import sample_order
from pipeline.dev.procfile import ProcLine, read_procfile
from pipeline.testing import wait_until
from tests.fixtures import Pipeline
from tests.integration.wedged import WEDGE

pytestmark = [pytest.mark.integration,
              pytest.mark.parametrize("pipeline", ["sqlite"], indirect=True)]

LIMIT_S = 3  # soft; the kill comes STEP_KILL_GRACE_S later


def test_wedged_steps_are_killed_at_the_time_limit_and_the_lane_goes_on(
        pipeline: Pipeline, tmp_path: Path) -> None:
    store = pipeline.rt.store
    lanes = pipeline.lanes
    line = next(line for line in read_procfile() if line.name == "orders")
    found = re.search(r"-P prefork -c (\d+)", line.command)
    assert found, line.command
    processes = int(found.group(1))
    lanes.stop_one(lanes.live("orders"))
    log_path = pipeline.log_dir / "orders-wedged.log"
    earlier = log_path.stat().st_size if log_path.exists() else 0  # logs are appended to
    worker = lanes.start_with(
        ProcLine("orders-wedged", f"{line.command} -I tests.integration.wedged"),
        PIPELINE_STEP_TIME_LIMIT_S=str(LIMIT_S))
    try:
        # No limits stamped by this process (Celery copies the sender's into each
        # message, and this one's are the default): the lane's own setting decides.
        wedges = [app.send_task(WEDGE, args=[str(tmp_path)], queue="orders", time_limit=None,
                                soft_time_limit=None).id for _ in range(processes)]
        wait_until(lambda: all((tmp_path / w).exists() for w in wedges), timeout=120,
                   message="every process of the lane wedged")
        order_id = submit_order(sample_order("single", 7))
        wait_until(lambda: store.status(order_id).terminal, timeout=180,
                   message="the order ended past the wedged steps")
        wait_until(lambda: all((tmp_path / f"{w}.done").exists() for w in wedges),
                   timeout=120, message="each wedged message delivered again, and run")
        log = log_path.read_bytes()[earlier:].decode(errors="replace")
        killed = f"Hard time limit ({LIMIT_S + STEP_KILL_GRACE_S}s) exceeded for {WEDGE}"
        assert log.count(killed) == processes, log[-3000:]
    finally:
        lanes.stop_one(worker)
        lanes.start(line)
