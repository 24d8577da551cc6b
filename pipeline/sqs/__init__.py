"""Our SQS side: the local emulator, provisioning from the topology, IAM."""
