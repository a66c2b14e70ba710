"""The daemon's schedule (APScheduler) and `tick`, which runs each job once.

Jobs: intake, acknowledgements, the SLA watcher, then the outbox sender (so
what the others queue goes out in the same round). A job failure is logged
as one event and the schedule goes on: a mail-server outage never ends the
daemon. SIGTERM lets the batch in hand finish, then exits.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.blocking import BlockingScheduler

from mailbridge.adapters.db import Database
from mailbridge.adapters.imap import imap_session
from mailbridge.config import Settings
from mailbridge.errors import MailbridgeError
from mailbridge.gdpr.retention import retention_job
from mailbridge.intake.run import Intake
from mailbridge.logs import get_logger
from mailbridge.outbox.render import Renderer
from mailbridge.outbox.send import deliver_due
from mailbridge.workflow.acknowledge import acknowledge_due, watch_deadlines

log = get_logger("mailbridge.jobs")


def intake_job(intake: Intake) -> int:
    """One poll; returns how many mails it took in."""
    s = intake.settings.imap
    with imap_session(s) as imap, imap_session(s) as mover:
        return intake.poll(imap, mover).fetched


class Jobs:
    """Each scheduled job as a call that takes `now`."""

    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.renderer = Renderer(settings.outbox.templates_path, settings.policy.timezone)

    def acknowledge(self, now: datetime) -> dict:
        report = acknowledge_due(self.db, self.settings, self.renderer, now)
        return {"acknowledged": report.done, "held": report.skipped}

    def sla(self, now: datetime) -> dict:
        return {"sla_notices": watch_deadlines(self.db, self.settings, self.renderer, now).done}

    def send(self, now: datetime) -> dict:
        report = deliver_due(self.db, self.settings, now)
        return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed}

    def retention(self, now: datetime) -> dict:
        report = retention_job(self.db, self.settings, now)
        return {"purged": len(report.purged), "raw_dropped": report.raw_dropped}

    def tick(self, now: datetime) -> dict:
        """Every scheduled job once, in order; the sender last."""
        result: dict = {}
        for job in (self.acknowledge, self.sla, self.retention, self.send):
            result.update(_guarded(job, now))
        return result


def _guarded(job: Callable[[datetime], dict], now: datetime) -> dict:
    try:
        return job(now)
    except MailbridgeError as exc:
        log.error("job.failed", job=job.__name__, error=str(exc))
        return {}


def run_daemon(settings: Settings, db: Database) -> None:
    intake = Intake(settings, db)
    jobs = Jobs(settings, db)
    scheduler = BlockingScheduler(timezone=settings.policy.timezone)
    now = datetime.now(timezone.utc)
    common = {"max_instances": 1, "coalesce": True, "next_run_time": now}

    def every(seconds: float, job: Callable[[], object], name: str) -> None:
        def guarded() -> None:
            try:
                job()
            except MailbridgeError as exc:
                log.error("job.failed", job=name, error=str(exc))

        scheduler.add_job(guarded, "interval", seconds=seconds, id=name, **common)

    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    def intake_then_answer() -> None:
        # "Immediately by default": new tickets are acknowledged, and the notices
        # sent, right after the poll that took them in, not at the next round.
        if intake_job(intake):
            jobs.acknowledge(clock())
            jobs.send(clock())

    every(settings.imap.poll_interval, intake_then_answer, "intake")
    every(30, lambda: jobs.acknowledge(clock()), "acknowledge")
    every(300, lambda: jobs.sla(clock()), "sla")
    every(15, lambda: jobs.send(clock()), "outbox")
    every(86400, lambda: jobs.retention(clock()), "retention")

    def stop(signum, _frame):  # type: ignore[no-untyped-def]
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        intake.stopping = True
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("daemon.started", poll_interval=settings.imap.poll_interval)
    scheduler.start()
    log.info("daemon.stopped")
