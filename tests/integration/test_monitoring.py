"""Flower and remote control on SQS: events and replies over SNS fanout, revoke,
no leftover queues. Real workers, a real Flower process, a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.topology import EVENT_QUEUE_PREFIX
from pipeline import get_order, submit_order
from pipeline.app import app
from pipeline.dev.demo import sample_order
from pipeline.dev.procfile import ProcessGroup, ProcLine, Running, read_procfile
from pipeline.sqs.transient import LEASE_TAG
from pipeline.testing import WORKER_LANES, free_port, stock_catalog, wait_until
from tests.fixtures import ARTIFACTS, Pipeline

pytestmark = [pytest.mark.integration,
              # Monitoring does not depend on the database: one backend is enough.
              pytest.mark.parametrize("pipeline", ["sqlite"], indirect=True)]
ROOT = Path(__file__).resolve().parents[2]
HOST = __import__("socket").gethostname()
CHROMIUM = shutil.which("chromium")


class Flower:
    def __init__(self, pipeline: Pipeline, group: ProcessGroup) -> None:
        self.port = free_port()
        self.group = group
        line = next(line for line in read_procfile() if line.name == "flower")
        group.env = {**group.env, "PIPELINE_FLOWER_PORT": str(self.port),
                     "PIPELINE_FLOWER_UNAUTHENTICATED_API": "true"}
        self.running: Running = group.start(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            body = response.read()
        return json.loads(body) if path.startswith("/api/") else body.decode()

    def answers(self) -> bool:
        try:
            self.get("/api/workers?status=true")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.group.stop(timeout=30)  # SIGTERM, as a process manager stops it


def start_flower(pipeline: Pipeline, log_dir: Path) -> Flower:
    flower = Flower(pipeline, ProcessGroup({**os.environ, **pipeline.env}, log_dir))
    wait_until(flower.answers, timeout=30, message="Flower to answer")
    return flower


def online(flower: Flower) -> set[str]:
    return {name for name, up in flower.get("/api/workers?status=true").items() if up}


@pytest.fixture(scope="module")
def flower(pipeline: Pipeline) -> Iterator[Flower]:
    stock_catalog(pipeline.rt.store, 10)
    running = start_flower(pipeline, pipeline.log_dir / "flower")
    # Events sent before its queue is subscribed are not for it: wait until it hears
    # every lane (a heartbeat comes every 10 s).
    wait_until(lambda: lane_nodes() <= online(running), timeout=30,
               message="Flower to hear every lane")
    yield running
    running.stop()


def lane_nodes() -> set[str]:
    return {f"{lane}@{HOST}" for lane in WORKER_LANES}


def celery_cli(pipeline: Pipeline, *args: str, timeout: float = 30
               ) -> subprocess.CompletedProcess[str]:
    celery = str(Path(sys.executable).parent / "celery")
    return subprocess.run([celery, "-A", "pipeline.app", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **pipeline.env})


def tasks_of(flower: Flower, order_id: str) -> dict[str, str]:
    """Task name -> state, for the tasks Flower saw with this order as first argument."""
    tasks = flower.get("/api/tasks?limit=100000")
    return {str(t["name"]): str(t["state"]) for t in tasks.values()
            if order_id in str(t.get("args"))}


def test_flower_shows_every_lane_online_and_every_step_of_a_run(
        pipeline: Pipeline, flower: Flower) -> None:
    ids = [submit_order(sample_order(kind, 400 + n))
           for n, kind in enumerate(["single", "multi", "vip", "declined"])]
    wait_until(lambda: all(get_order(i)["terminal"] for i in ids), timeout=60,
               message="the orders to finish")

    assert lane_nodes() <= online(flower)
    completed, declined = ids[0], ids[3]
    want = {"tasks.validation.validate_order", "tasks.payment.authorize_payment",
            "tasks.inventory.apply_line",
            "tasks.shipping.ship_order", "tasks.notification.notify_customer"}
    # Events arrive batched, a second or so behind the steps: wait for the final states.
    seen = wait_until(lambda: (t := tasks_of(flower, completed)) and want <= set(t) and all(
        t[name] == "SUCCESS" for name in want) and t, timeout=30,
        message="every step of the order in Flower, each SUCCESS")
    assert want <= set(seen)
    # A decline authorized nothing: no reversal hop, no shipment. The timeline says so
    # for certain; Flower must show the same steps (each lane batches its own events,
    # so wait for all three: the notification's can arrive before the payment's).
    ran = {"tasks.validation.validate_order", "tasks.payment.authorize_payment",
           "tasks.notification.notify_customer"}
    assert {row["step"] for row in get_order(declined)["timeline"]} == {
        "validate", "authorize_payment", "notify"}
    seen = wait_until(lambda: (t := tasks_of(flower, declined)) and ran <= set(t) and all(
        t[name] == "SUCCESS" for name in ran) and t, timeout=30,
        message="the declined order's steps in Flower, each SUCCESS")
    assert set(seen) == ran, seen


def test_monitoring_never_shows_a_secret(pipeline: Pipeline, flower: Flower) -> None:
    secret = f"tok_{uuid.uuid4().hex[:10]} jane@example.com +14155550123"
    app.signature("tasks.notification.lane_probe", args=(secret,)).apply_async(
        queue="notifications")
    shown = wait_until(lambda: [t for t in flower.get("/api/tasks?limit=100000").values()
                                if t["name"] == "tasks.notification.lane_probe"
                                and t["state"] == "SUCCESS" and "redacted" in str(t["args"])],
                       timeout=30, message="the probe in Flower")
    text = json.dumps(shown)
    for part in secret.split():
        assert part not in text
    assert "[redacted]" in str(shown[0]["result"])


def test_inspect_ping_stats_and_active_are_answered_by_every_lane(pipeline: Pipeline) -> None:
    """How fast is a figure for `make bench`; here: every lane answers."""
    done = celery_cli(pipeline, "inspect", "ping", "--timeout", "5", "--json")
    assert done.returncode == 0, done.stderr
    replies = json.loads(done.stdout.strip().splitlines()[-1])
    assert lane_nodes() <= set(replies), replies
    assert all(reply == {"ok": "pong"} for reply in replies.values())
    for command, check in (("stats", lambda r: "pool" in r and "total" in r),
                           ("active", lambda r: isinstance(r, list))):
        done = celery_cli(pipeline, "inspect", command, "--timeout", "3", "--json")
        assert done.returncode == 0, done.stderr
        replies = json.loads(done.stdout.strip().splitlines()[-1])
        assert lane_nodes() <= set(replies) and all(check(r) for r in replies.values()), (
            command, replies)


def test_revoking_a_queued_step_cancels_its_order_through_compensation(
        pipeline: Pipeline, flower: Flower) -> None:
    """A slow single-slot payments lane keeps authorizations queued behind each other;
    the last one is revoked with `celery control revoke` while it waits."""
    lanes = pipeline.lanes
    line = lanes.live("payments").line
    lanes.stop_one(lanes.live("payments"))
    slow = lanes.start_with(ProcLine("payments-single", line.command.replace("-c 8", "-c 1")),
                            PIPELINE_GATEWAY_LATENCY_MS="2500",
                            PIPELINE_GATEWAY_TIMEOUT_MS="20000")
    try:
        ids = [submit_order(sample_order("single", 500 + n)) for n in range(4)]
        victim = ids[-1]
        received = wait_until(
            lambda: [task_id for task_id, t in flower.get("/api/tasks?limit=100000").items()
                     if t["name"] == "tasks.payment.authorize_payment"
                     and victim in str(t["args"]) and t["state"] == "RECEIVED"],
            timeout=30, message="the last authorization waiting in the worker")
        revoked = celery_cli(pipeline, "control", "revoke", received[0])
        assert revoked.returncode == 0, revoked.stderr
        ended = wait_until(lambda: (v := get_order(victim))["terminal"] and v, timeout=60,
                           message="the revoked order to end")
        assert ended["status"] == "CANCELLED", ended
        assert [p["kind"] for p in ended["payments"]] == []  # never authorized
        assert any(n["template"] == "order_cancelled" for n in ended["notifications"])
        for order_id in ids[:-1]:
            done = wait_until(lambda o=order_id: (v := get_order(o))["terminal"] and v,
                              timeout=60, message="the other orders to end")
            assert done["status"] == "COMPLETED"
        assert wait_until(lambda: tasks_of(flower, victim).get(
            "tasks.payment.authorize_payment") == "REVOKED", timeout=20,
            message="Flower to show the revoke")
    finally:
        lanes.stop_one(slow)
        lanes.start(line)


def transient_state(pipeline: Pipeline) -> tuple[set[str], set[str]]:
    """Event and reply queues, and the event topic's subscriptions."""
    rt = pipeline.rt
    prefix = rt.settings.queue_prefix
    sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
    queues = {url.rsplit("/", 1)[-1] for url in
              sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])}
    transient = {q for q in queues if q.startswith(prefix + EVENT_QUEUE_PREFIX + "-")
                 or q.endswith("-reply-celery-pidbox")}
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                 if t["TopicArn"].endswith(":" + prefix + "celeryev"))
    subs = {s["Endpoint"].rsplit(":", 1)[-1] for s in
            sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}
    return transient, subs


