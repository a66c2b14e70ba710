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
from mailbridge.models import T_MESSAGE, T_NOTIFICATION, T_OUTBOX
from mailbridge.outbox.render import Renderer


# Our notices are automatic (RFC 3834): auto-responders must not answer them. One that answers
# a mail is auto-replied; one the clock makes (a warning, a digest, a report) auto-generated.
AUTO_REPLIED = frozenset({"ack", "outcome", "attachment_rejected", "agent_assigned", "command_failed", "escalation"})
AUTO_GENERATED = frozenset({"sla_warning", "ops_alarm", "agent_digest", "supervisor_report", "ticket_update",
                            "agent_refused"})
AUTOMATIC = AUTO_REPLIED | AUTO_GENERATED
INTERNAL = frozenset({"agent_assigned", "sla_warning", "command_failed", "escalation", "ticket_update",
                      "agent_refused"})


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
            headers["Auto-Submitted"] = "auto-generated" if mail.template in AUTO_GENERATED else "auto-replied"
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


def render_mail(renderer: Renderer, template: str, language: str, context: dict, to: tuple[str, ...],
                ticket_id: int | None, in_reply_to: str = "", attachments: tuple[dict, ...] = ()) -> OutgoingMail:
    rendered = renderer.render(template, language, context)
    return OutgoingMail(template, ticket_id, to, rendered.subject, rendered.text, rendered.html,
                        in_reply_to=in_reply_to, references=(in_reply_to,) if in_reply_to else (),
                        attachments=attachments)
