"""Wedges for test_time_limits: steps stuck where no Python exception reaches them.

Included into a test's orders worker (`celery worker -I tests.integration.wedged`);
the suite's other workers never see it. Both wedges ignore the soft time limit, as
a step stuck in a C call or a library that swallows exceptions would, so only the
hard limit's kill ends them.

* `hang`: a task that wedges its process the first time it runs; delivered again,
  it returns at once and leaves a mark.
* With WEDGED_POSTCODE_ENV set in the worker's environment, the simulated carrier
  wedges on every shipment to that postal code: a real step (ship_order) that is
  killed on each of its attempts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from pipeline.app import app
from pipeline.services.simulators import SimulatedCarrier

WEDGE = "tests.wedged.hang"
WEDGED_POSTCODE_ENV = "PIPELINE_TEST_WEDGED_POSTCODE"


def _wedge() -> None:
    while True:
        try:
            time.sleep(3600)
        except SoftTimeLimitExceeded:
            continue


@app.task(bind=True, name=WEDGE, acks_late=True)
def hang(self: Any, directory: str) -> None:
    started = Path(directory) / str(self.request.id)
    if started.exists():  # killed once: this delivery runs like any other
        started.with_suffix(".done").touch()
        return
    started.touch()
    _wedge()


def _wedge_shipments_to(postcode: str) -> None:
    create_shipment = SimulatedCarrier.create_shipment

    def wedged(self: SimulatedCarrier, key: str, address: dict[str, Any],
               parcels: int) -> dict[str, Any]:
        if address.get("postalCode") == postcode:
            _wedge()
        return create_shipment(self, key, address, parcels)

    SimulatedCarrier.create_shipment = wedged  # type: ignore[method-assign]


if _postcode := os.environ.get(WEDGED_POSTCODE_ENV):
    _wedge_shipments_to(_postcode)
