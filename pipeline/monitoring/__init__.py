"""Monitoring: batched events, metrics, the janitor of transient queues, alarms."""
