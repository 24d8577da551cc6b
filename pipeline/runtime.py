"""Per-process resources, built when a process starts (never at import).

A Celery prefork child gets fresh ones after the fork (see pipeline.app), so
no database connection or HTTP pool is shared across processes. Each resource
is built once under a lock: the threads lanes run eight tasks at a time, and
two of them must not build two engines.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import boto3
from botocore.config import Config

from config.settings import AWS_USER_AGENT, Settings, load_settings
from pipeline.breaker_state import BreakerConfig
from pipeline.services.breaker import Breaker, GuardedGateway
from pipeline.services.simulators import Faults, SimulatedCarrier, SimulatedGateway
from pipeline.services.validation import Rules
from pipeline.sqs.heartbeat import VisibilityKeeper
from pipeline.sqs.signed import SignedSNS
from pipeline.store import Store, create_db_engine
from pipeline.worker.intake import reset_gates

if TYPE_CHECKING:
    from pipeline.steps import Publisher, StepContext

T = TypeVar("T")
_build_lock = threading.RLock()


class _once(Generic[T]):
    """A cached property built at most once per instance, under one re-entrant lock
    (a resource may build the ones it needs: the gateway builds the store)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __get__(self, instance: Any, owner: Any = None) -> T:
        if instance is None:
            return self  # type: ignore[return-value]
        cached = instance.__dict__.get(self.name, _MISSING)
        if cached is _MISSING:
            with _build_lock:
                cached = instance.__dict__.get(self.name, _MISSING)
                if cached is _MISSING:
                    cached = instance.__dict__[self.name] = self.build(instance)
        return cast(T, cached)


_MISSING = object()


@dataclass
class Runtime:
    settings: Settings

    @_once
    def store(self) -> Store:
        return Store(create_db_engine(self.settings.database_url))

    @_once
    def rng(self) -> random.Random:
        # Each process its own dice: every worker process seeded alike would roll the
        # same faults in lockstep (two prefork children failed their n-th step together).
        seed = self.settings.simulation_seed
        return random.Random(None if seed is None else f"{seed}/{os.getpid()}")

    @_once
    def gateway(self) -> GuardedGateway:
        s = self.settings
        simulated = SimulatedGateway(self.store.engine, Faults(
            s.gateway_latency_ms, s.gateway_transient_error_rate, s.gateway_decline_rate,
            s.gateway_timeout_ms), self.rng)
        breaker = Breaker(self.store, "gateway", BreakerConfig(
            s.gateway_breaker_failures, s.gateway_breaker_open_s))
        return GuardedGateway(simulated, breaker)

    @_once
    def carrier(self) -> SimulatedCarrier:
        s = self.settings
        return SimulatedCarrier(self.store.engine, Faults(
            s.carrier_latency_ms, s.carrier_transient_error_rate, s.carrier_failure_rate,
            s.carrier_timeout_ms), self.rng)

    @_once
    def rules(self) -> Rules:
        s = self.settings
        return Rules(s.max_quantity_per_line, s.max_lines_per_order, s.currencies)

    def aws_client(self, service: str) -> Any:
        s = self.settings
        return boto3.client(
            service, region_name=s.aws_region, endpoint_url=s.sqs_endpoint_url,
            config=Config(connect_timeout=s.connect_timeout_s, read_timeout=30,
                          retries={"max_attempts": 3, "mode": "standard"},
                          user_agent=AWS_USER_AGENT),
            **s.credentials())

    @_once
    def sqs(self) -> Any:
        return self.aws_client("sqs")

    def sns_publisher(self) -> Any:
        """An SNS client for the relay: its PublishBatch signed and sent by hand
        (pipeline.sqs.signed) unless PIPELINE_SQS_SIGNED_CALLS is off."""
        client = self.aws_client("sns")
        if not self.settings.sqs_signed_calls:
            return client
        credentials = boto3.Session(region_name=self.settings.aws_region,
                                    **self.settings.credentials()).get_credentials()
        if credentials is None:
            return client  # botocore will say so, as it always did
        return SignedSNS(client, credentials.get_frozen_credentials)

    @_once
    def visibility(self) -> VisibilityKeeper:
        return VisibilityKeeper(lambda: self.aws_client("sqs"))

    @_once
    def publisher(self) -> Publisher:
        from pipeline.app import app
        from pipeline.dispatch import CeleryPublisher

        return CeleryPublisher(app)

    def step_context(self, **delivery: Any) -> StepContext:
        """A StepContext on this process's resources (`delivery`: attempt, worker, ...)."""
        from pipeline.steps import StepContext

        s = self.settings
        return StepContext(store=self.store, gateway=self.gateway, carrier=self.carrier,
                           rules=self.rules, publisher=self.publisher, rng=self.rng,
                           hold_s=s.reservation_hold_s, low_stock_below=s.low_stock_below,
                           inventory_fault_rate=s.inventory_transient_error_rate, **delivery)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.engine.dispose()


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            from pipeline import tracing

            tracing.start()  # a no-op where the process's entry point started it
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


def reconfigure(env: Mapping[str, str | None]) -> dict[str, str | None]:
    """Set (None: unset) environment variables and forget the settings and clients
    built from the old ones; returns the old values, for reconfigure(saved) later.

    Settings are read from the environment once per process, so this is the one
    way a test, the bench or the demo swaps them.
    """
    saved = {key: os.environ.get(key) for key in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    load_settings.cache_clear()
    reset_runtime()
    reset_gates()  # their limits came from the old settings
    return saved
