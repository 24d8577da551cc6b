"""Create the SQS queues and SNS topics a CloudFormation template describes, on any
SQS/SNS endpoint (the emulator has no CloudFormation), resolving the few
intrinsic functions pipeline.ops.cloudformation uses. For the drift test:
a stack made from the template must be what `pipeline provision --check` expects."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["create_stack", "resolve"]


def resolve(value: Any, names: dict[str, str], arns: dict[str, str] | None = None) -> Any:
    """Fn::Sub, Ref and Fn::GetAtt [..., Arn] with `names` (${Prefix}, ${AWS::...})."""
    if isinstance(value, list):
        return [resolve(v, names, arns) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Sub" in value:
        text = str(value["Fn::Sub"])
        for key, replacement in names.items():
            text = text.replace("${" + key + "}", replacement)
        if "${" in text:
            raise ValueError(f"unresolved substitution in {text[:80]!r}")
        return text
    if "Ref" in value:
        return names[value["Ref"]]
    if "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        if attribute != "Arn" or arns is None or resource not in arns:
            raise ValueError(f"cannot resolve GetAtt {resource}.{attribute}")
        return arns[resource]
    return {k: resolve(v, names, arns) for k, v in value.items()}


def _attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def create_stack(template: dict[str, Any], sqs: Any, sns: Any, *, prefix: str,
                 region: str = "us-east-1", account: str = "000000000000") -> list[str]:
    """Create every AWS::SQS::Queue (dead-letter targets first) and AWS::SNS::Topic;
    returns the names created."""
    names = {"Prefix": prefix, "AWS::Region": region, "AWS::AccountId": account,
             "AWS::Partition": "aws"}
    resources = template["Resources"]
    queues = {rid: r for rid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    order = sorted(queues, key=lambda rid: "RedrivePolicy" in queues[rid]["Properties"])
    arns: dict[str, str] = {}
    created = []
    for rid in order:
        properties = resolve(queues[rid]["Properties"], names, arns)
        name = properties.pop("QueueName")
        url = sqs.create_queue(QueueName=name, Attributes={
            k: _attribute(v) for k, v in properties.items()})["QueueUrl"]
        arns[rid] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]
                                             )["Attributes"]["QueueArn"]
        created.append(name)
    for r in resources.values():
        if r["Type"] == "AWS::SNS::Topic":
            name = resolve(r["Properties"]["TopicName"], names)
            sns.create_topic(Name=name)
            created.append(name)
    return created
