"""Configuration: typed settings, the queue topology table, the Celery config."""
