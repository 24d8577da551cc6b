"""Celery tasks: one thin module per service. Each loads by id, calls the
service, records the step, and returns ids; messages carry ids only."""
