"""The scheduled jobs of the policy: acknowledge new tickets (P7), watch their deadlines.

Both take `now` from the caller (the scheduler, or `tick --at`), so a test
can run a day in a second. A ticket is claimed inside the write transaction
before anything is queued for it (`FOR UPDATE SKIP LOCKED` on PostgreSQL, then
a claim that finds no mail telling its ID in the outbox), so two processes,
even on two hosts, never acknowledge or warn twice.

A ticket counts as acknowledged only once the SMTP server has accepted a mail
that tells the reporter its ID (SPEC, Outgoing mail): the outbox sender calls
`record_accepted` in the transaction that marks the mail sent. Until then the
ticket is `new` and the SLA watcher counts it as not acknowledged.
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

# The mails that tell the reporter the ticket ID (P7). One of them queued, sent or failed
# means no (further) acknowledgement is queued; one accepted by the server acknowledges.
TELLS_THE_ID = ("ack", "agent_relay", "outcome")


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
    """P7: an acknowledgement is queued for every new ticket with a reachable reporter and none
    on its way (rate-limited per address); the ticket stays `new` until the server accepts it."""
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
                   ~T_TICKET.c.flags.contains("ack_held"),
                   T_TICKET.c.ack_deadline.is_not(None),  # None: nothing to acknowledge (received before go-live)
                   ~_id_told(T_TICKET.c.id))  # waiting, retrying or failed in the outbox: not a second one
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
            # A statement of its own, after the row lock: it sees what another process committed
            # while we waited (its acknowledgement in the outbox), which the select above may not.
            claimed = conn.execute(sa.update(T_TICKET).where(
                T_TICKET.c.id == row.id, T_TICKET.c.status == "new", T_TICKET.c.acknowledged_at.is_(None),
                ~_id_told(row.id)
            ).values(updated_at=now)).rowcount
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


def _id_told(ticket: sa.ColumnElement | int) -> sa.Exists:
    """A mail telling the ticket's reporter its ID is in the outbox, whatever became of it."""
    return sa.exists().where(T_OUTBOX.c.ticket_id == ticket, T_OUTBOX.c.template.in_(TELLS_THE_ID))


def record_accepted(conn: sa.Connection, ticket_id: int | None, template: str, now: datetime) -> bool:
    """The SMTP server accepted a mail of `template` on `ticket_id` at `now` (the outbox sender
    calls this in the transaction that marks it sent). One that tells the reporter the ticket ID
    acknowledges the ticket, if nothing did before: `acknowledged_at` is now, and a `new` ticket
    becomes `acknowledged`. True when it did."""
    if ticket_id is None or template not in TELLS_THE_ID:
        return False
    return bool(conn.execute(sa.update(T_TICKET).where(
        T_TICKET.c.id == ticket_id, T_TICKET.c.acknowledged_at.is_(None)
    ).values(acknowledged_at=now, updated_at=now,
             status=sa.case((T_TICKET.c.status == "new", "acknowledged"), else_=T_TICKET.c.status))).rowcount)


def _acks_sent_to(conn: sa.Connection, email: str, now: datetime) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(T_OUTBOX)
        .where(T_OUTBOX.c.template == "ack", T_OUTBOX.c.recipients == email,
               T_OUTBOX.c.created_at > now - timedelta(hours=24))
    ).scalar() or 0


def watch_deadlines(db: Database, settings: Settings, renderer: Renderer, now: datetime) -> JobReport:
    """P7/P10: the assignee hears when an acknowledgement deadline nears, and when it passes.
    An acknowledgement still in the outbox (or failed) does not count: the ticket is not
    acknowledged until the server accepted one."""
    report = JobReport()
    warn_before = timedelta(hours=settings.policy.sla_warn_hours)
    with db.session() as session:
        conn = session.connection()
        rows = conn.execute(
            sa.select(T_TICKET.c.id, T_TICKET.c.assignee, T_TICKET.c.ack_deadline)
            .where(T_TICKET.c.acknowledged_at.is_(None), T_TICKET.c.status == "new",
                   T_TICKET.c.ack_deadline.is_not(None), T_TICKET.c.assignee.is_not(None),
                   T_TICKET.c.ack_deadline <= now + warn_before,
                   # Told already that it was missed: such tickets can stay `new` for good (no
                   # address, an acknowledgement refused for good) and must not fill the batch.
                   ~sa.exists().where(T_EVENT.c.ticket_id == T_TICKET.c.id,
                                      T_EVENT.c.type == EventKind.SLA_BREACHED.value))
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
