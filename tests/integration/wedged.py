"""A task that wedges its process the first time it runs, for test_time_limits.

Included into a test's orders worker (`celery worker -I tests.integration.wedged`);
the suite's other workers never see it. It ignores the soft time limit, as a step
stuck where no Python exception reaches it would, so only the hard limit's kill ends
it; delivered again, it returns at once and leaves a mark.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from pipeline.app import app

WEDGE = "tests.wedged.hang"


@app.task(bind=True, name=WEDGE, acks_late=True)
def hang(self: Any, directory: str) -> None:
    started = Path(directory) / str(self.request.id)
    if started.exists():  # killed once: this delivery runs like any other
        started.with_suffix(".done").touch()
        return
    started.touch()
    while True:
        try:
            time.sleep(3600)
        except SoftTimeLimitExceeded:
            continue
