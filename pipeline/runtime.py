"""Per-process resources, built when a process starts (never at import).

A Celery prefork child gets fresh ones after the fork (see pipeline.app), so
no database connection or HTTP pool is shared across processes.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from config.settings import Settings, load_settings
from pipeline.services.breaker import Breaker, GuardedGateway
from pipeline.services.breaker_state import BreakerConfig
from pipeline.services.simulators import Faults, SimulatedCarrier, SimulatedGateway
from pipeline.services.validation import Rules
from pipeline.sqs.heartbeat import VisibilityKeeper
from pipeline.store import Store, create_db_engine


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def store(self) -> Store:
        return Store(create_db_engine(self.settings.database_url))

    @cached_property
    def rng(self) -> random.Random:
        return random.Random(self.settings.simulation_seed)

    @cached_property
    def gateway(self) -> GuardedGateway:
        s = self.settings
        simulated = SimulatedGateway(self.store.engine, Faults(
            s.gateway_latency_ms, s.gateway_transient_error_rate, s.gateway_decline_rate,
            s.gateway_timeout_ms), self.rng)
        breaker = Breaker(self.store, "gateway", BreakerConfig(
            s.gateway_breaker_failures, s.gateway_breaker_open_s))
        return GuardedGateway(simulated, breaker)

    @cached_property
    def carrier(self) -> SimulatedCarrier:
        s = self.settings
        return SimulatedCarrier(self.store.engine, Faults(
            s.carrier_latency_ms, s.carrier_transient_error_rate, s.carrier_failure_rate,
            s.carrier_timeout_ms), self.rng)

    @cached_property
    def rules(self) -> Rules:
        s = self.settings
        return Rules(s.max_quantity_per_line, s.max_lines_per_order, s.currencies)

    def aws_client(self, service: str) -> Any:
        s = self.settings
        return boto3.client(
            service, region_name=s.aws_region, endpoint_url=s.sqs_endpoint_url,
            config=Config(connect_timeout=s.connect_timeout_s, read_timeout=30,
                          retries={"max_attempts": 3, "mode": "standard"}),
            **s.credentials())

    @cached_property
    def sqs(self) -> Any:
        return self.aws_client("sqs")

    @cached_property
    def visibility(self) -> VisibilityKeeper:
        return VisibilityKeeper(lambda: self.aws_client("sqs"))

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.engine.dispose()


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


def reset_runtime(*, close: bool = True) -> None:
    """Forget this process's resources (after a fork: close=False, as the
    connections belong to the parent)."""
    global _runtime
    with _lock:
        if _runtime is not None and close:
            _runtime.close()
        _runtime = None
