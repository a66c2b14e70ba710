"""The daemon's schedule (APScheduler): for now the intake loop.

A job failure is logged as one event and the schedule goes on: a mail
server outage must never end the daemon. SIGTERM lets the batch in hand
finish, then exits.
"""

from __future__ import annotations

import signal
from datetime import datetime, timezone

from apscheduler.schedulers.blocking import BlockingScheduler

from mailbridge.adapters.db import Database
from mailbridge.adapters.imap import imap_session
from mailbridge.config import Settings
from mailbridge.errors import MailbridgeError
from mailbridge.intake.run import Intake
from mailbridge.logs import get_logger

log = get_logger("mailbridge.jobs")


def intake_job(intake: Intake) -> None:
    s = intake.settings.imap
    try:
        with imap_session(s) as imap, imap_session(s) as mover:
            intake.poll(imap, mover)
    except MailbridgeError as exc:
        log.error("intake.failed", error=str(exc))


def run_daemon(settings: Settings, db: Database) -> None:
    intake = Intake(settings, db)
    scheduler = BlockingScheduler(timezone=settings.policy.timezone)
    scheduler.add_job(
        intake_job, "interval", args=[intake], seconds=settings.imap.poll_interval, id="intake",
        max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc),
    )

    def stop(signum, _frame):  # type: ignore[no-untyped-def]
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        intake.stopping = True
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("daemon.started", poll_interval=settings.imap.poll_interval)
    scheduler.start()
    log.info("daemon.stopped")
