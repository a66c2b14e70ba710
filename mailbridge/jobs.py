"""The daemon's schedule (APScheduler) and `tick`, which runs each job once.

Jobs: intake, acknowledgements, the SLA watcher, then the outbox sender (so
what the others queue goes out in the same round). A job failure, whatever
raised it, is logged as one event per incident, counted, and the schedule
goes on: no mail, outage or bug ends the daemon or one of its threads. If a
loop stops turning all the same (an intake thread gone or hung, a send round
that never ends), the systemd watchdog is no longer petted and restarts us.
SIGTERM lets the batch in hand finish, then exits.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime, timezone

import threading

from apscheduler.schedulers.background import BackgroundScheduler

from mailbridge.adapters.db import Database, index_messages
from mailbridge.config import Settings
from mailbridge.errors import MailbridgeError, error_fields
from mailbridge.gdpr.retention import retention_job
import sqlalchemy as sa

from mailbridge import metrics, service
from mailbridge.models import T_OUTBOX
from mailbridge.outbox.queue import OutgoingMail, queue_mail
from mailbridge.intake.watch import IntakeLoop
from mailbridge.intake.run import Intake
from mailbridge.logs import get_logger
from mailbridge.outbox.render import Renderer
from mailbridge.outbox.send import ROUND_SECONDS, deliver_due
from mailbridge.workflow.acknowledge import acknowledge_due, record_accepted, watch_deadlines
from mailbridge.workflow.desk import send_agent_digests, send_supervisor_report

log = get_logger("mailbridge.jobs")

SEND_EVERY = 15  # seconds between the outbox sender's rounds
SEARCH_INDEX_EVERY = 10  # seconds; until then a new message is searched by reading it


class Jobs:
    """Each scheduled job as a call that takes `now`."""

    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.renderer = Renderer(settings.outbox.templates_path, settings.policy.timezone)
        self.alarms: dict[str, bool] = {}
        self.settled: dict = {}  # "digest"/"report" -> the day or week whose mail is queued

    def acknowledge(self, now: datetime) -> dict:
        report = acknowledge_due(self.db, self.settings, self.renderer, now)
        metrics.ACKS.inc(report.done)
        # Queued, not yet acknowledged: that is the sender's word, once the server took them.
        return {"acknowledgements_queued": report.done, "held": report.skipped}

    def sla(self, now: datetime) -> dict:
        return {"sla_notices": watch_deadlines(self.db, self.settings, self.renderer, now).done}

    def send(self, now: datetime) -> dict:
        report = deliver_due(self.db, self.settings, now, on_accepted=record_accepted)
        if report.unavailable and not self.alarms.get("smtp_unavailable"):
            log.error("outbox.smtp_unavailable", error=report.unavailable, retrying=True)
        elif not report.unavailable and self.alarms.get("smtp_unavailable"):
            log.info("outbox.smtp_recovered")
        self.alarms["smtp_unavailable"] = bool(report.unavailable)
        metrics.SENT.inc(report.sent)
        metrics.FAILED.inc(report.failed)
        return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed,
                "acknowledged": report.acknowledged}

    def watch_intake(self, now: datetime, started: datetime, mailbox: str = "default") -> dict:
        """The alarm: no successful poll for `alarm.poll_stale_minutes` (intake must never fail silently)."""
        age = metrics.poll_age(self.settings.storage.path, mailbox, now)
        last = metrics.last_poll(self.settings.storage.path, mailbox)
        silent = age if age is not None and last is not None and last >= started else (now - started).total_seconds()
        stale = silent > self.settings.alarm.poll_stale_minutes * 60
        self._alarm(f"intake_stale:{mailbox}", stale, now, "intake is silent",
                    f"mailbridge has not polled mailbox {mailbox!r} successfully for {silent / 60:.0f} minutes.\n"
                    "See the journal (intake.unavailable) and `mailbridge check`.\n")
        with self.db.session() as session:
            depth = session.connection().execute(sa.select(sa.func.count()).select_from(T_OUTBOX)
                                                 .where(T_OUTBOX.c.status == "queued")).scalar() or 0
        metrics.OUTBOX_DEPTH.set(depth)
        return {"intake_silent_s": round(silent)}

    def watch_tokens(self, now: datetime) -> dict:
        """OAuth2: a refresh that fails, or a token about to run out that nothing will renew."""
        from mailbridge.adapters.oauth import token_source

        sections = [(box, f"mailboxes.{box.name}" if box.name != "default" else "imap")
                    for box in self.settings.intake_mailboxes] + [(self.settings.smtp, "smtp")]
        for config, section in sections:
            if getattr(config, "auth", "password") != "xoauth2":
                continue
            source = token_source(config, section)
            try:
                source.token()  # refreshes when due
                failed = ""
            except MailbridgeError as exc:
                failed = str(exc)
            self._alarm(f"token_refresh:{section}", bool(failed), now, f"{section} token refresh fails",
                        f"Refreshing the OAuth2 token of {section} fails: {failed}\n")
            left = (source.expires_at - source.clock()) if source.expires_at else None
            self._alarm(f"token_expiry:{section}", left is not None and left < 15 * 60, now,
                        f"{section} token expires", f"The OAuth2 token of {section} expires in {(left or 0) / 60:.0f}"
                        " minutes and its token_file has not been renewed.\n")
        return {}

    def _alarm(self, kind: str, raised: bool, now: datetime, title: str, text: str) -> None:
        """One event and one mail to ops when an alarm starts, one event when it ends."""
        if raised == self.alarms.get(kind, False):
            return
        self.alarms[kind] = raised
        metrics.ALARM.labels(kind.split(":")[0]).set(1 if any(
            v for k, v in self.alarms.items() if k.split(":")[0] == kind.split(":")[0]) else 0)
        name = kind.split(":")[0]
        event = {"intake_stale": "intake.stale", "token_refresh": "oauth.refresh_failed",
                 "token_expiry": "oauth.expiring"}.get(name, "alarm")
        if not raised:
            log.info(f"{event}_cleared", alarm=kind)
            return
        log.error(event, alarm=kind)
        if self.settings.alarm.ops_address:
            with self.db.session() as session:
                queue_mail(session.connection(), self.settings,
                           OutgoingMail("ops_alarm", None, (self.settings.alarm.ops_address,),
                                        f"[mailbridge] Alarm: {title}", text), now)


    def digest(self, now: datetime) -> dict:
        """The agents' morning digests. A day once settled is not asked of the database again."""
        report = send_agent_digests(self.db, self.settings, self.renderer, now, self.settled.get("digest"))
        if report.settled:
            self.settled["digest"] = report.period
        return {"digests": report.queued}

    def supervisor_report(self, now: datetime) -> dict:
        report = send_supervisor_report(self.db, self.settings, self.renderer, now, self.settled.get("report"))
        if report.settled:
            self.settled["report"] = report.period
        return {"reports": report.queued}

    def search_index(self, now: datetime) -> dict:
        """The search vectors of the messages taken in since (PostgreSQL; see adapters.db)."""
        if self.db.engine.dialect.name != "postgresql":  # SQLite searches by substring: no write lock for nothing
            return {}
        with self.db.transaction() as connection:
            indexed = index_messages(connection)
        return {"messages_indexed": indexed} if indexed else {}

    def retention(self, now: datetime) -> dict:
        report = retention_job(self.db, self.settings, now)
        return {"purged": len(report.purged), "raw_dropped": report.raw_dropped}

    def tick(self, now: datetime) -> tuple[dict, dict[str, str]]:
        """Every scheduled job once, in order, the sender last; one that fails does not stop the
        others. Returns what they did, and why each that failed did (by job name)."""
        result: dict = {}
        failed: dict[str, str] = {}
        for job in (self.acknowledge, self.sla, self.retention, self.digest, self.supervisor_report, self.search_index,
                    self.send):
            result.update(_guarded(job, now, failed) or {})
        return result, failed


