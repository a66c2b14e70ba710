"""What a notice is written from: the ticket, its reporter and agent, the mail it answers, its files.

Read queries only; each has a form for many tickets in one query, which a
batch of new tickets (intake, assignment) uses instead of one query each.
"""

from __future__ import annotations

import sqlalchemy as sa

from mailbridge.config import Settings
from mailbridge.models import T_ATTACHMENT, T_MESSAGE, T_REPORTER, T_TICKET
from mailbridge.ticket_ids import format_ticket_id



def ticket_context(conn: sa.Connection, settings: Settings, ticket_id: int) -> dict:
    """What every template gets: the ticket, its reporter, the company."""
    return ticket_contexts(conn, settings, [ticket_id])[ticket_id]


def ticket_contexts(conn: sa.Connection, settings: Settings, ticket_ids: list[int]) -> dict[int, dict]:
    """`ticket_context` for many tickets in one query."""
    rows = conn.execute(
        sa.select(T_TICKET, T_REPORTER.c.name.label("reporter_name"), T_REPORTER.c.email.label("reporter_email"))
        .join(T_REPORTER, T_REPORTER.c.id == T_TICKET.c.reporter_id, isouter=True)
        .where(T_TICKET.c.id.in_(ticket_ids))
    ).all()
    agents = {a.email: a for a in settings.agents}
    contexts = {}
    for ticket in rows:
        agent = agents.get(ticket.assignee)
        contexts[ticket.id] = {
            "ticket": {
                "id": format_ticket_id(ticket.id, settings.tickets.id_prefix), "subject": ticket.subject,
                "status": ticket.status, "category": ticket.category, "area": ticket.area, "channel": ticket.channel,
                "created_at": ticket.created_at, "ack_deadline": ticket.ack_deadline, "language": ticket.language,
            },
            "reporter": {"name": ticket.reporter_name or "", "email": ticket.reporter_email or ""},
            "agent": {"name": agent.name, "email": agent.email} if agent else None,
            "division": None,
            "company": {"name": settings.outbox.company_name, "support_address": settings.smtp.from_address,
                        "website": settings.outbox.website},
            "reopen_days": settings.tickets.reopen_days,
        }
    return contexts


def first_message_id(conn: sa.Connection, ticket_id: int) -> str:
    """The customer's first mail on the ticket: what our notices answer."""
    return first_message_ids(conn, [ticket_id]).get(ticket_id, "")


def first_message_ids(conn: sa.Connection, ticket_ids: list[int]) -> dict[int, str]:
    """`first_message_id` for many tickets in one query."""
    first = (sa.select(T_MESSAGE.c.ticket_id, sa.func.min(T_MESSAGE.c.id).label("id"))
             .where(T_MESSAGE.c.ticket_id.in_(ticket_ids), T_MESSAGE.c.direction == "in", T_MESSAGE.c.message_id != "")
             .group_by(T_MESSAGE.c.ticket_id).subquery())
    return dict(conn.execute(sa.select(T_MESSAGE.c.ticket_id, T_MESSAGE.c.message_id)
                             .join(first, first.c.id == T_MESSAGE.c.id)).all())


def ticket_attachments(conn: sa.Connection, ticket_id: int, message_pk: int | None = None) -> tuple[dict, ...]:
    """Stored (not rejected) files of a ticket, or of one of its messages."""
    table = T_ATTACHMENT
    query = sa.select(table.c.sha256, table.c.filename, table.c.content_type).where(
        table.c.ticket_id == ticket_id, table.c.rejected.is_(False))
    if message_pk is not None:
        query = query.where(table.c.message_pk == message_pk)
    seen: dict[str, dict] = {}
    for row in conn.execute(query.order_by(table.c.id)):
        seen.setdefault(row.sha256, {"sha256": row.sha256, "filename": row.filename, "content_type": row.content_type})
    return tuple(seen.values())


def first_message_files(conn: sa.Connection, ticket_ids: list[int]) -> dict[int, tuple[dict, ...]]:
    """The stored (not rejected) files of each ticket's first incoming message, with their
    sizes, in one query: what the assignment notice sends along."""
    first = (sa.select(T_MESSAGE.c.ticket_id, sa.func.min(T_MESSAGE.c.id).label("id"))
             .where(T_MESSAGE.c.ticket_id.in_(ticket_ids), T_MESSAGE.c.direction == "in")
             .group_by(T_MESSAGE.c.ticket_id).subquery())
    table = T_ATTACHMENT
    files: dict[int, dict[str, dict]] = {}
    for row in conn.execute(
        sa.select(first.c.ticket_id, table.c.sha256, table.c.filename, table.c.content_type, table.c.size)
        .join(first, first.c.id == table.c.message_pk).where(table.c.rejected.is_(False)).order_by(table.c.id)
    ):
        files.setdefault(row.ticket_id, {}).setdefault(row.sha256, {
            "sha256": row.sha256, "filename": row.filename, "content_type": row.content_type, "size": row.size})
    return {ticket_id: tuple(found.values()) for ticket_id, found in files.items()}
