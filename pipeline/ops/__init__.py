"""Operating a deployment: the topology as a CloudFormation stack, and `pipeline doctor`."""