def test_the_janitor_removes_an_orphaned_event_queue_and_its_subscription(
        pipeline: Pipeline, flower: Flower) -> None:
    rt = pipeline.rt
    sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
    orphan = f"{rt.settings.queue_prefix}{EVENT_QUEUE_PREFIX}-{uuid.uuid4()}"
    url = sqs.create_queue(QueueName=orphan, tags={LEASE_TAG: str(int(time.time()) - 1)}
                           )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]
                                   )["Attributes"]["QueueArn"]
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                 if t["TopicArn"].endswith(":" + rt.settings.queue_prefix + "celeryev"))
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true"})
    queues, subs = transient_state(pipeline)
    assert orphan in queues and orphan in subs

    done = subprocess.run([sys.executable, "-m", "pipeline", "janitor", "--json"], cwd=ROOT,
                          text=True, capture_output=True, timeout=60,
                          env={**os.environ, **pipeline.env})
    assert done.returncode == 0, done.stderr
    # The workers' and Flower's own janitors sweep too, so this one may find the
    # orphan gone already (the sweep itself is checked alone in test_janitor).
    assert json.loads(done.stdout)["queues_kept"] >= 1
    queues, subs = transient_state(pipeline)
    assert orphan not in queues and orphan not in subs
    assert any(q.startswith(rt.settings.queue_prefix + EVENT_QUEUE_PREFIX) for q in queues), \
        "Flower's own live event queue must be kept"
    assert flower.answers()


