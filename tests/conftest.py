"""Shared fixtures. Settings are read from the environment, so every fixture
that changes PIPELINE_* also forgets the cached settings and runtime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.runtime import reconfigure


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch whose PIPELINE_* changes are seen by load_settings()."""
    reconfigure({})
    yield monkeypatch
    reconfigure({})


pytest_plugins = ["tests.fixtures"]
