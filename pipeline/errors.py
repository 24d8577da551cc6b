"""Every error the pipeline raises, split into retryable and permanent.

Each class's docstring is its default message. Retryable errors are worth
another attempt later (the retry policy decides when); permanent errors will
fail the same way every time, so the step's compensation runs instead.
"""

from __future__ import annotations

from config.settings import SettingsError

__all__ = [
    "BrokerUnavailable",
    "CircuitOpen",
    "ConfigurationError",
    "FifoGroupMissing",
    "GatewayUnavailable",
    "InvalidOrder",
    "InvalidTaskArguments",
    "OrderConflict",
    "OrderNotFound",
    "PermanentError",
    "PipelineError",
    "ProvisioningError",
    "RetryableError",
    "SettingsError",
    "StepOverran",
    "StoreUnavailable",
]


class PipelineError(Exception):
    """The order pipeline failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class RetryableError(PipelineError):
    """A transient failure; the step will be attempted again with backoff."""


class PermanentError(PipelineError):
    """A failure that another attempt will not fix."""


class ConfigurationError(PermanentError):
    """The configuration is invalid."""


class ProvisioningError(PermanentError):
    """The queues or topics do not match the topology."""


class BrokerUnavailable(RetryableError):
    """The SQS endpoint could not be reached."""


class GatewayUnavailable(RetryableError):
    """The payment gateway or carrier did not answer in time."""


class StepOverran(RetryableError):
    """A step ran past its time limit (PIPELINE_STEP_TIME_LIMIT_S) and was stopped."""


class StoreUnavailable(RetryableError):
    """The order store did not answer (locked, connection lost, or an injected fault)."""


class FifoGroupMissing(PermanentError):
    """A message for a FIFO queue was published without a real MessageGroupId."""


class CircuitOpen(RetryableError):
    """The circuit breaker refuses calls to a failing system for a while."""

    def __init__(self, system: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"{system} circuit open: calls refused for {retry_after_s:.1f}s more")


class InvalidTaskArguments(PermanentError):
    """A task message asks for something the store says the pipeline never sent."""


class OrderNotFound(PermanentError):
    """No order with that id."""


class OrderConflict(PermanentError):
    """An order with that id already exists with different content."""


class InvalidOrder(PermanentError):
    """The order document is malformed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid order: " + "; ".join(problems))


# What the command line reports as a message (exit 1), not a traceback.
REPORTED = (PipelineError, SettingsError)
