"""Least privilege per role: exact ARNs, "*" only where AWS allows nothing else, and
parliament (AWS policy linter) has nothing to say about any role's policy."""

from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

from config.settings import Settings
from config.topology import QUEUES
from pipeline.errors import ConfigurationError
from pipeline.ops.iam import ENTRY_QUEUES, UNSCOPED_ACTIONS, policy, roles, worker_lanes

ACCOUNT = "123456789012"
SETTINGS = Settings(database_url="sqlite:///unused.db", queue_prefix="prod-")
ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:prod-"


def statements(role: str) -> list[dict[str, object]]:
    return list(policy(SETTINGS, role, ACCOUNT)["Statement"])


@pytest.mark.parametrize("role", roles())
def test_parliament_finds_nothing_in_any_roles_policy(role: str) -> None:
    findings = analyze_policy_string(json.dumps(policy(SETTINGS, role, ACCOUNT))).findings
    assert [(f.issue, f.detail) for f in findings] == []


@pytest.mark.parametrize("role", roles())
def test_star_only_for_actions_aws_grants_on_star_alone(role: str) -> None:
    for statement in statements(role):
        resources = statement["Resource"]
        assert isinstance(resources, list)
        if "*" in resources:
            assert resources == ["*"]
            assert set(statement["Action"]) <= UNSCOPED_ACTIONS  # type: ignore[call-overload]
        for resource in resources:
            assert resource == "*" or ":prod-" in resource, resource


def test_producers_send_to_the_entry_queues_only() -> None:
    (only,) = statements("producer")
    assert only["Action"] == ["sqs:GetQueueUrl", "sqs:SendMessage"]
    assert only["Resource"] == sorted(ARN + name for name in ENTRY_QUEUES)


def test_a_worker_consumes_only_its_lanes_queues_and_nothing_operators_do() -> None:
    lanes = worker_lanes()
    assert lanes["orders"] == ("orders", "shipping")
    for lane, queues in lanes.items():
        found = {str(s["Sid"]): s for s in statements(f"worker-{lane}")}
        assert found["ConsumeOwnQueues"]["Resource"] == sorted(ARN + q for q in queues)
        grants = [(str(a), str(r)) for s in found.values()
                  for a in s["Action"] for r in s["Resource"]]  # type: ignore[attr-defined]
        assert not [g for g in grants if g[0] == "sqs:PurgeQueue"]
        assert not [g for g in grants if g[0] == "sqs:ReceiveMessage" and "-dlq" in g[1]]
        assert not [g for g in grants if g[0] == "sqs:SetQueueAttributes"
                    and g[1].startswith(ARN) and "celery" not in g[1]]


def test_operator_tooling_is_in_the_operator_role() -> None:
    found = {a: s["Resource"] for s in statements("operator") for a in s["Action"]}  # type: ignore[attr-defined]
    assert set(found["sqs:PurgeQueue"]) == {ARN + spec.dlq_name for spec in QUEUES}
    assert "sqs:CreateQueue" in found


def test_a_prefix_another_environment_could_match_is_refused() -> None:
    for prefix in ("", "dev"):
        with pytest.raises(ConfigurationError, match="ends in"):
            policy(Settings(database_url="sqlite:///x.db", queue_prefix=prefix), "producer")
