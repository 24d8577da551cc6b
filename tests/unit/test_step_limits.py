"""A step stopped by its soft time limit is a transient failure with a reason."""

from __future__ import annotations

import random

from celery.exceptions import SoftTimeLimitExceeded

from config.topology import Task
from pipeline.errors import StepOverran
from pipeline.retry import GiveUp, Retry, RetryPolicy, decide
from tasks.base import overran


def test_a_step_past_its_soft_time_limit_is_retried_then_given_up_with_the_reason() -> None:
    error = overran(Task.SHIP, SoftTimeLimitExceeded(), 300)
    assert isinstance(error, StepOverran)
    first = decide(error, attempt=1, max_attempts=2, policy=RetryPolicy(),
                   rng=random.Random(1), can_defer=True)
    last = decide(error, attempt=2, max_attempts=2, policy=RetryPolicy(),
                  rng=random.Random(1), can_defer=True)
    assert isinstance(first, Retry)
    assert isinstance(last, GiveUp)
    assert "tasks.shipping.ship_order ran past its time limit of 300 s" in last.reason


def test_any_other_failure_is_left_as_it_is() -> None:
    error = ValueError("a bug")
    assert overran(Task.SHIP, error, 300) is error