def test_ten_flower_restarts_leave_no_queue_or_subscription_behind(
        pipeline: Pipeline, flower: Flower) -> None:
    before = transient_state(pipeline)
    seen: set[str] = set()
    for n in range(10):
        other = start_flower(pipeline, pipeline.log_dir / "flower-restarts")
        # It is really up: it answers and has its own subscribed event queue.
        new = wait_until(lambda: {q for q in transient_state(pipeline)[0] - before[0]
                                  if EVENT_QUEUE_PREFIX in q} & transient_state(pipeline)[1],
                         timeout=20, message=f"restart {n}: its subscribed event queue")
        seen |= new
        other.stop()
    assert len(seen) == 10
    assert wait_until(lambda: transient_state(pipeline) == before, timeout=20,
                      message="nothing left after ten restarts")


def test_flower_pages_render_workers_and_tasks_in_a_browser(
        pipeline: Pipeline, flower: Flower) -> None:
    order_id = submit_order(sample_order("single", 600))
    wait_until(lambda: get_order(order_id)["terminal"], timeout=60, message="the order")
    wait_until(lambda: tasks_of(flower, order_id).get(
        "tasks.notification.notify_customer") == "SUCCESS", timeout=20,
        message="Flower to see the order's last step")
    ARTIFACTS.mkdir(exist_ok=True)
    profile = ARTIFACTS / "chromium-profile"
    for page, expect in (("/workers", sorted(lane_nodes())), ("/tasks", ["notify_customer"])):
        dom = browser(profile, flower.url + page, "--dump-dom")
        missing = [text for text in expect if text not in dom]
        assert not missing, f"{page} does not show {missing}"
        shot = ARTIFACTS / f"flower{page.replace('/', '-')}.png"
        browser(profile, flower.url + page, f"--screenshot={shot}", "--window-size=1400,900")
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"


def browser(profile: Path, url: str, *args: str) -> str:
    assert CHROMIUM is not None, "chromium is not installed: `make test` installs Debian's"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=8000",
         *args, url], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def call(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         data: bytes | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)
    except urllib.error.URLError:
        return 0, {}  # not listening yet


BROWSER_CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site",
                      "Sec-Fetch-Mode": "no-cors", "Content-Type": "text/plain"}


def test_a_page_on_another_site_can_neither_read_nor_drive_flower(
        pipeline: Pipeline, flower: Flower) -> None:
    """The exact requests a foreign page makes (a form POST, a fetch) are refused."""
    store = pipeline.rt.store
    before = store.stock_levels()
    body = json.dumps({"args": ["r-evil", "SKU-BOOK", 1000]}).encode()
    status, headers = call(flower.url + "/api/task/async-apply/tasks.inventory.restock",
                           method="POST", headers=BROWSER_CROSS_SITE, data=body)
    assert status == 403, status
    assert "Access-Control-Allow-Origin" not in headers
    for page in ("/api/tasks", "/api/workers", "/tasks"):
        status, headers = call(flower.url + page, headers=BROWSER_CROSS_SITE)
        assert status == 403, (page, status)
        assert "Access-Control-Allow-Origin" not in headers
    # Without fetch metadata (older browsers) a foreign Origin is refused too.
    status, _ = call(flower.url + "/api/workers", headers={"Origin": "http://evil.example"})
    assert status == 403
    # The operator's own page still works, and still gets no CORS header.
    status, headers = call(flower.url + "/api/workers", headers={
        "Sec-Fetch-Site": "same-origin", "Origin": flower.url})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    assert store.stock_levels() == before
    assert store.stock_update("r-evil:SKU-BOOK:restock") is None


def test_flower_asks_for_a_password_unless_told_otherwise(
        pipeline: Pipeline, tmp_path: Path) -> None:
    port = free_port()
    group = ProcessGroup({**os.environ, **pipeline.env, "PIPELINE_FLOWER_PORT": str(port),
                          "PIPELINE_FLOWER_BASIC_AUTH": "ops:s3cret-pass"}, tmp_path)
    group.start(next(line for line in read_procfile() if line.name == "flower"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: call(url + "/api/workers")[0] == 401, timeout=30,
                   message="Flower to answer, asking for credentials")
        import base64

        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret-pass").decode()}
        assert call(url + "/api/workers", headers=auth)[0] == 200
        status, headers = call(url + "/api/workers", headers={**auth, **BROWSER_CROSS_SITE})
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
    finally:
        group.stop(timeout=30)
