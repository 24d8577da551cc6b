"""Each Procfile lane consumes the queues it is declared for."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from config.topology import QUEUES
from pipeline.app import app
from pipeline.store import schema as t
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration

LANE_OF_QUEUE = {"orders": "orders@", "shipping": "orders@", "payments": "payments@",
                 "inventory.fifo": "inventory@", "notifications": "notifications@",
                 "priority": "priority@"}


def test_a_probe_on_every_queue_is_consumed_by_its_lane(pipeline: Pipeline) -> None:
    assert set(LANE_OF_QUEUE) == {spec.name for spec in QUEUES}
    token = uuid.uuid4().hex[:8]
    for spec in QUEUES:
        options = {"queue": spec.name}
        if spec.is_fifo:
            options |= {"MessageGroupId": "probe", "MessageDeduplicationId": token}
        app.signature("tasks.notification.lane_probe", args=(token,)).apply_async(**options)

    def consumers() -> dict[str, str]:
        with pipeline.rt.store.engine.connect() as conn:
            keys = conn.execute(select(t.idempotency_keys.c.key).where(
                t.idempotency_keys.c.key.like(f"probe:{token}:%"))).scalars().all()
        found = {}
        for key in keys:
            _, _, queue, host = key.split(":", 3)
            found[queue] = host
        return found if len(found) == len(QUEUES) else {}

    found = wait_until(consumers, timeout=30, message="every queue's probe to be consumed")
    for queue, host in found.items():
        assert host.startswith(LANE_OF_QUEUE[queue]), (queue, host)
