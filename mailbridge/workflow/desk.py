"""The desk's scheduled mail: each agent's morning digest of their queue, and the supervisors'
Monday report of the week before (P7, P10).

The policy (`policy/desk.py`) says when each is due, orders a queue and counts
a week; here are the queries and the jobs. A job claims its day (or week)
inside the write transaction before it queues anything: an advisory lock on
PostgreSQL (SQLite serialises writers), then a system journal entry that the
mail was queued, which every later tick or host finds and leaves alone. The
mails go through the outbox in that same transaction.

`digest_for` and `digest_mail` are what a mail command (`#mine`) calls for one
agent at once: the same list, the same template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from mailbridge import journal
from mailbridge.adapters.db import Database, claim_in_transaction
from mailbridge.config import Agent, Settings
from mailbridge.journal import EventKind
from mailbridge.logs import get_logger
from mailbridge.models import T_EVENT, T_REPORTER, T_TICKET
from mailbridge.outbox.queue import OutgoingMail, queue_mails, render_mail
from mailbridge.outbox.render import Renderer
from mailbridge.policy.desk import (
    Period,
    QueueTicket,
    WeekFigures,
    WeekTicket,
    digest_day,
    group_queue,
    order_queue,
    report_week,
    week_figures,
)
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.vocabulary import OPEN_SQL

log = get_logger("mailbridge.workflow")

# A digest lists this many tickets at most (the count says how many more): a mail stays
# readable, and its cost bounded, however long a queue grows.
DIGEST_TICKETS = 100


@dataclass
class DeskReport:
    queued: int = 0  # mails queued this run
    period: Period | None = None  # the day (or week) due now
    settled: bool = False  # … and its mail queued, by this run or an earlier one: nothing left to do


def _utc(value: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite hands them back without the zone."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# ---------------------------------------------------------------------------
# The queue
# ---------------------------------------------------------------------------


def open_queues(conn: sa.Connection, now: datetime, agents: list[str]) -> dict[str, list[QueueTicket]]:
    """The open tickets of each of `agents` (by address), in queue order: one query for all."""
    if not agents:
        return {}
    rows = conn.execute(
        sa.select(T_TICKET.c.id, T_TICKET.c.subject, T_TICKET.c.status, T_TICKET.c.assignee,
                  T_TICKET.c.created_at, T_TICKET.c.ack_deadline, T_TICKET.c.acknowledged_at,
                  T_REPORTER.c.name.label("reporter_name"), T_REPORTER.c.email.label("reporter_email"))
        .join(T_REPORTER, T_REPORTER.c.id == T_TICKET.c.reporter_id, isouter=True)
        .where(sa.text(f"ticket.{OPEN_SQL}"), T_TICKET.c.assignee.in_(agents), T_TICKET.c.merged_into_id.is_(None),
               T_TICKET.c.created_at <= now)
    ).all()
    queues: dict[str, list[QueueTicket]] = {}
    for r in rows:
        queues.setdefault(r.assignee, []).append(QueueTicket(
            r.id, r.subject, r.reporter_name or "", r.reporter_email or "", r.status, r.assignee,
            _utc(r.created_at), _utc(r.ack_deadline), _utc(r.acknowledged_at)))  # type: ignore[arg-type]
    return {agent: order_queue(tickets, now) for agent, tickets in queues.items()}


def digest_for(conn: sa.Connection, agent: str, now: datetime) -> list[QueueTicket]:
    """One agent's open tickets, missed and nearest deadlines first (what `#mine` answers)."""
    now = now.astimezone(timezone.utc)
    return open_queues(conn, now, [agent]).get(agent, [])


