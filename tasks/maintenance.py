"""Periodic work, scheduled by Celery beat (the Procfile's `beat` line).

Every PIPELINE_RECONCILE_INTERVAL_S beat sends one `reconcile` message to the
orders lane. The sweep runs under a lease in the store, so two beats started
by mistake (two messages per interval) still sweep once: the second finds the
lease held and skips. Each sweep re-drives orders without progress
(pipeline.ops.reconcile) and expires reservation holds of orders stuck before
shipment (PIPELINE_RESERVATION_HOLD_S; `pipeline stock expire-holds` is the
manual form). The transient-queue janitor needs no schedule here: every
process holding a transient queue runs it each lease period.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from config.topology import Task
from pipeline import steps
from pipeline.app import app
from pipeline.ops.reconcile import deadlines, reconcile
from pipeline.runtime import get_runtime
from pipeline.services import inventory

log = logging.getLogger("pipeline.maintenance")


@app.task(bind=True, name=Task.RECONCILE.value, acks_late=True)
def reconcile_orders(self: Any) -> dict[str, Any]:
    rt = get_runtime()
    s = rt.settings
    holder = f"{self.request.hostname}:{os.getpid()}"
    ctx = rt.step_context(worker=holder)
    try:
        report = reconcile(ctx, deadlines(s.reconcile_slack_s, s.attention_retry_s,
                                          s.visibility),
                           holder=holder, lease_s=s.reconcile_interval_s * 0.9)
        expired = [] if report.skipped else [
            order_id for order_id in inventory.stale_holds(rt.store)
            if inventory.expire_hold(rt.store, order_id)]
        for order_id in expired:
            steps.advance(ctx, order_id)
    except Exception as error:  # the next sweep tries again; nothing is lost by waiting
        log.exception("reconciler sweep failed: %s", error)
        return {"error": f"{type(error).__name__}: {error}"}
    if report.redriven or expired:
        log.warning("reconciler: re-drove %d order(s), expired %d hold(s)",
                    len(report.redriven), len(expired))
    return {"examined": report.examined, "redriven": report.redriven,
            "expiredHolds": expired, "skipped": report.skipped}
