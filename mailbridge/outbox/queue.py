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

from mailbridge import journal
from mailbridge.config import Settings
from mailbridge.journal import EventKind
from mailbridge.logs import get_logger
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.models import T_MESSAGE, T_NOTIFICATION, T_OUTBOX, T_TICKET
from mailbridge.outbox.render import Renderer, TemplateFault

log = get_logger("mailbridge.outbox")


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
    # Why its template could not be rendered ("" : it was): queued as a failed row, never sent.
    unrendered: str = ""


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
        if mail.unrendered:
            _queue_unrendered(conn, mail, message_id, now)
            continue
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


def _queue_unrendered(conn: sa.Connection, mail: OutgoingMail, message_id: str, now: datetime) -> None:
    """A notice whose template failed: a `failed` outbox row saying why (what ops list and
    mend), the ticket's journal, and its assignee told in-system, who can write by hand. No
    `out` message: nothing was written, nothing went."""
    row_id = conn.execute(sa.insert(T_OUTBOX).values(
        ticket_id=mail.ticket_id, template=mail.template, recipients=", ".join(mail.to), subject=mail.subject,
        message_id=message_id, headers="{}", body_text="", body_html="", attachments="[]", status="failed",
        attempts=0, next_attempt_at=now, last_error=mail.unrendered[:1000], created_at=now)).inserted_primary_key[0]
    if mail.ticket_id is None:
        return
    journal.record(conn, mail.ticket_id, EventKind.OUTBOX_FAILED, "system", now,
                   {"outbox": row_id, "error": mail.unrendered[:300]})
    assignee = conn.execute(sa.select(T_TICKET.c.assignee).where(T_TICKET.c.id == mail.ticket_id)).scalar()
    if assignee:
        notify_agent(conn, assignee, mail.ticket_id, "outbox_failed",
                     f"Sablonhiba miatt nem készült el a(z) {mail.template} levél ({mail.unrendered[:200]})", now)


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
    try:
        rendered = renderer.render(template, language, context)
    except TemplateFault as fault:
        # One line, and the notice fails alone: a broken override must not stop the job (or
        # the mail's transaction) that wanted it. Where, not what: the message may quote data.
        log.error("outbox.render_failed", template=template, language=language, ticket=ticket_id,
                  file=fault.where, line=fault.line, error=fault.kind)
        return OutgoingMail(template, ticket_id, to, f"({template}: template error)", "", unrendered=str(fault),
                            in_reply_to=in_reply_to)
    return OutgoingMail(template, ticket_id, to, rendered.subject, rendered.text, rendered.html,
                        in_reply_to=in_reply_to, references=(in_reply_to,) if in_reply_to else (),
                        attachments=attachments)
