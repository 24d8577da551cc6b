"""`pipeline doctor`: check a deployment the way a newcomer needs it checked.

Each check says what it found and, when it fails, what to do. The checks run
in order and a check whose ground is missing (no settings, no endpoint, no
database) is reported as not run rather than as a second failure of the same
cause. Nothing is changed: every call is a read (SQS attributes, a remote-control
ping, the store's leases, consumers and outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from config.settings import Settings, SettingsError
from config.topology import QUEUES

__all__ = ["Check", "Doctor", "all_passed"]

OUTBOX_LAG_S = 60.0  # an event older than this has not been relayed: the relay is down
CONSUMER_REPORT_S = 60.0  # a worker's watchdog reports every few seconds


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not run (what it needs failed first)
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def all_passed(checks: list[Check]) -> bool:
    return all(check.ok for check in checks)


class Doctor:
    """The checks, in order; `run()` returns them all."""

    def __init__(self, load_settings: Callable[[], Settings], *, ping_timeout_s: float = 5.0,
                 now: Callable[[], datetime] | None = None) -> None:
        from pipeline.store.clock import now as store_now

        self.load_settings = load_settings
        self.ping_timeout_s = ping_timeout_s
        self.now = now or store_now
        self.checks: list[Check] = []

    def _add(self, name: str, ok: bool | None, detail: str, fix: str = "") -> bool:
        self.checks.append(Check(name, ok, detail, "" if ok else fix))
        return bool(ok)

    def _skipped(self, names: list[str], why: str) -> list[Check]:
        for name in names:
            self._add(name, None, f"not run: {why}")
        return self.checks

    def run(self) -> list[Check]:
        later = ["endpoint", "database", "queues", "dead letters", "lanes", "consumers",
                 "beat", "outbox"]
        try:
            settings = self.load_settings()
        except SettingsError as error:
            self._add("settings", False, str(error),
                      "set the PIPELINE_* variable named above (see config/settings.py)")
            return self._skipped(later, "the settings are invalid")
        from pipeline.runtime import Runtime

        rt = Runtime(settings)
        where = settings.sqs_endpoint_url or f"AWS ({settings.aws_region})"
        self._add("settings", True, f"prefix {settings.queue_prefix!r}, SQS/SNS at {where}")
        sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
        if not self._endpoint(sqs, sns, where):
            self._database(rt)
            return self._skipped(later[2:], "SQS/SNS cannot be reached")
        has_store = self._database(rt)
        self._queues(settings, sqs, sns)
        self._dead_letters(settings, sqs)
        self._lanes(settings)
        if not has_store:
            return self._skipped(later[5:], "the database cannot be read")
        self._consumers(rt)
        self._beat(rt)
        self._outbox(rt)
        return self.checks

    # --- the checks ---------------------------------------------------------
    def _endpoint(self, sqs: Any, sns: Any, where: str) -> bool:
        try:
            sqs.list_queues(MaxResults=1)
            sns.list_topics()
        except (BotoCoreError, ClientError) as error:
            return self._add("endpoint", False, f"{where}: {type(error).__name__}: {error}",
                             "start the emulator (`pipeline sqs`) or fix "
                             "PIPELINE_SQS_ENDPOINT_URL / the AWS credentials")
        return self._add("endpoint", True, f"{where} answers")

    def _database(self, rt: Any) -> bool:
        from pipeline.store.migrate import current_revision, head_revision

        try:
            have, want = current_revision(rt.store.engine), head_revision()
        except Exception as error:  # any driver's error: the check reports it
            return self._add("database", False, f"{type(error).__name__}: {error}"[:300],
                             "check PIPELINE_DATABASE_URL and that the database runs")
        if have != want:
            return self._add("database", False, f"schema at revision {have}, code wants {want}",
                             "run `pipeline provision` (it upgrades the schema)")
        return self._add("database", True, f"schema at revision {have}")

    def _queues(self, settings: Settings, sqs: Any, sns: Any) -> None:
        from pipeline.sqs.provision import provision

        report = provision(settings, sqs, sns, check=True)
        problems = report.conflicts + report.drift
        if problems:
            self._add("queues", False, "; ".join(problems)[:600],
                      "run `pipeline provision` (conflicts: see its message)")
        else:
            self._add("queues", True, f"{2 * len(QUEUES)} queues and their topics match the "
                      "topology")

    def _dead_letters(self, settings: Settings, sqs: Any) -> None:
        waiting = {}
        for spec in QUEUES:
            name = settings.queue_prefix + spec.dlq_name
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
            except ClientError:
                continue  # a missing DLQ is the queues check's finding
            count = sum(int(v) for v in got["Attributes"].values())
            if count:
                waiting[spec.dlq_name] = count
        if waiting:
            self._add("dead letters", False,
                      ", ".join(f"{name}: {n}" for name, n in waiting.items()),
                      "read them: `pipeline dlq show QUEUE`; then `pipeline dlq redrive` or "
                      "`pipeline dlq purge`")
        else:
            self._add("dead letters", True, "every DLQ is empty")

    def _lanes(self, settings: Settings) -> None:
        from pipeline.app import app
        from pipeline.ops.iam import worker_lanes

        if not settings.events:
            self._add("lanes", None, "not run: PIPELINE_EVENTS=false (no remote control)")
            return
        replies = app.control.inspect(timeout=self.ping_timeout_s).ping() or {}
        answered = {str(host).split("@", 1)[0] for host in replies}
        missing = [lane for lane in worker_lanes() if lane not in answered]
        if missing:
            self._add("lanes", False, f"no worker of {', '.join(missing)} answered a ping "
                      f"within {self.ping_timeout_s:.0f}s ({len(replies)} answered)",
                      "start them: the Procfile line of each lane (`make demo` runs them all)")
        else:
            self._add("lanes", True, f"{len(replies)} workers answered: "
                      + ", ".join(sorted(map(str, replies))))

    def _consumers(self, rt: Any) -> None:
        from pipeline.ops.iam import worker_lanes

        limit = 3 * (rt.settings.wait_time_seconds + 10)  # the watchdog's own threshold x3
        ages = rt.store.consumer_ages(reported_within_s=CONSUMER_REPORT_S)
        freshest: dict[str, float] = {}
        for row in ages:
            key = f"{row.lane}/{row.queue}"
            freshest[key] = min(freshest.get(key, float("inf")), row.age_s)
        expected = [f"{lane}/{queue}" for lane, queues in worker_lanes().items()
                    for queue in queues]
        silent = [key for key in expected if key not in freshest]
        stale = [f"{key} {age:.0f}s" for key, age in freshest.items() if age > limit]
        if silent or stale:
            self._add("consumers", False, "; ".join(
                ([f"no live receive report from {', '.join(silent)}"] if silent else [])
                + ([f"last receive over {limit}s ago: {', '.join(stale)}"] if stale else [])),
                "see the lane's log; a consumer that stops receiving exits and is "
                "restarted by its supervisor (pipeline.sqs.liveness)")
        else:
            oldest = max(freshest.values(), default=0.0)
            self._add("consumers", True, f"{len(freshest)} lane queues receiving; the "
                      f"longest since a receive: {oldest:.0f}s")

    def _beat(self, rt: Any) -> None:
        interval = rt.settings.reconcile_interval_s
        until = rt.store.lease_until("reconciler")
        if until is None:
            self._add("beat", False, "the reconciler has never swept",
                      "start beat (the Procfile's `beat` line)")
            return
        late = (self.now() - until).total_seconds()
        if late > 3 * interval + 30:  # a sweep may wait behind the orders lane's work
            self._add("beat", False, f"the reconciler's last sweep ended its lease {late:.0f}s "
                      f"ago (it sweeps every {interval:.0f}s)",
                      "start beat (the Procfile's `beat` line) and the `orders` lane")
        else:
            self._add("beat", True, f"the reconciler sweeps every {interval:.0f}s")

    def _outbox(self, rt: Any) -> None:
        from pipeline.store import outbox

        oldest = outbox.oldest_pending(rt.store.engine)
        parked = outbox.parked(rt.store.engine)
        note = f"; {parked} parked (refused by SNS for good)" if parked else ""
        lag = (self.now() - oldest).total_seconds() if oldest else 0.0
        if lag > OUTBOX_LAG_S:
            self._add("outbox", False, f"the oldest unpublished event is {lag:.0f}s old{note}",
                      "start the relay (`pipeline relay`, the Procfile's `relay` line)")
        else:
            self._add("outbox", True, f"draining (oldest unpublished: {lag:.0f}s){note}")
