"""Integration tier: the real emulator over HTTP, real `celery worker`
processes started from the Procfile's lines, a real SQLite file and a real
PostgreSQL database. The workflow suite runs once per database."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.topology import QUEUES
from pipeline.dev.procfile import ProcessGroup
from pipeline.runtime import Runtime, get_runtime, reconfigure, reset_runtime
from pipeline.sqs.emulator import Emulator, start_emulator
from pipeline.sqs.provision import provision
from pipeline.store import create_schema
from pipeline.testing import (
    postgres_database,
    postgres_reachable,
    restore_environment,
    run_cli,
    worker_lanes,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "PIPELINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
INTAKE_LIMIT = 40  # PIPELINE_INTAKE_LIMIT of the integration stacks


def _apply_env(env: dict[str, str]) -> None:
    reconfigure(env)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One fauxqs per test session, on a free port, in memory."""
    emu = start_emulator(0)
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def base_env(emulator: Emulator) -> Iterator[dict[str, str]]:
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    env = {"PIPELINE_SQS_ENDPOINT_URL": emulator.endpoint, "PIPELINE_QUEUE_PREFIX": prefix,
           "PIPELINE_WAIT_TIME_SECONDS": "2", "PIPELINE_SIMULATION_SEED": "7",
           # Every inventory update may fail transiently: the whole suite
           # runs with FIFO retries in place happening.
           "PIPELINE_INVENTORY_TRANSIENT_ERROR_RATE": "0.05",
           # Low enough for tests/integration/test_intake.py to reach with filler orders.
           "PIPELINE_INTAKE_LIMIT": str(INTAKE_LIMIT)}
    saved = {k: os.environ.get(k) for k in [*env, "PIPELINE_DATABASE_URL"]}
    yield env
    restore_environment(saved)


@dataclass
class Pipeline:
    """A running pipeline: emulator, provisioned queues, database, worker lanes."""

    backend: str
    env: dict[str, str]
    log_dir: Path
    lanes: ProcessGroup

    @property
    def rt(self) -> Runtime:
        return get_runtime()

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `pipeline ARGS...` against this pipeline, as a user would."""
        return run_cli(self.env, *args, stdin=stdin)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def pipeline(request: pytest.FixtureRequest, base_env: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    backend = request.param
    tmp = tmp_path_factory.mktemp(backend)
    with ExitStack() as stack:
        if backend == "postgresql":
            why = postgres_reachable(POSTGRES_ADMIN_URL)
            if why:
                pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({why}): "
                            "the PostgreSQL run of the integration suite was SKIPPED")
            url = stack.enter_context(postgres_database(POSTGRES_ADMIN_URL))
        else:
            url = f"sqlite:///{tmp / 'pipeline.db'}"
        env = {**base_env, "PIPELINE_DATABASE_URL": url}
        _apply_env(env)
        _require_the_apps_broker_is(env)
        rt = get_runtime()
        provision(rt.settings, rt.aws_client("sqs"), rt.aws_client("sns"))
        create_schema(rt.store.engine)
        stack.callback(reset_runtime)
        stack.callback(_purge_all, rt)
        log_dir = ARTIFACTS / f"logs-{backend}"
        lanes = stack.enter_context(worker_lanes(env, log_dir))
        from pipeline.dev.demo import wait_for_lanes

        wait_for_lanes(timeout=120)
        yield Pipeline(backend, env, log_dir, lanes)


def _require_the_apps_broker_is(env: dict[str, str]) -> None:
    """This process's Celery app reads its broker settings once, when first used. A
    test that used it before this tier set the emulator's endpoint would leave every
    publish here going to the wrong place; say so instead of 77 setup errors."""
    from pipeline.app import app

    if not app.configured:
        return
    options = app.conf.broker_transport_options or {}
    prefix = options.get("queue_name_prefix")
    if prefix != env["PIPELINE_QUEUE_PREFIX"] or env["PIPELINE_SQS_ENDPOINT_URL"].split(
            "//", 1)[-1] not in str(app.conf.broker_url):
        raise AssertionError(
            f"this process's Celery app was configured before the integration tier set "
            f"its environment (prefix {prefix!r}, broker {app.conf.broker_url!r}): a "
            "test that runs earlier used the app (a task, a signature, app.conf)")


def _purge_all(rt: Runtime) -> None:
    """Leave no message for the next backend's workers."""
    sqs = rt.aws_client("sqs")
    for spec in QUEUES:
        for name in (spec.name, spec.dlq_name):
            url = sqs.get_queue_url(QueueName=rt.settings.queue_prefix + name)["QueueUrl"]
            sqs.purge_queue(QueueUrl=url)
