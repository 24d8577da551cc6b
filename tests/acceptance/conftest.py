"""The acceptance tier drives the CLI against a running, stocked pipeline."""

from __future__ import annotations

import pytest

from pipeline.testing import stock_catalog
from tests.fixtures import Pipeline


@pytest.fixture(autouse=True)
def stocked(pipeline: Pipeline) -> Pipeline:
    stock_catalog(pipeline.rt.store)
    return pipeline
