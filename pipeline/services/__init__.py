"""Business services: plain Python over the store; no Celery imports here."""

from pipeline.services.outcome import StepResult

__all__ = ["StepResult"]