_failing: set[str] = set()  # jobs in a failure incident: logged when it starts and when it ends


def _guarded(job: Callable[[datetime], dict], now: datetime | None = None,
             failed: dict[str, str] | None = None) -> dict | None:
    """Runs `job`; whatever it raises is logged (once per incident), counted, and noted in
    `failed` (job name -> why), and None returned."""
    name = getattr(job, "__name__", "job")
    try:
        result = job(now or datetime.now(timezone.utc))
    except Exception as exc:  # noqa: BLE001 - the one broad catch: a job's fault must not end its thread
        metrics.ERRORS.labels(name).inc()
        if not isinstance(exc, MailbridgeError):
            metrics.FAULTS.labels(name).inc()
        fields = error_fields(exc)
        if name not in _failing:  # the database locked or the disk full: one line, not one per round
            log.error("job.failed", job=name, retrying=True, **fields)
            _failing.add(name)
        if failed is not None:
            failed[name] = fields.get("error") or f"unexpected {fields['error_type']}"
        return None
    if name in _failing:
        _failing.discard(name)
        log.info("job.recovered", job=name)
    return result


def stuck_loops(loops: dict[str, tuple[service.Heartbeat, threading.Thread | None]]) -> list[str]:
    """The loops (by name) that stopped turning: their thread is gone, or their heartbeat is stale."""
    return [name for name, (heartbeat, thread) in loops.items()
            if (thread is not None and not thread.is_alive()) or not heartbeat.healthy()]


