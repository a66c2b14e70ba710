"""Store stage: one mail's verdict and thread written as rows, in the caller's transaction.

Dedupe happens here, inside the write transaction: a server copy already in
the intake log (same folder UIDVALIDITY + UID) is skipped, and a copy of a
mail we hold (same Message-ID and SHA-256 of the raw bytes) is logged
against the message we already have. Different mails that merely share a
Message-ID or a body are both kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from mailbridge.adapters.files import AttachmentStore
from mailbridge.config import Settings
from mailbridge.intake.thread import ThreadMatch, format_ticket_id, match_ticket
from mailbridge.mail import Address, ParsedMail, RawMail
from mailbridge.models import (
    Attachment,
    Event,
    IntakeLog,
    Message,
    Outbox,
    Participant,
    Quarantine,
    RawMessage,
    Reporter,
    Ticket,
)
from mailbridge.policy import loops, senders
from mailbridge.policy.classify import DEFAULT_RULES, Rule, classify, guess_language

PROCESSED = "processed"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Outcome:
    uid: int
    kind: str  # new_ticket, reply, reopened, follow_up, outsider, auto_reply, bounce, automatic, duplicate, quarantined, already
    ticket_id: int | None = None
    target: str = PROCESSED  # which server folder the copy goes to; "" leaves it
    reason: str = ""


@dataclass(frozen=True)
class StoreContext:
    settings: Settings
    files: AttachmentStore
    mailbox: str
    now: datetime

    @property
    def rules(self) -> tuple[Rule, ...]:
        configured = self.settings.classification.rules
        if not configured:
            return DEFAULT_RULES
        return tuple(Rule(tuple(r.keywords), r.category, r.area) for r in configured)


class DbTicketIndex:
    """The thread stage's view of the database."""

    def __init__(self, session: Session):
        self.session = session

    def by_message_id(self, message_id: str) -> int | None:
        return self.session.exec(
            select(Message.ticket_id)
            .where(Message.message_id == message_id, col(Message.ticket_id).is_not(None))
            .order_by(col(Message.id))
            .limit(1)
        ).first()

    def by_number(self, number: int) -> int | None:
        return self.session.exec(select(Ticket.id).where(Ticket.id == number)).first()


def already_logged(session: Session, ctx: StoreContext, raw: RawMail) -> IntakeLog | None:
    return session.exec(
        select(IntakeLog).where(
            IntakeLog.mailbox == ctx.mailbox,
            IntakeLog.folder == raw.folder,
            IntakeLog.uidvalidity == raw.uidvalidity,
            IntakeLog.uid == raw.uid,
        )
    ).first()


def store_mail(session: Session, raw: RawMail, parsed: ParsedMail, ctx: StoreContext) -> Outcome:
    """Records one parsed mail and its intake-log row."""
    logged = already_logged(session, ctx, raw)
    if logged is not None and logged.state != "retry":
        return Outcome(raw.uid, "already", target="")

    copy = session.exec(
        select(Message).where(Message.message_id == parsed.message_id, Message.raw_sha256 == parsed.raw_sha256).limit(1)
    ).first()
    if copy is not None:
        target = QUARANTINE if copy.kind == "unparseable" else PROCESSED
        _log_intake(session, ctx, raw, logged, copy.id, "stored", target, "copy of a message already held")
        return Outcome(raw.uid, "duplicate", copy.ticket_id, target)

    verdict = loops.screen(parsed, ctx.settings.own_addresses)
    match = match_ticket(parsed, DbTicketIndex(session), ctx.settings.tickets.id_prefix)
    raw_row = _keep_raw(session, raw.raw, parsed.raw_sha256, ctx.now)

    if verdict.kind == loops.PERSON:
        outcome_kind, ticket = _person_mail(session, parsed, match, ctx)
        kind = {"outsider": "outsider"}.get(outcome_kind, _message_kind(parsed, ctx))
    else:
        outcome_kind = verdict.kind
        ticket = session.get(Ticket, match.ticket_id) if match.ticket_id else None
        kind = verdict.kind

    message = _message_row(session, parsed, ticket, kind, raw_row, ctx, reason=verdict.reason)
    _attachments(session, parsed, message, ticket, ctx)

    if verdict.kind == loops.BOUNCE:
        _bounce(session, parsed, ticket, ctx)
    elif verdict.kind != loops.PERSON:
        _event(session, ticket, f"mail.{verdict.kind}", ctx, parsed.sender.email or "system",
               {"reason": verdict.reason, "message": message.id})
    _log_intake(session, ctx, raw, logged, message.id, "stored", PROCESSED)
    return Outcome(raw.uid, outcome_kind, ticket.id if ticket else None, PROCESSED, verdict.reason)