def digest_mail(renderer: Renderer, settings: Settings, agent: Agent, queue: list[QueueTicket],
                now: datetime) -> OutgoingMail:
    """The `agent_digest` mail of `queue` to `agent` (an empty queue says so)."""
    prefix = settings.tickets.id_prefix
    groups = [(standing.value, [{
        "id": format_ticket_id(t.id, prefix), "subject": " ".join(t.subject.split()),
        "reporter": {"name": t.reporter_name, "email": t.reporter_email}, "status": t.status,
        "ack_deadline": t.ack_deadline, "acknowledged": t.acknowledged_at is not None,
    } for t in tickets]) for standing, tickets in group_queue(queue[:DIGEST_TICKETS], now)]
    missed = sum(1 for t in queue if t.standing(now) == "missed")
    context = {
        "agent": {"name": agent.name, "email": agent.email}, "groups": groups, "total": len(queue),
        "missed": missed, "left_out": max(0, len(queue) - DIGEST_TICKETS),
        "day": now.astimezone(ZoneInfo(settings.policy.timezone)).date(),
        "company": {"name": settings.outbox.company_name, "support_address": settings.smtp.from_address},
    }
    return render_mail(renderer, "agent_digest", settings.tickets.default_language, context, (agent.email,), None)


def send_agent_digests(db: Database, settings: Settings, renderer: Renderer, now: datetime,
                       settled: Period | None = None) -> DeskReport:
    """On a working day from `desk.digest_time`: one digest to each active agent with open
    tickets, once a day, whichever process or tick comes first. `settled`: a day the caller
    already knows done (the database is not asked again)."""
    now = now.astimezone(timezone.utc)
    if not settings.desk.agent_digest:
        return DeskReport()
    p = settings.policy
    day = digest_day(now, settings.desk.digest_time, p.timezone, p.country)
    agents = [a for a in settings.agents if a.active]

    def digests(conn: sa.Connection) -> list[OutgoingMail]:
        queues = open_queues(conn, now, [a.email for a in agents])
        return [digest_mail(renderer, settings, agent, queues[agent.email], now)
                for agent in agents if queues.get(agent.email)]

    return _queue_once(db, settings, now, EventKind.AGENT_DIGEST_QUEUED, day, day, settled, digests)


def _queue_once(db: Database, settings: Settings, now: datetime, kind: EventKind, due: Period | None,
                claimed_on: Period | None, settled: Period | None,
                mails_for: Callable[[sa.Connection], list[OutgoingMail]]) -> DeskReport:
    """Claim before act: `kind`'s mails for `due` are made and queued in the transaction that
    claims them, unless some process has (or is at it now); its journal entry, dated inside
    `claimed_on`, is what every later run finds."""
    report = DeskReport(period=due)
    if due is None or claimed_on is None or due == settled:
        report.settled = due is not None
        return report
    with db.transaction() as conn:
        claim = _claim(conn, kind, claimed_on)
        report.settled = claim is not Claim.BUSY
        if claim is not Claim.OURS:
            return report
        mails = mails_for(conn)
        queue_mails(conn, settings, mails, now)
        journal.record(conn, None, kind, "system", now, {"period": due.first.isoformat(), "mails": len(mails)})
    report.queued = len(mails)
    log.info(kind.value, period=due.first.isoformat(), count=len(mails))
    return report


class Claim(Enum):
    OURS = "ours"  # this transaction queues the mail
    DONE = "done"  # queued before (the journal says so)
    BUSY = "busy"  # another process is at it now: ask again later


def _claim(conn: sa.Connection, kind: EventKind, period: Period) -> Claim:
    """May this transaction queue `kind`'s mail for `period`? Nobody else may be at it now,
    nor have done it before (their journal entry is dated inside the period)."""
    if not claim_in_transaction(conn, kind.value):
        return Claim.BUSY
    done = conn.execute(sa.select(T_EVENT.c.id).where(
        T_EVENT.c.ticket_id.is_(None), T_EVENT.c.type == kind.value,
        T_EVENT.c.at >= period.start.astimezone(timezone.utc), T_EVENT.c.at < period.end.astimezone(timezone.utc),
    ).limit(1)).first()
    return Claim.DONE if done else Claim.OURS


# ---------------------------------------------------------------------------
# The week
# ---------------------------------------------------------------------------


