"""An agent's desk commands by mail, and telling her when her mail was refused (SPEC "The
agent's day by mail").

`#open <channel>` opens a ticket exactly as `ticket open` does (`TicketBook.open_by_hand`),
assigned to the sender unless `#assign` says otherwise; `#log <channel> in|out` logs a
contact as `ticket log` does (`TicketBook.log_contact`); `#mine` sends her queue at once
(`workflow/desk.digest_for`, the morning digest's list and template). A command that
cannot be carried out changes nothing and the agent gets one `command_failed` mail.

A mail from an agent's address that fails the authenticity check changes nothing; the
agent's configured address learns why (`agent_refused`), at most once an hour per agent:
the claim is a journal entry written in the intake's transaction, under an advisory lock
on PostgreSQL, so two hosts taking in two forged mails tell her once.
"""

from __future__ import annotations

import email.policy
import zlib
from collections import Counter
from datetime import timedelta, timezone
from email.parser import BytesHeaderParser

import sqlalchemy as sa

from mailbridge import journal
from mailbridge.adapters.db import claim_in_transaction
from mailbridge.journal import EventKind
from mailbridge.logs import get_logger
from mailbridge.mail import Address, OutcomeKind, ParsedMail
from mailbridge.models import T_EVENT, T_MESSAGE, T_RAW, T_TICKET
from mailbridge.outbox.context import ticket_context
from mailbridge.outbox.queue import queue_mail, render_mail
from mailbridge.policy.authenticity import topmost_authserv_id
from mailbridge.policy.commands import DESK_HELP, CommandProblem, DeskCommand
from mailbridge.policy.reply_prefixes import strip_reply_prefixes
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.workflow.desk import digest_for, digest_mail
from mailbridge.workflow.tickets import NewTicket, StoredFile, TicketBook

log = get_logger("mailbridge.workflow")

# A refused agent hears of it at most this often: a misconfigured server refuses every mail.
REFUSAL_NOTICE_EVERY = timedelta(hours=1)


def act_on_desk_command(book: TicketBook, mail: ParsedMail, command: DeskCommand,
                        ticket_id: int | None) -> tuple[OutcomeKind, int | None]:
    """An authenticated agent's `#open`, `#log` or `#mine`: (what it came to, the ticket it
    opened or logged on). `ticket_id`: the ticket the mail replies to, if any."""
    agent = mail.sender.email
    problems = list(command.problems)
    if command.ok and command.name == "log" and ticket_id is None:
        problems.append(CommandProblem(1, mail.new_text.lstrip().split("\n", 1)[0],
                                       "#log needs a reply to the ticket's mail: no ticket found for this subject"))
    if problems:
        tell_command_failed(book, agent, problems, ticket_id, mail.message_id)
        return OutcomeKind.AGENT_COMMAND_FAILED, ticket_id
    if command.name == "mine":
        settings = book.settings
        me = next(a for a in settings.agents if a.email == agent)
        queue_mail(book.conn, settings, digest_mail(book.renderer, settings, me,  # type: ignore[arg-type]
                                                    digest_for(book.conn, agent, book.now), book.now), book.now)
        return OutcomeKind.AGENT_QUEUE, ticket_id
    if command.name == "log":
        assert ticket_id is not None
        book.log_contact(ticket_id, command.channel, command.direction, agent, command.text.strip())
        return OutcomeKind.AGENT_LOGGED, ticket_id
    said = command.text.strip()
    if command.phone:
        said = f"Telefonszám: {command.phone}\n\n{said}".strip()
    files = [StoredFile(p.filename, p.content_type, p.size, p.sha256) for p in mail.attachments if not p.rejected]
    new = NewTicket(subject=_subject(mail.subject), channel=command.channel,
                    reporter=Address(command.reporter_email, command.reporter_name), category=command.category,
                    area=command.area, language=book.settings.tickets.default_language, by=agent, text=said,
                    assignee=command.assign or agent)
    opened = book.open_by_hand(new, said, files)
    return OutcomeKind.AGENT_OPENED, opened


def _subject(subject: str) -> str:
    """The ticket's subject from the agent's mail: her client's Re:/Fwd: prefixes go."""
    return strip_reply_prefixes(subject)