def store_unparseable(session: Session, raw: RawMail, reason: str, ctx: StoreContext) -> Outcome:
    """P6: even a mail nobody can read becomes a ticket, flagged for a person."""
    logged = already_logged(session, ctx, raw)
    if logged is not None and logged.state != "retry":
        return Outcome(raw.uid, "already", target="")
    digest = hashlib.sha256(raw.raw).hexdigest()
    raw_row = _keep_raw(session, raw.raw, digest, ctx.now)
    subject = _sniff_header(raw.raw, b"subject") or "(unreadable mail)"
    ticket = Ticket(
        subject=subject[:500], status="new", channel="email", language=ctx.settings.tickets.default_language,
        created_at=ctx.now, updated_at=ctx.now, flags="needs_review",
    )
    session.add(ticket)
    session.flush()
    message = Message(
        ticket_id=ticket.id, direction="in", kind="unparseable", subject=subject[:998],
        message_id=(_sniff_header(raw.raw, b"message-id") or "")[:998],
        reason=reason[:200], raw_id=raw_row.id, raw_sha256=digest, created_at=ctx.now,
    )
    session.add(message)
    session.flush()
    session.add(Quarantine(message_pk=message.id, ticket_id=ticket.id, reason=reason, created_at=ctx.now))
    _event(session, ticket, "ticket.created", ctx, "system", {"channel": "email", "needs_review": True})
    _event(session, ticket, "mail.quarantined", ctx, "system", {"reason": reason, "message": message.id})
    _log_intake(session, ctx, raw, logged, message.id, "quarantined", QUARANTINE, reason)
    return Outcome(raw.uid, "quarantined", ticket.id, QUARANTINE, reason)


def record_fetch_failure(session: Session, ctx: StoreContext, folder: str, uidvalidity: int, uid: int, reason: str) -> int:
    """A UID the server would not give us: logged for a retry; returns attempts so far."""
    row = session.exec(
        select(IntakeLog).where(
            IntakeLog.mailbox == ctx.mailbox, IntakeLog.folder == folder,
            IntakeLog.uidvalidity == uidvalidity, IntakeLog.uid == uid,
        )
    ).first()
    if row is None:
        row = IntakeLog(mailbox=ctx.mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid, state="retry",
                        reason=reason[:300], created_at=ctx.now, updated_at=ctx.now)
    row.attempts += 1
    row.updated_at = ctx.now
    session.add(row)
    return row.attempts


# --- the pieces -------------------------------------------------------------


def _person_mail(session: Session, parsed: ParsedMail, match: ThreadMatch, ctx: StoreContext) -> tuple[str, Ticket]:
    if match.is_new:
        return "new_ticket", _open_ticket(session, parsed, ctx)
    ticket = session.get(Ticket, match.ticket_id)
    assert ticket is not None
    role = senders.sender_role(parsed.sender.email, _participants(session, ticket, ctx))
    effect = senders.reply_effect(role, ticket.status, ticket.resolved_at, ctx.now, ctx.settings.tickets.reopen_days)
    by = parsed.sender.email or "unknown"
    if effect == senders.FOLLOW_UP:
        new = _open_ticket(session, parsed, ctx, linked=ticket)
        _event(session, ticket, "ticket.follow_up", ctx, by, {"new_ticket": format_ticket_id(new.id, ctx.settings.tickets.id_prefix)})
        return "follow_up", new
    if effect == senders.REOPEN:
        ticket.status = "in_progress"
        ticket.resolved_at = None
        _event(session, ticket, "ticket.reopened", ctx, by, {"via": match.via})
    elif effect == senders.RECORD_ONLY:
        _event(session, ticket, "mail.outsider", ctx, by, {"via": match.via})
        ticket.updated_at = ctx.now
        session.add(ticket)
        return "outsider", ticket
    ticket.updated_at = ctx.now
    session.add(ticket)
    _event(session, ticket, "mail.received", ctx, by, {"via": match.via, "role": role})
    return ("reopened" if effect == senders.REOPEN else "reply"), ticket


