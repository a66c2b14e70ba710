"""What a mail on a ticket does, once intake has recorded it and knows who wrote it.

An authenticated agent's reply carries commands and text for the customer;
a division's answer is a note for the assignee (P11); a delivery report about
a message we sent marks it bounced; a customer whose files were too large
learns what was kept. Intake decides who wrote (policy/senders, authenticity)
and hands the acting to these functions, so a mail command and the same
command line command act through one `Casework`.
"""

from __future__ import annotations

import sqlalchemy as sa

from mailbridge.journal import EventKind
from mailbridge.mail import OutcomeKind, ParsedMail
from mailbridge.models import T_MESSAGE, T_OUTBOX, T_REPORTER, T_TICKET
from mailbridge.outbox.context import ticket_context
from mailbridge.outbox.queue import queue_mail, render_mail
from mailbridge.policy.bounces import BounceVerdict
from mailbridge.policy.commands import VALID_COMMANDS, read_commands, read_desk_command
from mailbridge.workflow import agent_mail
from mailbridge.workflow.followups import files_of
from mailbridge.workflow.tickets import TicketBook



def act_on_agent_reply(book: TicketBook, mail: ParsedMail, ticket_id: int, message_pk: int) -> OutcomeKind:
    """An authenticated agent's reply: commands first, then the text to the customer.
    Returns what it came to (agent_reply, agent_note, agent_escalated, …)."""
    settings, casework, conn = book.settings, book.casework, book.conn
    assert casework is not None and book.renderer is not None
    agent = mail.sender.email
    desk = read_desk_command(mail.new_text, {a.email: a.name for a in settings.agents})
    if desk is not None:  # #log (or #open, #mine) at the top of a reply to the ticket
        _mark_internal(conn, message_pk)
        return agent_mail.act_on_desk_command(book, mail, desk, ticket_id)[0]
    reply = read_commands(mail.new_text, {a.email: a.name for a in settings.agents},
                          {d.email: d.name for d in settings.divisions})
    if not reply.ok:
        # Nothing changes and nothing reaches the customer; the agent learns why.
        _mark_internal(conn, message_pk)
        agent_mail.tell_command_failed(book, agent, list(reply.problems), ticket_id, mail.message_id, VALID_COMMANDS)
        return OutcomeKind.AGENT_COMMAND_FAILED
    for command in reply.commands:
        if command.name == "status":
            casework.set_status(ticket_id, command.value, agent)
        elif command.name in ("category", "area"):
            casework.set_field(ticket_id, command.name, command.value, agent)
        elif command.name == "assign":
            casework.assign(ticket_id, command.value, agent)
    names = {c.name for c in reply.commands}
    files = files_of(mail.attachments)
    if "note" in names:
        _mark_internal(conn, message_pk)
        book.event(ticket_id, EventKind.NOTE_ADDED, agent, {})
        return OutcomeKind.AGENT_NOTE
    if "escalate" in names:
        _mark_internal(conn, message_pk)
        division = next(c.value for c in reply.commands if c.name == "escalate")
        casework.escalate(ticket_id, division, reply.text, agent)
        return OutcomeKind.AGENT_ESCALATED
    if "resolve" in names:
        casework.resolve(ticket_id, reply.text, agent)
        return OutcomeKind.AGENT_RESOLVED
    if reply.text.strip():
        casework.relay(ticket_id, agent, reply.text, files)
        status = conn.execute(sa.select(T_TICKET.c.status).where(T_TICKET.c.id == ticket_id)).scalar()
        if status in ("new", "acknowledged") and "status" not in names:
            casework.set_status(ticket_id, "in_progress", agent)  # P10.3: the agent has contacted the reporter
        return OutcomeKind.AGENT_REPLY
    _mark_internal(conn, message_pk)
    return OutcomeKind.AGENT_COMMANDS


def act_on_division_reply(book: TicketBook, mail: ParsedMail, ticket_id: int, message_pk: int) -> OutcomeKind:
    """P11: the division's answer is an internal note for the assignee, never relayed."""
    casework = book.casework
    assert casework is not None
    _mark_internal(book.conn, message_pk)
    book.event(ticket_id, EventKind.DIVISION_REPLIED, mail.sender.email, {})
    status = book.conn.execute(sa.select(T_TICKET.c.status).where(T_TICKET.c.id == ticket_id)).scalar()
    if status == "escalated":
        casework.set_status(ticket_id, "in_progress", mail.sender.email)
    casework.tell_assignee(ticket_id, "division_replied", f"Válasz érkezett: {mail.sender.email}")
    return OutcomeKind.DIVISION_NOTE


def record_bounce(book: TicketBook, report: BounceVerdict) -> None:
    """A report about a message we sent to whom it names, failed for good: the message is
    bounced, and no more automatic mail goes to them."""
    failed = ", ".join(report.undeliverable)
    rows = [m.outbox_id for m in report.bounced]
    book.conn.execute(sa.update(T_OUTBOX).where(T_OUTBOX.c.id.in_(rows)).values(
        status="bounced", last_error=("delivery report: " + failed)[:500]))
    book.conn.execute(sa.update(T_REPORTER).where(T_REPORTER.c.email.in_(report.undeliverable))
                      .values(undeliverable=True))
    ticket_id = report.ticket_id
    detail = {"recipients": list(report.undeliverable), "about": [m.message_id for m in report.bounced],
              "outbox": rows}
    book.event(ticket_id, EventKind.OUTBOX_BOUNCED if ticket_id else EventKind.MAIL_BOUNCE, "system", detail)
    if ticket_id is not None and book.casework is not None:
        book.casework.tell_assignee(ticket_id, "bounced", "Kézbesíthetetlen: " + failed[:300])


def tell_about_rejected_files(book: TicketBook, mail: ParsedMail, ticket_id: int) -> None:
    """The sender learns what was kept and how to send the rest (not silently dropped)."""
    rejected = [p for p in mail.attachments if p.rejected]
    if not rejected or book.renderer is None or not mail.sender:
        return
    if mail.sender.email in book.settings.agent_addresses:
        return
    context = ticket_context(book.conn, book.settings, ticket_id)
    context.update(
        rejected=[{"filename": p.filename, "size": p.size} for p in rejected],
        kept=[{"filename": p.filename, "size": p.size} for p in mail.attachments if not p.rejected],
        limit_bytes=book.settings.storage.max_attachment_bytes,
    )
    notice = render_mail(book.renderer, "attachment_rejected", context["ticket"]["language"], context,
                         (mail.sender.email,), ticket_id, in_reply_to=mail.message_id)
    queue_mail(book.conn, book.settings, notice, book.now)


def _mark_internal(conn: sa.Connection, message_pk: int) -> None:
    conn.execute(sa.update(T_MESSAGE).where(T_MESSAGE.c.id == message_pk).values(internal=True))