def tell_command_failed(book: TicketBook, agent: str, problems: list[CommandProblem], ticket_id: int | None,
                        in_reply_to: str, commands: tuple[str, ...] = DESK_HELP) -> None:
    """One `command_failed` mail: what could not be done and why (nothing was changed), and
    the `commands` that would have been understood."""
    settings = book.settings
    context: dict = ticket_context(book.conn, settings, ticket_id) if ticket_id is not None else {
        "ticket": None, "reporter": None, "division": None,
        "company": {"name": settings.outbox.company_name, "support_address": settings.smtp.from_address,
                    "website": settings.outbox.website}}
    row = next((a for a in settings.agents if a.email == agent), None)
    context.update(agent={"name": row.name if row else agent, "email": agent},
                   errors=[{"line": p.text, "reason": p.reason} for p in problems], commands=list(commands))
    notice = render_mail(book.renderer, "command_failed", settings.tickets.default_language,  # type: ignore[arg-type]
                         context, (agent,), ticket_id, in_reply_to=in_reply_to)
    queue_mail(book.conn, settings, notice, book.now)
    book.event(ticket_id, EventKind.COMMAND_FAILED, agent, {"problems": [p.reason for p in problems]})


def tell_refused_agent(book: TicketBook, agent: str, reason: str, ticket_id: int | None) -> bool:
    """The agent's configured address learns that a mail in her name was refused and why,
    unless she was told within the hour (by this process or another). True: told now."""
    conn, now = book.conn, book.now
    if book.renderer is None or agent not in book.settings.agent_addresses:
        return False
    claim = f"{EventKind.AGENT_REFUSED.value} {agent}"
    if not claim_in_transaction(conn, claim):
        return False  # another host is telling her right now
    since = (now - REFUSAL_NOTICE_EVERY).astimezone(timezone.utc)
    told = conn.execute(sa.select(T_EVENT.c.id).where(
        T_EVENT.c.type == EventKind.AGENT_REFUSED.value, T_EVENT.c.by == agent, T_EVENT.c.at > since).limit(1)).first()
    if told is not None:
        return False
    settings = book.settings
    row = next(a for a in settings.agents if a.email == agent)
    subject = ""
    if ticket_id is not None:
        subject = conn.execute(sa.select(T_TICKET.c.subject).where(T_TICKET.c.id == ticket_id)).scalar() or ""
    context = {
        "agent": {"name": row.name, "email": agent}, "reason": reason,
        "ticket": {"id": format_ticket_id(ticket_id, settings.tickets.id_prefix), "subject": subject}
        if ticket_id is not None else None,
        "trusted": list(settings.security.trusted_authserv_ids), "every_minutes": 60,
        "company": {"name": settings.outbox.company_name, "support_address": settings.smtp.from_address},
    }
    notice = render_mail(book.renderer, "agent_refused", settings.tickets.default_language, context, (agent,), None)
    queue_mail(conn, settings, notice, now)
    # Written now, not with the batch's journal: the next refused mail of this batch sees it.
    journal.record(conn, None, EventKind.AGENT_REFUSED, agent, now, {"reason": reason[:300]})
    log.info("agent.refused_told", ticket=ticket_id)
    return True


# How many recent incoming mails `check` reads the headers of, and how much of each.
RECENT_MAILS = 50
_HEAD_BYTES = 64 * 1024


def authserv_ids_seen(conn: sa.Connection, limit: int = RECENT_MAILS) -> tuple[int, Counter[str]]:
    """(mails read, how many of them had each authserv-id on top): the last `limit` incoming
    mails' kept raw copies, only the start of each decompressed (bounded, whatever their size),
    so ops learn of a wrong `security.trusted_authserv_ids` before agents' mail is refused."""
    rows = conn.execute(
        sa.select(sa.func.substr(T_RAW.c.data, 1, _HEAD_BYTES))
        .join(T_MESSAGE, T_MESSAGE.c.raw_id == T_RAW.c.id)
        .where(T_MESSAGE.c.direction == "in").order_by(T_MESSAGE.c.id.desc()).limit(limit)).scalars().all()
    seen: Counter[str] = Counter()
    for start in rows:
        try:
            head = zlib.decompressobj().decompress(bytes(start or b""), _HEAD_BYTES).split(b"\r\n\r\n", 1)[0]
        except zlib.error:
            continue
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head.split(b"\n\n", 1)[0])
        seen[topmost_authserv_id(tuple(str(v) for v in headers.get_all("authentication-results") or ()))] += 1
    return len(rows), seen
