"""Operating a deployment: audit, dead letters, the reconciler, the outbox relay, IAM,
the topology as a CloudFormation stack, and `pipeline doctor`."""
