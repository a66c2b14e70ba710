"""Tickets as the CLI shows them: plain dicts built from the tables (the JSON contract)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from mailbridge.adapters.db import MESSAGE_SEARCH_VECTOR, TICKET_SEARCH_VECTOR, text_search_config

from mailbridge.ticket_ids import format_ticket_id
from mailbridge.models import Attachment, Event, Message, Quarantine, Reporter, Ticket
from mailbridge.vocabulary import OPEN_SQL, TICKET_ORDERS, TICKET_STATUSES


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def list_tickets(session: Session, prefix: str, status: str | None = None, limit: int | None = None, *,
                 assignee: str | None = None, category: str | None = None, area: str | None = None,
                 channel: str | None = None, overdue_at: datetime | None = None, search: str | None = None,
                 order: str = "id") -> list[dict]:
    """Tickets as summaries, in `order` (one of TICKET_ORDERS, "-" first for descending), by ID within it."""
    query = select(Ticket, Reporter).join(Reporter, col(Ticket.reporter_id) == Reporter.id, isouter=True)
    if status == "open":
        query = query.where(sa.text(f"ticket.{OPEN_SQL}"))  # literally the partial index's predicate
    elif status:
        query = query.where(Ticket.status == status)
    for column, value in ((Ticket.assignee, assignee), (Ticket.category, category), (Ticket.area, area),
                          (Ticket.channel, channel)):
        if value is not None:
            query = query.where(column == value)
    if overdue_at is not None:  # the acknowledgement deadline passed without one
        query = query.where(col(Ticket.acknowledged_at).is_(None), col(Ticket.ack_deadline) < overdue_at)
    if search:
        # The matches first, then the tickets by ID: the planner cannot guess how few tickets
        # a rare word finds, and would read every ticket to join them (0.4 s on a million).
        matching = _matching(session, search)
        ids = session.connection().execute(
            sa.select(matching.subquery().c[0]).limit(SEARCH_ID_LIST + 1)).scalars().all()
        query = query.where(col(Ticket.id).in_(ids if len(ids) <= SEARCH_ID_LIST else matching))
    query = query.order_by(*_ordering(order))
    if limit:
        query = query.limit(limit)
    rows = session.exec(query).all()
    ids = [t.id for t, _ in rows]
    counts: dict[int, int] = {}
    files: dict[int, list[dict]] = defaultdict(list)
    if ids:
        counts = dict(
            session.exec(
                select(Message.ticket_id, func.count())
                .where(col(Message.ticket_id).in_(ids), Message.direction == "in")
                .group_by(Message.ticket_id)
            ).all()
        )
        for a in session.exec(
            select(Attachment).where(col(Attachment.ticket_id).in_(ids)).order_by(col(Attachment.id))
        ).all():
            files[a.ticket_id].append(_attachment(a))
    return [_summary(t, r, prefix, counts.get(t.id, 0), files.get(t.id, [])) for t, r in rows]


def _ordering(order: str) -> list:  # type: ignore[type-arg]
    """ORDER BY for a TICKET_ORDERS name: in SQL, so `--limit` takes the first of that order.
    A ticket without the value (no deadline, nobody assigned) comes last either way."""
    descending, name = order.startswith("-"), order.lstrip("-")
    if name not in TICKET_ORDERS:
        raise ValueError(f"unknown ticket order: {order!r}")
    if name == "status":  # the workflow's order, not the alphabet's
        key = sa.case({status: n for n, status in enumerate(TICKET_STATUSES)}, value=Ticket.status)
    else:
        key = col({"id": Ticket.id, "created": Ticket.created_at, "updated": Ticket.updated_at,
                   "deadline": Ticket.ack_deadline, "assignee": Ticket.assignee}[name])
    ticket_id = col(Ticket.id)
    keys = [key.desc() if descending else key.asc(), ticket_id.desc() if descending else ticket_id.asc()]
    if name in ("deadline", "assignee"):  # NULLS LAST: SQLite 3.30+ and PostgreSQL
        keys[0] = keys[0].nulls_last()
    return keys if name != "id" else keys[:1]


SEARCH_ID_LIST = 5000  # more matches than this: one query, and the planner reads the table anyway


def _matching(session: Session, words: str) -> sa.CompoundSelect:
    """Tickets whose subject or messages hold `words`: full-text on PostgreSQL (stemmed, indexed,
    web-search syntax: "quoted phrase", or, -not), a substring on SQLite.

    The IDs of a UNION, so each side uses its own index instead of an OR read across every ticket."""
    if session.get_bind().dialect.name == "postgresql":
        config = text_search_config(session.connection())
        query = sa.func.websearch_to_tsquery(sa.literal_column(f"'{config}'::regconfig"), words)
        in_tickets = select(Ticket.id).where(
            sa.literal_column(TICKET_SEARCH_VECTOR.format(config=config)).op("@@")(query))
        in_messages = select(Message.ticket_id).where(sa.literal_column("message.search").op("@@")(query))
        # Messages whose vector is not made yet (just taken in, or changed): read themselves.
        not_indexed = select(Message.ticket_id).where(
            sa.literal_column("message.search IS NULL"),
            sa.literal_column(MESSAGE_SEARCH_VECTOR.format(config=config)).op("@@")(query))
        return sa.union(in_tickets, in_messages, not_indexed)
    else:
        # autoescape: `%` and `_` in the words are characters, not LIKE's wildcards.
        def contains(column):  # type: ignore[no-untyped-def]
            return col(column).icontains(words, autoescape=True)

        in_tickets = select(Ticket.id).where(contains(Ticket.subject))
        in_messages = select(Message.ticket_id).where(contains(Message.subject) | contains(Message.text))
    return sa.union(in_tickets, in_messages)


def _attachment(a: Attachment) -> dict:
    entry = {"filename": a.filename, "size": a.size, "sha256": a.sha256, "content_type": a.content_type}
    if a.content_id:
        entry["content_id"] = a.content_id
    if a.inline:
        entry["inline"] = True
    if a.rejected:
        entry["rejected"] = True
        entry["reason"] = a.reason
    return entry


def _summary(t: Ticket, r: Reporter | None, prefix: str, message_count: int, attachments: list[dict]) -> dict:
    return {
        "id": format_ticket_id(t.id, prefix),
        "subject": t.subject,
        "status": t.status,
        "category": t.category,
        "area": t.area,
        "channel": t.channel,
        "reporter_email": r.email if r else None,
        "reporter_name": r.name if r else None,
        "assignee": t.assignee,
        "language": t.language,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "ack_deadline": iso(t.ack_deadline),
        "acknowledged_at": iso(t.acknowledged_at),
        "flags": t.flag_list,
        "linked_ticket": format_ticket_id(t.linked_ticket_id, prefix) if t.linked_ticket_id else None,
        "message_count": message_count,
        "attachments": attachments,
    }


def ticket_exists(session: Session, ticket_id: int) -> bool:
    return session.get(Ticket, ticket_id) is not None


def show_ticket(session: Session, ticket_id: int, prefix: str, policy=None) -> dict | None:  # type: ignore[no-untyped-def]
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    reporter = session.get(Reporter, ticket.reporter_id) if ticket.reporter_id else None
    messages = session.exec(
        select(Message).where(Message.ticket_id == ticket_id).order_by(col(Message.created_at), col(Message.id))
    ).all()
    attachments = session.exec(select(Attachment).where(Attachment.ticket_id == ticket_id).order_by(col(Attachment.id))).all()
    by_message: dict[int, list[dict]] = defaultdict(list)
    for a in attachments:
        by_message[a.message_pk].append(_attachment(a))
    events = session.exec(select(Event).where(Event.ticket_id == ticket_id).order_by(col(Event.at), col(Event.id))).all()
    detail = _summary(
        ticket, reporter, prefix, sum(1 for m in messages if m.direction == "in"), [_attachment(a) for a in attachments]
    )
    if policy is not None and ticket.ack_deadline is not None:
        from mailbridge.policy.deadline import explain_deadline

        # An agent must be able to trust the date: say which days were skipped and why.
        explained = explain_deadline(ticket.created_at, policy.ack_business_days, policy.timezone, policy.country)
        detail["ack_deadline_explained"] = {"hu": explained.describe("hu"), "en": explained.describe("en")}
    detail["messages"] = [
        {
            "direction": m.direction,
            "kind": m.kind,
            "channel": m.channel,
            "sender": m.sender,
            "sender_name": m.sender_name,
            "to": m.to_addrs,
            "cc": m.cc_addrs,
            "subject": m.subject,
            "text": m.text,
            "new_text": m.new_text,
            "has_html": bool(m.html),
            "message_id": m.message_id,
            "internal": m.internal,
            "reason": m.reason or None,
            "sent_at": iso(m.sent_at),
            "created_at": iso(m.created_at),
            "attachments": by_message.get(m.id, []),
        }
        for m in messages
    ]
    detail["events"] = [
        {"type": e.type, "at": iso(e.at), "by": e.by, "detail": json.loads(e.detail) if e.detail else {}} for e in events
    ]
    return detail


def list_quarantine(session: Session, prefix: str) -> list[dict]:
    rows = session.exec(
        select(Quarantine, Message).join(Message, col(Quarantine.message_pk) == Message.id).order_by(col(Quarantine.id))
    ).all()
    return [
        {
            "id": q.id,
            "ticket": format_ticket_id(q.ticket_id, prefix) if q.ticket_id else None,
            "reason": q.reason,
            "status": q.status,
            "subject": m.subject,
            "message_id": m.message_id,
            "created_at": iso(q.created_at),
            "retried_at": iso(q.retried_at),
        }
        for q, m in rows
    ]
