"""Shared fixtures. Settings are read from the environment, so every fixture
that changes PIPELINE_* also forgets the cached settings and runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.settings import load_settings
from pipeline.runtime import reset_runtime


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch whose PIPELINE_* changes are seen by load_settings()."""
    load_settings.cache_clear()
    reset_runtime()
    yield monkeypatch
    load_settings.cache_clear()
    reset_runtime()


pytest_plugins = ["tests.fixtures"]