def run_daemon(settings: Settings, db: Database, reload: Callable[[], Settings] | None = None,
               stopping: threading.Event | None = None) -> None:
    """An intake loop per mailbox in its own thread (IDLE or polling), the other jobs
    on a background schedule, systemd told when ready and pinged while intake lives."""
    jobs = Jobs(settings, db)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731

    sender = service.Heartbeat(SEND_EVERY + ROUND_SECONDS + settings.smtp.timeout)  # a round's longest

    def send() -> None:
        _guarded(jobs.send, clock())
        sender.beat()  # a failed round turned too: only a hang stops the beat

    def answer(_fetched: int) -> None:
        # "Immediately by default": new tickets are acknowledged, and the notices
        # sent, right after the poll that took them in, not at the next round.
        _guarded(jobs.acknowledge, clock())
        send()

    intakes, loops, heartbeats = [], [], []
    for box in settings.intake_mailboxes:
        intake = Intake(settings, db, box)
        heartbeat = service.Heartbeat(box.poll_interval + box.timeout)
        intake.on_batch = heartbeat.beat  # a long first poll over a backlog is alive too
        intakes.append(intake)
        heartbeats.append(heartbeat)
        loops.append(IntakeLoop(intake, answer, heartbeat.beat))
    scheduler = BackgroundScheduler(timezone=settings.policy.timezone)
    common = {"max_instances": 1, "coalesce": True, "next_run_time": clock()}
    def acknowledge() -> None:
        # What the round queued goes out now, not at the sender's next round.
        if (_guarded(jobs.acknowledge, clock()) or {}).get("acknowledgements_queued"):
            send()

    scheduler.add_job(acknowledge, "interval", seconds=30, id="acknowledge", **common)
    scheduler.add_job(send, "interval", seconds=SEND_EVERY, id="outbox", **common)
    for seconds, job, name in ((300, jobs.sla, "sla"), (86400, jobs.retention, "retention"),
                               (SEARCH_INDEX_EVERY, jobs.search_index, "search_index")):
        scheduler.add_job(_guarded, "interval", args=[job], kwargs={}, seconds=seconds, id=name, **common)

    def desk() -> None:
        # Each minute: a pure look at the clock, and the database only once the digest (or the
        # Monday report) is due and not yet claimed; what they queue goes out at once.
        queued = [(_guarded(job, clock()) or {}) for job in (jobs.digest, jobs.supervisor_report)]
        if any(sum(result.values()) for result in queued):
            send()

    scheduler.add_job(desk, "interval", seconds=60, id="desk", **common)
    started = clock()

    def alarm(now: datetime) -> dict:
        result: dict = {}
        for loop in loops:
            if not loop.standby:  # a standby's mailbox is watched by the process that polls it
                result.update(jobs.watch_intake(now, started, loop.intake.mailbox))
        result.update(jobs.watch_tokens(now))
        return result

    alarm_every = max(1.0, min(30.0, settings.alarm.poll_stale_minutes * 60 / 2))
    scheduler.add_job(_guarded, "interval", args=[alarm], seconds=alarm_every, id="alarm", **common)
    if settings.metrics.listen:
        try:
            metrics.serve(settings.metrics.listen)
        except OSError as exc:  # the port taken, the address not ours: one line, not a traceback
            raise MailbridgeError(f"metrics.listen: cannot listen on {settings.metrics.listen}: {exc.strerror}") from None
    threads = [threading.Thread(target=loop.run, name=f"intake-{loop.intake.mailbox}", daemon=True) for loop in loops]
    watched: dict[str, tuple[service.Heartbeat, threading.Thread | None]] = {
        thread.name: (heartbeat, thread) for thread, heartbeat in zip(threads, heartbeats)}
    watched["outbox"] = (sender, None)
    timeout = service.watchdog_interval()
    if timeout:
        withheld: list[str] = []

        def ping_watchdog() -> None:
            # Withheld when a loop stopped turning (an intake thread gone or hung, a send round
            # that never ends): systemd then restarts us. One line when that starts.
            stuck = stuck_loops(watched)
            if stuck and stuck != withheld:
                log.error("watchdog.withheld", loops=stuck,
                          silent_seconds=round(max(watched[name][0].age() for name in stuck)))
            withheld[:] = stuck
            if not stuck:
                service.watchdog()

        scheduler.add_job(ping_watchdog, "interval", seconds=timeout / 2, id="watchdog", **common)
    done = stopping or threading.Event()  # set already: asked to stop while starting

    def stop(signum, _frame):  # type: ignore[no-untyped-def]
        log.info("daemon.stopping", signal=signal.Signals(signum).name)
        service.stopping()
        for loop in loops:
            loop.stop()
        done.set()

    def reread(_signum, _frame):  # type: ignore[no-untyped-def]
        """SIGHUP: agents, divisions, rules and templates anew; connections stay as they are."""
        if reload is None:
            return
        try:
            fresh = reload().model_copy(update={"imap": settings.imap, "mailboxes": settings.mailboxes,
                                                "smtp": settings.smtp, "database": settings.database})
            renderer = Renderer(fresh.outbox.templates_path, fresh.policy.timezone)
        except Exception as exc:  # noqa: BLE001 - a signal handler that raises would end the daemon
            log.error("config.reload_failed", **error_fields(exc))  # the running config stays
            return
        jobs.settings, jobs.renderer = fresh, renderer
        for intake in intakes:
            intake.settings, intake.renderer = fresh, renderer
        log.info("config.reloaded", agents=len(fresh.agents), divisions=len(fresh.divisions))

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reread)
    if done.is_set():
        log.info("daemon.stopping", signal="SIGTERM", while_starting=True)
        for loop in loops:
            loop.stop()
    # The intake threads first: the watchdog's first look runs as the scheduler starts, and a
    # thread not started yet read as one gone ("watchdog.withheld" at a start, now and then).
    for thread in threads:
        thread.start()
    scheduler.start()
    log.info("daemon.started", mailboxes=len(loops))
    service.ready()
    done.wait()
    for thread in threads:
        thread.join(timeout=8 / len(threads))  # the batch in hand finishes; an IDLE slice ends within 5 s
    scheduler.shutdown(wait=False)
    log.info("daemon.stopped")
