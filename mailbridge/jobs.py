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

import threading

from apscheduler.schedulers.background import BackgroundScheduler

from mailbridge.adapters.db import Database
from mailbridge.config import Settings
from mailbridge.errors import MailbridgeError
from mailbridge.gdpr.retention import retention_job
from mailbridge import service
from mailbridge.intake.loop import IntakeLoop
from mailbridge.intake.run import Intake
from mailbridge.logs import get_logger
from mailbridge.outbox.render import Renderer
from mailbridge.outbox.send import deliver_due
from mailbridge.workflow.acknowledge import acknowledge_due, watch_deadlines

log = get_logger("mailbridge.jobs")


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


def _guarded(job: Callable[[datetime], dict], now: datetime | None = None) -> dict:
    try:
        return job(now or datetime.now(timezone.utc))
    except MailbridgeError as exc:
        log.error("job.failed", job=job.__name__, error=str(exc))
        return {}


def run_daemon(settings: Settings, db: Database) -> None:
    """The intake loop in its own thread (IDLE or polling), the other jobs on a
    background schedule, systemd told when ready and pinged while intake lives."""
    intake = Intake(settings, db)
    jobs = Jobs(settings, db)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    heartbeat = service.Heartbeat(settings.imap.poll_interval + settings.imap.timeout)

    def answer(_fetched: int) -> None:
        # "Immediately by default": new tickets are acknowledged, and the notices
        # sent, right after the poll that took them in, not at the next round.
        for job in (jobs.acknowledge, jobs.send):
            _guarded(job, clock())

    loop = IntakeLoop(intake, answer, heartbeat.beat)
    intake.on_batch = heartbeat.beat  # a long first poll over a backlog is alive too
    scheduler = BackgroundScheduler(timezone=settings.policy.timezone)
    common = {"max_instances": 1, "coalesce": True, "next_run_time": clock()}
    for seconds, job, name in ((30, jobs.acknowledge, "acknowledge"), (300, jobs.sla, "sla"),
                               (15, jobs.send, "outbox"), (86400, jobs.retention, "retention")):
        scheduler.add_job(_guarded, "interval", args=[job], kwargs={}, seconds=seconds, id=name, **common)
    timeout = service.watchdog_interval()
    if timeout:
        def ping_watchdog() -> None:
            # Withheld only when the intake loop itself is stuck: systemd then restarts us.
            if not heartbeat.ping():
                log.error("watchdog.withheld", silent_seconds=round(heartbeat.age()), limit=heartbeat.stale_after)

        scheduler.add_job(ping_watchdog, "interval", seconds=timeout / 2, id="watchdog", **common)
    done = threading.Event()

    def stop(signum, _frame):  # type: ignore[no-untyped-def]
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        service.stopping()
        loop.stop()
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    thread = threading.Thread(target=loop.run, name="intake", daemon=True)
    scheduler.start()
    thread.start()
    log.info("daemon.started", poll_interval=settings.imap.poll_interval)
    service.ready()
    done.wait()
    thread.join(timeout=8)  # the batch in hand finishes; an IDLE slice ends within 5 s
    scheduler.shutdown(wait=False)
    log.info("daemon.stopped")
