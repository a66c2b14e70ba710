"""Rows -> the outbox: a notice is queued in the transaction that caused it.

Each queued mail also becomes an `out` message on its ticket, under our own
Message-ID, so a reply to it threads by References at once, and a rare
second delivery after a crash mid-send is recognisable by the same ID.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from mailbridge.config import Settings
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.models import Message, Notification, Outbox, Reporter, Ticket
from mailbridge.outbox.render import Renderer

T_OUTBOX = Outbox.__table__
T_MESSAGE = Message.__table__
T_TICKET = Ticket.__table__
T_REPORTER = Reporter.__table__
T_NOTIFICATION = Notification.__table__

# Customers' notices are automatic (RFC 3834): auto-responders must not answer them.
AUTOMATIC = frozenset({"ack", "outcome", "attachment_rejected", "agent_assigned", "sla_warning", "command_failed",
                       "escalation", "ops_alarm"})
INTERNAL = frozenset({"agent_assigned", "sla_warning", "command_failed", "escalation"})


@dataclass(frozen=True)
class OutgoingMail:
    template: str
    ticket_id: int | None
    to: tuple[str, ...]
    subject: str
    text: str
    html: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = field(default_factory=tuple)
    # Files from the attachment store: ({"sha256", "filename", "content_type"}, …)
    attachments: tuple[dict, ...] = field(default_factory=tuple)


def new_message_id(template: str, ticket_ref: str, from_address: str) -> str:
    domain = from_address.rpartition("@")[2] or "mailbridge.invalid"
    return f"<{template}.{ticket_ref}.{uuid.uuid4().hex[:16]}@{domain}>"


def queue_mail(conn: sa.Connection, settings: Settings, mail: OutgoingMail, now: datetime) -> str:
    """Writes the outbox row and the ticket's `out` message; returns our Message-ID."""
    return queue_mails(conn, settings, [mail], now)[0]


def queue_mails(conn: sa.Connection, settings: Settings, mails: list[OutgoingMail], now: datetime) -> list[str]:
    """`queue_mail` for many: one statement per table, whatever their number (a round trip
    each is what a batch of new tickets costs on a database server)."""
    outbox_rows, message_rows, message_ids = [], [], []
    for mail in mails:
        ref = format_ticket_id(mail.ticket_id, settings.tickets.id_prefix) if mail.ticket_id else "system"
        message_id = new_message_id(mail.template, ref, settings.smtp.from_address)
        message_ids.append(message_id)
        headers = {"Reply-To": settings.smtp.from_address, "X-Mailbridge-Ticket": ref}
        if mail.in_reply_to:
            headers["In-Reply-To"] = mail.in_reply_to
        references = [r for r in mail.references if r]
        if references:
            headers["References"] = " ".join(dict.fromkeys(references))
        if mail.template in AUTOMATIC:
            headers["Auto-Submitted"] = "auto-replied"
        outbox_rows.append({
            "ticket_id": mail.ticket_id, "template": mail.template, "recipients": ", ".join(mail.to),
            "subject": mail.subject, "message_id": message_id, "headers": json.dumps(headers, ensure_ascii=False),
            "body_text": mail.text, "body_html": mail.html, "attachments": json.dumps(list(mail.attachments)),
            "status": "queued", "attempts": 0, "next_attempt_at": now,
            "last_error": "", "created_at": now,
        })
        if mail.ticket_id is not None:
            message_rows.append({
                "ticket_id": mail.ticket_id, "direction": "out", "kind": mail.template,
                "internal": mail.template in INTERNAL, "message_id": message_id, "sender": settings.smtp.from_address,
                "sender_name": settings.smtp.from_name, "to_addrs": ", ".join(mail.to), "cc_addrs": "",
                "subject": mail.subject, "text": mail.text, "new_text": mail.text, "html": mail.html,
                "references": " ".join(references), "reason": "", "raw_sha256": "", "created_at": now,
            })
    if outbox_rows:
        conn.execute(sa.insert(T_OUTBOX), outbox_rows)
    if message_rows:
        conn.execute(sa.insert(T_MESSAGE), message_rows)
    return message_ids


def notify_agent(conn: sa.Connection, agent: str, ticket_id: int | None, kind: str, text: str, now: datetime) -> None:
    """The in-system half of telling an agent (the mail is the other half)."""
    notify_agents(conn, [(agent, ticket_id, kind, text)], now)


def notify_agents(conn: sa.Connection, notices: list[tuple[str, int | None, str, str]], now: datetime) -> None:
    """`notify_agent` for many (agent, ticket, kind, text) notices in one statement."""
    if notices:
        conn.execute(sa.insert(T_NOTIFICATION), [
            {"agent": agent, "ticket_id": ticket_id, "kind": kind, "text": text, "created_at": now}
            for agent, ticket_id, kind, text in notices])


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


def render_mail(renderer: Renderer, template: str, language: str, context: dict, to: tuple[str, ...],
                ticket_id: int | None, in_reply_to: str = "", attachments: tuple[dict, ...] = ()) -> OutgoingMail:
    rendered = renderer.render(template, language, context)
    return OutgoingMail(template, ticket_id, to, rendered.subject, rendered.text, rendered.html,
                        in_reply_to=in_reply_to, references=(in_reply_to,) if in_reply_to else (),
                        attachments=attachments)


def ticket_attachments(conn: sa.Connection, ticket_id: int, message_pk: int | None = None) -> tuple[dict, ...]:
    """Stored (not rejected) files of a ticket, or of one of its messages."""
    from mailbridge.models import Attachment

    table = Attachment.__table__
    query = sa.select(table.c.sha256, table.c.filename, table.c.content_type).where(
        table.c.ticket_id == ticket_id, table.c.rejected.is_(False))
    if message_pk is not None:
        query = query.where(table.c.message_pk == message_pk)
    seen: dict[str, dict] = {}
    for row in conn.execute(query.order_by(table.c.id)):
        seen.setdefault(row.sha256, {"sha256": row.sha256, "filename": row.filename, "content_type": row.content_type})
    return tuple(seen.values())
