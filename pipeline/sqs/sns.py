"""SNS lookups shared by provisioning, the relay, the broadcast channel and the janitor."""

from __future__ import annotations

from typing import Any

__all__ = ["topic_arns"]


def topic_arns(sns: Any) -> dict[str, str]:
    """Every SNS topic the client's account and region hold: name -> ARN, all pages."""
    found: dict[str, str] = {}
    for page in sns.get_paginator("list_topics").paginate():
        for entry in page.get("Topics", []):
            arn = str(entry["TopicArn"])
            found[arn.rsplit(":", 1)[-1]] = arn
    return found
