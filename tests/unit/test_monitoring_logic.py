"""Pure logic behind monitoring on SQS: transient queue names and leases, secret
redaction, event batches."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.monitoring.redaction import REDACTED, redact, redact_headers
from pipeline.sqs.transient import (
    LEASE_TAG,
    MAX_QUEUE_NAME,
    Lease,
    TransientKind,
    fit_queue_name,
    transient_kind,
)

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=200)


def test_each_kind_of_monitoring_queue_is_recognised_in_both_spellings() -> None:
    """kombu writes '.', SQS names have '-': both name the same queue."""
    for name, kind in [
        ("celeryev.0b7f", TransientKind.EVENTS), ("celeryev-0b7f", TransientKind.EVENTS),
        ("orders@vm.celery.pidbox", TransientKind.MAILBOX),
        ("orders_vm-celery-pidbox", TransientKind.MAILBOX),
        ("3f1c.reply.celery.pidbox", TransientKind.REPLIES),
        ("3f1c-reply-celery-pidbox", TransientKind.REPLIES),
    ]:
        assert transient_kind(name) == kind, name


def test_work_queues_are_never_transient() -> None:
    for name in ("orders", "inventory.fifo", "payments-dlq", "celeryevents", "pidbox"):
        assert transient_kind(name) is None


@given(NAMES)
def test_a_fitted_name_is_legal_stable_and_unchanged_when_short(name: str) -> None:
    """Long names are shortened the same way in every process; short ones are kept."""
    fitted = fit_queue_name(name)
    assert len(fitted) <= MAX_QUEUE_NAME
    assert fitted == fit_queue_name(name)
    if len(name) <= MAX_QUEUE_NAME:
        assert fitted == name


@given(st.lists(NAMES.map(lambda s: s * 3), min_size=2, max_size=2, unique=True))
def test_two_long_names_stay_distinct(names: list[str]) -> None:
    assert fit_queue_name(names[0]) != fit_queue_name(names[1])


def test_a_fifo_name_keeps_its_suffix_when_shortened() -> None:
    assert fit_queue_name("x" * 120 + ".fifo").endswith(".fifo")


@given(st.floats(min_value=30, max_value=86_400), st.floats(min_value=0, max_value=1e9))
def test_a_lease_runs_out_exactly_when_its_tag_says(duration: float, now: float) -> None:
    tags = Lease(duration).tags("host:1", now=now)
    assert not Lease.expired(tags, created_at=0, now=now + duration - 1, duration_s=duration)
    assert Lease.expired(tags, created_at=0, now=now + duration + 1, duration_s=duration)
    assert Lease(duration).renew_every_s * 3 <= duration + 1e-9


def test_an_untagged_queue_counts_from_its_creation_and_a_garbled_tag_is_expired() -> None:
    assert not Lease.expired({}, created_at=1000, now=1100, duration_s=180)
    assert Lease.expired({}, created_at=1000, now=1200, duration_s=180)
    assert Lease.expired({LEASE_TAG: "soon"}, created_at=1000, now=1001, duration_s=180)


@given(st.from_regex(r"tok_[A-Za-z0-9]{4,20}", fullmatch=True),
       # A quote that opens an address is read as a repr's quote, so addresses here
       # start with a letter or digit, as contact addresses do.
       st.emails().filter(lambda e: e[0].isalnum()),
       st.from_regex(r"\+[1-9][0-9]{7,13}", fullmatch=True))
# Regressions: an apostrophe after a symbol or another apostrophe of the local part
# ended the match, and the address went to Flower unmasked.
@example("tok_0000", "0/'@A.aT", "+10000000")
@example("tok_0000", "0''@A.AE", "+10000000")
def test_tokens_emails_and_phone_numbers_are_masked(token: str, email: str, phone: str) -> None:
    text = f"order demo-1 pay {token} mail {email} call {phone}"
    masked = redact(text)
    for secret in (token, email, phone):
        assert secret not in masked
    assert "demo-1" in masked and masked.count(REDACTED) >= 3


def test_card_like_numbers_are_masked_but_order_ids_survive() -> None:
    assert redact("4111 1111 1111 1111") == REDACTED
    assert redact("ord_1234abcd demo-9f2c SKU-BOOK x3") == "ord_1234abcd demo-9f2c SKU-BOOK x3"


def test_argument_reprs_in_headers_are_masked_in_place() -> None:
    headers = {"argsrepr": "('tok_visa',)", "kwargsrepr": "{'email': 'a@b.co'}", "id": "x"}
    redact_headers(headers)
    assert headers == {"argsrepr": f"('{REDACTED}',)", "kwargsrepr": f"{{'email': '{REDACTED}'}}",
                       "id": "x"}


def test_every_queue_gets_backlog_and_age_alarms_and_every_dlq_a_not_empty_alarm() -> None:
    """Derived from the topology, and each one a valid PutMetricAlarm request for
    botocore's own model of the CloudWatch API (no call is made)."""
    import boto3
    from botocore.validate import validate_parameters

    from config.settings import Settings
    from config.topology import QUEUES
    from pipeline.monitoring.alarms import alarm_specs

    settings = Settings(queue_prefix="prod-", aws_region="eu-west-1")
    specs = alarm_specs(settings, "123456789012")
    assert len(specs) == 3 * len(QUEUES)
    by_name = {s["AlarmName"]: s for s in specs}
    assert len(by_name) == len(specs)
    dlq = by_name["prod-payments-dlq-not-empty"]
    assert dlq["Threshold"] == 0 and dlq["Dimensions"][0]["Value"] == "prod-payments-dlq"
    assert by_name["prod-inventory-oldest"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert all(s["AlarmActions"] == ["arn:aws:sns:eu-west-1:123456789012:prod-system-health"]
               for s in specs)
    model = boto3.client("cloudwatch", region_name="eu-west-1").meta.service_model
    shape = model.operation_model("PutMetricAlarm").input_shape
    for spec in specs:
        validate_parameters(spec, shape)  # raises ParamValidationError when malformed


def test_a_consumer_that_stopped_receiving_is_found_and_exits_non_zero() -> None:
    """pipeline.sqs.liveness: the watchdog's rule and its exit."""
    import threading

    from pipeline.sqs import liveness

    assert liveness.stalled({"orders": 10.0, "shipping": 59.0}, 10, 20) == []  # limit 60 s
    assert liveness.stalled({"orders": 10.0, "shipping": 71.0}, 10, 20) == ["shipping"]
    liveness.received("orders")
    assert liveness.ages(["orders"])["orders"] < 5
    exited = threading.Event()
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        exited.set()

    reports: list[dict[str, float]] = []
    old, liveness.CHECK_EVERY_S = liveness.CHECK_EVERY_S, 0.01
    try:
        liveness.start_watchdog("orders", lambda: ["orders"], wait_time_s=10,
                                read_timeout_s=20, report=lambda host, a: reports.append(a),
                                exit_process=exit_process)
        liveness._last["orders"] -= 1000  # no receive for 1000 s
        assert exited.wait(10)
    finally:
        liveness.CHECK_EVERY_S = old
    assert codes[:1] == [liveness.EXIT_CODE]
    assert reports and reports[-1]["orders"] > 900
