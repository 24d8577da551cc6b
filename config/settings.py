"""One typed settings object, read from the environment (prefix ``PIPELINE_``).

Every process reads it once at start-up (:func:`load_settings`); an invalid
value fails there, naming the variable, before any queue is touched.
"""

from __future__ import annotations

import platform
import re
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import botocore
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.topology import LONG_POLL_S, QueueSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"


def _package_version() -> str:
    try:
        return version("order-pipeline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


# Between a step's soft time limit and the kill of its prefork process: time to roll
# back, record the failure and hand the message back (tasks.base).
STEP_KILL_GRACE_S = 5


# Every botocore client (kombu's and ours) sends this fixed User-Agent. Left to
# itself botocore rebuilds the header from ~40 components on every request, twice:
# 13 % of a SendMessage's CPU and 9 % of a receive + batch delete, measured here
# (1.05 -> 0.91 ms per send). What it drops is the SDK's feature telemetry to AWS.
AWS_USER_AGENT = (f"order-pipeline/{_package_version()} botocore/{botocore.__version__} "
                  f"Python/{platform.python_version()}")

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class SettingsError(ValueError):
    """A PIPELINE_* variable is invalid. Declared here so that config/ imports nothing
    of pipeline/; pipeline.errors lists it with every other error."""


class Settings(BaseSettings):
    """Everything a pipeline process needs to know about its environment."""

    model_config = SettingsConfigDict(
        env_prefix="PIPELINE_", env_file=".env", extra="ignore", frozen=True
    )

    # --- SQS / SNS -------------------------------------------------------
    sqs_endpoint_url: str | None = Field(
        default=None,
        description="SQS/SNS endpoint, e.g. http://127.0.0.1:4566 for the local emulator. "
        "Unset: real AWS through boto3's normal credential chain.",
    )
    aws_region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    aws_access_key_id: str | None = Field(
        default=None, description="Only for a custom endpoint; AWS uses the credential chain."
    )
    aws_secret_access_key: str | None = None
    queue_prefix: str = Field(
        default="dev-",
        description="Prepended to every queue and topic name; isolates environments and test runs.",
    )
    emulator_port: int = Field(default=4566, ge=1, le=65535)
    emulator_data_dir: Path = VAR_DIR / "fauxqs"
    connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    sqs_signed_calls: bool = Field(default=True, description=(
        "Workers and producers send SendMessage, SendMessageBatch and DeleteMessageBatch, "
        "and the relay SNS PublishBatch, as hand-signed requests (pipeline.sqs.signed: "
        "~0.16 against ~0.74 ms of CPU per send); anything but a 200 answer goes through "
        "botocore. false: botocore only."))

    # --- Celery tuning (measured: see config/celery.py) ---------------------
    wait_time_seconds: int = Field(default=LONG_POLL_S, ge=0, le=20)
    polling_interval: float = Field(default=0.01, ge=0, le=10)
    prefetch_multiplier: int = Field(default=16, ge=1, le=64)
    step_time_limit_s: int = Field(default=300, ge=1, le=43_200, description=(
        "A step still running this long is stopped: Celery's soft time limit raises "
        "inside it and the step is retried with backoff, as any transient failure; "
        f"{STEP_KILL_GRACE_S} s later a prefork lane kills the process (a step wedged "
        "where no exception reaches it), and the kill is retried or given up the same "
        "way. Each worker's own setting decides for the steps it runs. Threads "
        "lanes (payments, priority) cannot stop a thread: their calls' own timeouts "
        "bound them."))
    visibility_cap_s: int | None = Field(default=None, ge=5, le=43_200, description=(
        "Caps every queue's visibility timeout (test and chaos environments, where a "
        "dead worker's messages should come back in seconds); unset in production."))

    def visibility(self, spec: QueueSpec) -> int:
        """The visibility timeout of `spec` in this environment."""
        if self.visibility_cap_s is None:
            return spec.visibility_timeout
        return min(spec.visibility_timeout, self.visibility_cap_s)

    # --- Monitoring: events and remote control over SNS fanout --------------
    events: bool = Field(default=True, description="Workers send task events and answer "
                         "remote control (Flower, celery inspect/control).")
    event_flush_s: float = Field(default=1.0, gt=0, le=30,
                                 description="Events are batched into one message per interval.")
    task_log: bool = Field(default=False, description=(
        "Workers log Celery's line per task received and per task succeeded (~3 % of a "
        "lane's CPU). Off: each order's timeline (`pipeline show`) records every attempt "
        "with its outcome, and retries, failures and dead letters still log."))
    transient_lease_s: int = Field(default=180, ge=30, le=86_400, description=(
        "Event, mailbox and reply queues whose owner stopped renewing this long ago "
        "are removed by the janitor."))

    # --- Overload (pipeline.worker.intake) ---------------------------------------------
    # About 10 s of one 2-core box's capacity: enough to keep every lane busy, and
    # far inside the visibility timeouts. At 1000 the gate closed only ~40 s into an
    # overload (2x never reached it), and until then the lanes spread over ever more
    # orders: with coalescing producers, 4x capacity gave 77 % of peak goodput and
    # 1.33x the CPU per order at 1000, 94 % and 0.88x at 200 (overload section of
    # make bench, 2026-12-03).
    intake_limit: int = Field(default=200, ge=0, le=1_000_000, description=(
        "Orders in progress at which workers stop receiving new orders from the intake "
        "queue (they wait in SQS) until 80 % of it is left; 0: no limit. Past capacity, "
        "the lanes then finish the orders they hold instead of spreading over more."))

    # --- Reconciler and maintenance (Celery beat; pipeline.ops.reconcile) ------------
    reconcile_interval_s: float = Field(default=30.0, gt=0, le=3600, description=(
        "How often beat runs the reconciler sweep (and the hold expiry)."))
    reconcile_slack_s: float = Field(default=60.0, ge=0, le=86_400, description=(
        "Added to each status's deadline (its next step's queue visibility x "
        "maxReceiveCount) before an order without progress is re-driven."))
    attention_retry_s: float = Field(default=60.0, gt=0, le=86_400, description=(
        "An order waiting for attention (a compensation gave up) is retried this often."))

    # --- Database ----------------------------------------------------------
    database_url: str = Field(default=f"sqlite:///{VAR_DIR / 'pipeline.db'}")

    # --- Flower ------------------------------------------------------------
    flower_address: str = "127.0.0.1"
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_basic_auth: str | None = Field(default=None, description="user:password")
    flower_unauthenticated_api: bool = Field(default=False, description=(
        "Flower without authentication: loopback only, cross-site requests refused."))

    # --- Metrics (Prometheus text format; `pipeline metrics`) ----------------
    metrics_address: str = "127.0.0.1"
    metrics_port: int = Field(default=9808, ge=1, le=65535)
    metrics_public: bool = Field(default=False, description=(
        "Allow a non-loopback PIPELINE_METRICS_ADDRESS (the endpoint has no auth)."))

    # --- Business rules ----------------------------------------------------
    max_quantity_per_line: int = Field(default=100, ge=1)
    max_lines_per_order: int = Field(default=50, ge=1)
    currencies: tuple[str, ...] = ("USD", "EUR", "GBP")
    reservation_hold_s: int = Field(default=1800, ge=60)
    low_stock_below: int = Field(default=10, ge=0, description=(
        "An inventory-alerts event when a reservation leaves fewer than this available."))

    # --- Simulated payment gateway and carrier ---------------------------
    gateway_latency_ms: float = Field(default=2.0, ge=0)
    gateway_transient_error_rate: Rate = 0.0
    gateway_decline_rate: Rate = 0.0
    gateway_timeout_ms: float = Field(default=2000.0, gt=0)
    # Circuit breaker on the payment gateway (shared by every worker).
    gateway_breaker_failures: int = Field(default=5, ge=1,
                                          description="consecutive failures that open it")
    gateway_breaker_open_s: float = Field(default=10.0, gt=0,
                                          description="how long it refuses calls when open")
    carrier_latency_ms: float = Field(default=2.0, ge=0)
    carrier_transient_error_rate: Rate = 0.0
    carrier_failure_rate: Rate = 0.0
    carrier_timeout_ms: float = Field(default=2000.0, gt=0)
    # Fault injection: this share of inventory update attempts fails transiently
    # before touching stock, so tests and chaos runs exercise in-place FIFO retries;
    # a step's last attempt is spared (an injected fault never makes it give up).
    inventory_transient_error_rate: Rate = 0.0
    simulation_seed: int | None = Field(default=None, description=(
        "Seeds the simulators' dice: each process rolls its own stream, from this "
        "seed and its pid."))

    @field_validator("queue_prefix")
    @classmethod
    def _prefix_is_a_legal_queue_name_part(cls, value: str) -> str:
        # SQS names: 1-80 chars of [A-Za-z0-9_-]; the longest topology name is
        # 25 chars with its DLQ suffix, which leaves 40 for the prefix.
        if not re.fullmatch(r"[A-Za-z0-9_-]{0,40}", value):
            raise ValueError("use at most 40 letters, digits, '-' or '_'")
        return value

    @field_validator("sqs_endpoint_url")
    @classmethod
    def _endpoint_is_http(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"https?://[^/\s:]+(:\d{1,5})?/?", value):
            raise ValueError("expected http(s)://HOST[:PORT], e.g. http://127.0.0.1:4566")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_is_supported(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql+psycopg://", "postgresql://")):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _auth_is_user_colon_password(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[^:\s]+:\S+", value):
            raise ValueError("expected user:password")
        return value or None

    @model_validator(mode="after")
    def _flower_is_never_open(self) -> Settings:
        loopback = self.flower_address in ("127.0.0.1", "localhost", "::1")
        if not loopback and not self.flower_basic_auth:
            raise ValueError("PIPELINE_FLOWER_BASIC_AUTH is required when "
                             "PIPELINE_FLOWER_ADDRESS is not loopback")
        if self.flower_unauthenticated_api and not loopback:
            raise ValueError("PIPELINE_FLOWER_UNAUTHENTICATED_API is allowed on a loopback "
                             "PIPELINE_FLOWER_ADDRESS only")
        if self.metrics_address not in ("127.0.0.1", "localhost", "::1") and \
                not self.metrics_public:
            raise ValueError("PIPELINE_METRICS_ADDRESS: not loopback; set "
                             "PIPELINE_METRICS_PUBLIC=true to serve metrics (no personal "
                             "data, no authentication) beyond this host")
        return self

    @property
    def uses_emulator(self) -> bool:
        return self.sqs_endpoint_url is not None

    def credentials(self) -> dict[str, str]:
        """boto3 client keyword arguments for credentials (empty: use the chain)."""
        if self.aws_access_key_id and self.aws_secret_access_key:
            return {
                "aws_access_key_id": self.aws_access_key_id,
                "aws_secret_access_key": self.aws_secret_access_key,
            }
        if self.uses_emulator:  # emulators accept any key; botocore insists on one
            return {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        return {}


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = f"PIPELINE_{field.upper()}" if field else "settings"
        lines.append(f"{variable}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Read and validate the environment once per process."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