def figures_for_week(conn: sa.Connection, week: Period) -> WeekFigures:
    """The week's figures (see `policy.desk.week_figures`) from every ticket the week touched."""
    start, end = week.start.astimezone(timezone.utc), week.end.astimezone(timezone.utc)
    touched = sa.or_(*(sa.and_(column >= start, column < end) for column in (
        T_TICKET.c.created_at, T_TICKET.c.resolved_at, T_TICKET.c.acknowledged_at, T_TICKET.c.ack_deadline)))
    rows = conn.execute(sa.select(
        T_TICKET.c.id, T_TICKET.c.category, T_TICKET.c.area, T_TICKET.c.channel, T_TICKET.c.assignee,
        T_TICKET.c.created_at, T_TICKET.c.ack_deadline, T_TICKET.c.acknowledged_at, T_TICKET.c.resolved_at,
    ).where(touched, T_TICKET.c.merged_into_id.is_(None))).all()
    return week_figures((WeekTicket(r.id, r.category, r.area, r.channel, r.assignee or "", _utc(r.created_at),
                                    _utc(r.ack_deadline), _utc(r.acknowledged_at), _utc(r.resolved_at))
                         for r in rows), week)  # type: ignore[arg-type]


def figures_as_dict(figures: WeekFigures, prefix: str) -> dict:
    """The figures as `report --week --json` prints them and the templates read them."""
    def counts(items, key: str) -> list[dict]:  # type: ignore[no-untyped-def]
        return [{key: c.label, "opened": c.opened, "closed": c.closed} for c in items]

    share = figures.share_in_time
    return {
        "week": {"first_day": figures.week.first.isoformat(), "last_day": figures.week.last.isoformat(),
                 "start": figures.week.start.isoformat(), "end": figures.week.end.isoformat()},
        "opened": figures.opened, "closed": figures.closed,
        "by_category": counts(figures.by_category, "category"),
        "by_area": counts(figures.by_area, "area"),
        "by_channel": counts(figures.by_channel, "channel"),
        "acknowledgement_deadlines": figures.deadlines,
        "acknowledged_in_time": figures.in_time,
        "share_acknowledged_in_time": round(share, 4) if share is not None else None,
        "median_seconds_to_acknowledge": figures.median_ack_seconds,
        "median_seconds_to_resolve": figures.median_resolve_seconds,
        "missed": [{"id": format_ticket_id(t.id, prefix), "category": t.category, "area": t.area,
                    "channel": t.channel, "assignee": t.assignee or None,
                    "ack_deadline": t.ack_deadline.isoformat() if t.ack_deadline else None,
                    "acknowledged_at": t.acknowledged_at.isoformat() if t.acknowledged_at else None}
                   for t in figures.missed],
    }


def send_supervisor_report(db: Database, settings: Settings, renderer: Renderer, now: datetime,
                           settled: Period | None = None) -> DeskReport:
    """On Monday from `desk.digest_time`: last week's report to each of `[[supervisors]]`, once.
    `settled`: a week the caller already knows done."""
    now = now.astimezone(timezone.utc)
    if not settings.supervisors:
        return DeskReport()
    week = report_week(now, settings.desk.digest_time, settings.policy.timezone)
    monday = None  # claimed on the Monday it is sent, the day after the week it covers
    if week is not None:
        monday = Period(week.last + timedelta(days=1), week.last + timedelta(days=1), week.end,
                        week.end + timedelta(days=1))
    prefix = settings.tickets.id_prefix

    def reports(conn: sa.Connection) -> list[OutgoingMail]:
        figures = figures_for_week(conn, week)  # type: ignore[arg-type]
        context = {"figures": figures_as_dict(figures, prefix), "scale": figures.largest,
                   "week": {"first": figures.week.first, "last": figures.week.last},
                   "missed": [{"id": format_ticket_id(t.id, prefix), "category": t.category, "area": t.area,
                               "assignee": t.assignee, "ack_deadline": t.ack_deadline,
                               "acknowledged_at": t.acknowledged_at} for t in figures.missed],
                   "company": {"name": settings.outbox.company_name, "support_address": settings.smtp.from_address}}
        return [render_mail(renderer, "supervisor_report", settings.tickets.default_language,
                            {**context, "supervisor": {"name": s.name, "email": s.email}}, (s.email,), None)
                for s in settings.supervisors]

    return _queue_once(db, settings, now, EventKind.SUPERVISOR_REPORT_QUEUED, week, monday, settled, reports)
