"""The scheduled jobs of the policy: acknowledge new tickets (P7), watch their deadlines.

Both take `now` from the caller (the scheduler, or `tick --at`), so a test
can run a day in a second. A ticket is claimed inside the write transaction
before anything is queued for it (`FOR UPDATE SKIP LOCKED` on PostgreSQL, and
its status changed first), so two processes, even on two hosts, never
acknowledge or warn twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from mailbridge import journal
from mailbridge.adapters.db import Database
from mailbridge.config import Settings
from mailbridge.journal import EventKind
from mailbridge.logs import get_logger
from mailbridge.models import T_EVENT, T_OUTBOX, T_REPORTER, T_TICKET
from mailbridge.outbox.context import first_message_id, ticket_context
from mailbridge.outbox.queue import notify_agent, queue_mail, render_mail
from mailbridge.outbox.render import Renderer
from mailbridge.policy.deadline import hours_left, is_working_day

log = get_logger("mailbridge.workflow")

BATCH = 200


@dataclass
class JobReport:
    done: int = 0
    skipped: int = 0


def inside_ack_hours(settings: Settings, now: datetime) -> bool:
    """`policy.ack_hours` empty: always; else only in that local window on working days."""
    window = settings.policy.ack_hours
    if not window:
        return True
    local = now.astimezone(ZoneInfo(settings.policy.timezone))
    if not is_working_day(local.date(), settings.policy.country):
        return False
    start, end = (time.fromisoformat(t) if t != "24:00" else time.max for t in window.split("-"))
    return start <= local.time() < end


def acknowledge_due(db: Database, settings: Settings, renderer: Renderer, now: datetime) -> JobReport:
    """P7: every new ticket with a reachable reporter is told its ID (rate-limited per address)."""
    report = JobReport()
    if not inside_ack_hours(settings, now):
        return report
    limit = settings.security.max_acks_per_sender_per_day
    with db.session() as session:
        conn = session.connection()
        rows = conn.execute(
            sa.select(T_TICKET.c.id, T_TICKET.c.language, T_TICKET.c.flags, T_REPORTER.c.email,
                      T_REPORTER.c.undeliverable)
            .join(T_REPORTER, T_REPORTER.c.id == T_TICKET.c.reporter_id)
            .where(T_TICKET.c.status == "new", T_TICKET.c.acknowledged_at.is_(None), T_REPORTER.c.email.is_not(None),
                   ~T_TICKET.c.flags.contains("ack_held"))
            .order_by(T_TICKET.c.id).limit(BATCH).with_for_update(of=T_TICKET, skip_locked=True)
        ).all()
        for row in rows:
            held = None
            if row.undeliverable:
                held = "address undeliverable"
            elif limit and _acks_sent_to(conn, row.email, now) >= limit:
                held = f"{limit} acknowledgements to this address in 24 hours"
            if held:
                # Held for good: the agent answers by hand (and a loop ends here).
                flags = ",".join(f for f in (*row.flags.split(","), "ack_held") if f)
                conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == row.id).values(flags=flags))
                journal.record(conn, row.id, EventKind.ACK_RATE_LIMITED if "24 hours" in held else EventKind.ACK_HELD,
                               "system", now, {"reason": held})
                log.info("ack.rate_limited" if "24 hours" in held else "ack.held", ticket=row.id)
                report.skipped += 1
                continue
            claimed = conn.execute(sa.update(T_TICKET).where(
                T_TICKET.c.id == row.id, T_TICKET.c.status == "new", T_TICKET.c.acknowledged_at.is_(None)
            ).values(status="acknowledged", acknowledged_at=now, updated_at=now)).rowcount
            if not claimed:  # acknowledged (or changed) by someone else since we looked
                continue
            context = ticket_context(conn, settings, row.id)
            mail = render_mail(renderer, "ack", row.language, context, (row.email,), row.id,
                               in_reply_to=first_message_id(conn, row.id))
            queue_mail(conn, settings, mail, now)
            journal.record(conn, row.id, EventKind.ACK_QUEUED, "system", now)
            report.done += 1
    if report.done:
        log.info("ack.queued", count=report.done)
    return report


def _acks_sent_to(conn: sa.Connection, email: str, now: datetime) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(T_OUTBOX)
        .where(T_OUTBOX.c.template == "ack", T_OUTBOX.c.recipients == email,
               T_OUTBOX.c.created_at > now - timedelta(hours=24))
    ).scalar() or 0


def watch_deadlines(db: Database, settings: Settings, renderer: Renderer, now: datetime) -> JobReport:
    """P7/P10: the assignee hears when an acknowledgement deadline nears, and when it passes."""
    report = JobReport()
    warn_before = timedelta(hours=settings.policy.sla_warn_hours)
    with db.session() as session:
        conn = session.connection()
        rows = conn.execute(
            sa.select(T_TICKET.c.id, T_TICKET.c.assignee, T_TICKET.c.ack_deadline)
            .where(T_TICKET.c.acknowledged_at.is_(None), T_TICKET.c.status == "new",
                   T_TICKET.c.ack_deadline.is_not(None), T_TICKET.c.assignee.is_not(None),
                   T_TICKET.c.ack_deadline <= now + warn_before)
            .order_by(T_TICKET.c.id).limit(BATCH).with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            deadline = row.ack_deadline if row.ack_deadline.tzinfo else row.ack_deadline.replace(tzinfo=ZoneInfo("UTC"))
            missed = now >= deadline
            kind = EventKind.SLA_BREACHED if missed else EventKind.SLA_WARNING
            already = conn.execute(sa.select(T_EVENT.c.id).where(T_EVENT.c.ticket_id == row.id,
                                                                 T_EVENT.c.type == kind).limit(1)).first()
            if already:
                continue
            context = ticket_context(conn, settings, row.id)
            context.update(missed=missed, hours_left=hours_left(deadline, now))
            mail = render_mail(renderer, "sla_warning", settings.tickets.default_language, context, (row.assignee,),
                               row.id)
            queue_mail(conn, settings, mail, now)
            notify_agent(conn, row.assignee, row.id, kind, mail.subject, now)
            journal.record(conn, row.id, kind, "system", now, {"deadline": deadline.isoformat()})
            log.warning(kind, ticket=row.id) if missed else log.info(kind, ticket=row.id)
            report.done += 1
    return report