def _open_ticket(session: Session, parsed: ParsedMail, ctx: StoreContext, linked: Ticket | None = None) -> Ticket:
    reporter = _reporter(session, parsed.sender, ctx) if parsed.sender else None
    found = classify(parsed.subject, parsed.new_text or parsed.text, ctx.rules)
    ticket = Ticket(
        subject=(parsed.subject or "(no subject)")[:500],
        status="new",
        category=found.category,
        area=found.area,
        channel="email",
        reporter_id=reporter.id if reporter else None,
        language=guess_language(parsed.subject + "\n" + parsed.text[:2000], ctx.settings.tickets.default_language),
        linked_ticket_id=linked.id if linked else None,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    if reporter is None:
        ticket.add_flag("no_sender")
    session.add(ticket)
    session.flush()
    own = ctx.settings.own_addresses
    people = {}
    if reporter is not None and reporter.email:
        people[reporter.email] = "reporter"
    for role, addresses in (("to", parsed.to), ("cc", parsed.cc)):
        for address in addresses:
            if address.email not in own:
                people.setdefault(address.email, role)
    for email, role in people.items():
        session.add(Participant(ticket_id=ticket.id, email=email, role=role))
    detail = {"channel": "email", "category": found.category, "area": found.area}
    if linked is not None:
        detail["follows"] = format_ticket_id(linked.id, ctx.settings.tickets.id_prefix)
    _event(session, ticket, "ticket.created", ctx, parsed.sender.email or "system", detail)
    return ticket


def _participants(session: Session, ticket: Ticket, ctx: StoreContext) -> senders.Participants:
    reporter = session.get(Reporter, ticket.reporter_id) if ticket.reporter_id else None
    others = session.exec(select(Participant.email).where(Participant.ticket_id == ticket.id)).all()
    return senders.Participants(
        reporter=(reporter.email or "") if reporter else "",
        others=frozenset(others),
        agents=ctx.settings.agent_addresses,
        divisions=ctx.settings.division_addresses,
    )


def _reporter(session: Session, sender: Address, ctx: StoreContext) -> Reporter:
    reporter = session.exec(select(Reporter).where(Reporter.email == sender.email)).first()
    if reporter is None:
        reporter = Reporter(email=sender.email, name=sender.name[:200], created_at=ctx.now)
        session.add(reporter)
        session.flush()
    elif sender.name and not reporter.name:
        reporter.name = sender.name[:200]
        session.add(reporter)
    return reporter


def _message_kind(parsed: ParsedMail, ctx: StoreContext) -> str:
    if parsed.sender.email in ctx.settings.agent_addresses:
        return "agent"
    if parsed.sender.email in ctx.settings.division_addresses:
        return "division"
    return "customer"


def _message_row(
    session: Session, parsed: ParsedMail, ticket: Ticket | None, kind: str, raw_row: RawMessage, ctx: StoreContext,
    reason: str = "",
) -> Message:
    message = Message(
        ticket_id=ticket.id if ticket else None,
        direction="in",
        kind=kind,
        message_id=parsed.message_id,
        sender=parsed.sender.email,
        sender_name=parsed.sender.name[:200],
        to_addrs=", ".join(a.email for a in parsed.to),
        cc_addrs=", ".join(a.email for a in parsed.cc),
        subject=parsed.subject[:5000],
        text=parsed.text,
        new_text=parsed.new_text,
        html=parsed.html,
        references=" ".join(parsed.references),
        reason=reason[:200],
        raw_id=raw_row.id,
        raw_sha256=parsed.raw_sha256,
        sent_at=parsed.date,
        created_at=ctx.now,
    )
    session.add(message)
    session.flush()
    return message


def _attachments(session: Session, parsed: ParsedMail, message: Message, ticket: Ticket | None, ctx: StoreContext) -> None:
    for part in parsed.attachments:
        if not part.rejected:
            ctx.files.put(part.data, part.sha256)
        session.add(
            Attachment(
                message_pk=message.id, ticket_id=ticket.id if ticket else None, filename=part.filename,
                content_type=part.content_type[:200], size=part.size, sha256=part.sha256,
                content_id=part.content_id[:998], inline=part.inline, rejected=part.rejected, reason=part.reason,
            )
        )
        if part.rejected and ticket is not None:
            _event(session, ticket, "attachment.rejected", ctx, "system",
                   {"filename": part.filename, "size": part.size, "reason": part.reason})


def _bounce(session: Session, parsed: ParsedMail, ticket: Ticket | None, ctx: StoreContext) -> None:
    report = parsed.report
    ids = report.message_ids if report else ()
    bounced = session.exec(select(Outbox).where(col(Outbox.message_id).in_(ids))).all() if ids else []
    for row in bounced:
        row.status = "bounced"
        row.last_error = "delivery report: " + ", ".join(report.recipients)[:500] if report else "delivery report"
        session.add(row)
    detail = {"recipients": list(report.recipients) if report else [], "about": list(ids), "outbox": [r.id for r in bounced]}
    _event(session, ticket, "outbox.bounced" if ticket else "mail.bounce", ctx, "system", detail)


def _keep_raw(session: Session, raw: bytes, digest: str, now: datetime) -> RawMessage:
    existing = session.exec(select(RawMessage).where(RawMessage.sha256 == digest).limit(1)).first()
    if existing is not None:
        return existing
    row = RawMessage(sha256=digest, size=len(raw), data=zlib.compress(raw, 6), created_at=now)
    session.add(row)
    session.flush()
    return row


def _log_intake(session: Session, ctx: StoreContext, raw: RawMail, row: IntakeLog | None, message_pk: int | None,
                state: str, target: str, reason: str = "") -> None:
    if row is None:
        row = IntakeLog(mailbox=ctx.mailbox, folder=raw.folder, uidvalidity=raw.uidvalidity, uid=raw.uid,
                        created_at=ctx.now, updated_at=ctx.now, state=state)
    row.message_pk, row.state, row.target, row.reason, row.updated_at = message_pk, state, target, reason[:300], ctx.now
    session.add(row)


def _event(session: Session, ticket: Ticket | None, type_: str, ctx: StoreContext, by: str, detail: dict) -> None:
    session.add(Event(ticket_id=ticket.id if ticket else None, type=type_, at=ctx.now, by=by,
                      detail=json.dumps(detail, ensure_ascii=False)))


def _sniff_header(raw: bytes, name: bytes) -> str | None:
    found = re.search(rb"(?im)^" + name + rb":[ \t]*(.{1,500})$", raw[:65536])
    return found.group(1).decode("utf-8", "replace").strip() if found else None


def reread_quarantined(session: Session, entry: Quarantine, parsed: ParsedMail | str, ctx: StoreContext) -> bool:
    """`quarantine retry`: a mail that now parses fills in its placeholder ticket.

    The ticket keeps its ID (the reporter may already know it); it gets the
    real subject, reporter, category and attachments, and loses needs_review.
    """
    entry.retried_at = ctx.now
    ticket = session.get(Ticket, entry.ticket_id) if entry.ticket_id else None
    if isinstance(parsed, str):
        entry.status = "failed_again"
        entry.reason = f"{entry.reason}; retry: {parsed}"[:2000]
        session.add(entry)
        _event(session, ticket, "quarantine.retry_failed", ctx, "system", {"reason": parsed})
        return False
    message = session.get(Message, entry.message_pk)
    assert message is not None
    for name, value in (
        ("message_id", parsed.message_id), ("sender", parsed.sender.email), ("sender_name", parsed.sender.name[:200]),
        ("to_addrs", ", ".join(a.email for a in parsed.to)), ("cc_addrs", ", ".join(a.email for a in parsed.cc)),
        ("subject", parsed.subject[:5000]), ("text", parsed.text), ("new_text", parsed.new_text),
        ("html", parsed.html), ("references", " ".join(parsed.references)), ("sent_at", parsed.date),
        ("kind", _message_kind(parsed, ctx)), ("reason", ""),
    ):
        setattr(message, name, value)
    session.add(message)
    _attachments(session, parsed, message, ticket, ctx)
    if ticket is not None:
        reporter = _reporter(session, parsed.sender, ctx) if parsed.sender else None
        found = classify(parsed.subject, parsed.new_text or parsed.text, ctx.rules)
        ticket.subject = (parsed.subject or "(no subject)")[:500]
        ticket.reporter_id = reporter.id if reporter else None
        ticket.category, ticket.area = found.category, found.area
        ticket.flags = ",".join(f for f in ticket.flag_list if f != "needs_review")
        ticket.updated_at = ctx.now
        session.add(ticket)
        if reporter is not None and reporter.email:
            exists = session.exec(select(Participant).where(Participant.ticket_id == ticket.id,
                                                            Participant.email == reporter.email)).first()
            if exists is None:
                session.add(Participant(ticket_id=ticket.id, email=reporter.email, role="reporter"))
    entry.status = "retried"
    session.add(entry)
    _event(session, ticket, "quarantine.retried", ctx, "system", {"quarantine": entry.id})
    return True
