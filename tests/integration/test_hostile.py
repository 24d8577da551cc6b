"""Nothing on a queue can kill a worker: a corpus of hostile bodies on every queue,
with the real lanes running; every body ends in its queue's DLQ with a reason."""

from __future__ import annotations

import uuid

import pytest

from config.topology import QUEUES
from pipeline.dev.demo import wait_for_lanes
from pipeline.ops import dlq
from pipeline.testing import (
    WORKER_LANES,
    hostile_bodies,
    queue_depth,
    send_to_work_queues,
    wait_until,
)
from tests.fixtures import Pipeline

pytestmark = [pytest.mark.integration,
              pytest.mark.parametrize("pipeline", ["sqlite"], indirect=True)]
BODIES = 1000


def test_a_thousand_hostile_bodies_kill_no_worker_and_each_is_dead_lettered_with_a_reason(
        pipeline: Pipeline) -> None:
    rt = pipeline.rt
    sqs = rt.sqs
    prefix = rt.settings.queue_prefix
    tag = uuid.uuid4().hex[:8]
    for spec in QUEUES:  # count only this test's dead letters
        dlq.purge(rt.settings, sqs, spec.name)
    alive = {r.line.name: r.process.pid for r in pipeline.lanes.running}
    bodies = hostile_bodies(BODIES, seed=7)
    sent = send_to_work_queues(sqs, prefix, bodies, tag=tag)
    # A few on a worker's remote-control mailbox as well (no DLQ: it must just survive).
    mailboxes = [u for u in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
                 if u.endswith("-celery-pidbox") and "-reply-" not in u]
    for url in mailboxes[:2]:
        for body in bodies[:20]:
            sqs.send_message(QueueUrl=url, MessageBody=body[:200_000])

    urls = [sqs.get_queue_url(QueueName=prefix + spec.name)["QueueUrl"] for spec in QUEUES]
    wait_until(lambda: not any(any(queue_depth(sqs, url)) for url in urls),
               timeout=300, interval=2, message="every hostile body handled")
    letters = {spec.name: dlq.peek(rt.settings, sqs, spec.name, limit=1000) for spec in QUEUES}
    for spec in QUEUES:
        found = letters[spec.name]
        assert len(found) == sent[spec.name], (spec.name, len(found), sent[spec.name])
        no_reason = [x for x in found if x.reason.startswith("moved by the redrive policy")]
        assert not no_reason, (spec.name, [x.body[:80] for x in no_reason[:3]])
    still = {r.line.name: r.process.pid for r in pipeline.lanes.running
             if r.process.poll() is None}
    assert {name: alive[name] for name in WORKER_LANES} == \
        {name: still.get(name) for name in WORKER_LANES}, "a worker exited"
    wait_for_lanes(timeout=60)  # every lane still consumes
    for spec in QUEUES:
        dlq.purge(rt.settings, sqs, spec.name)
