"""Store stage: a batch of mails written as rows, in the caller's transaction.

Dedupe happens here, inside the write transaction: a server copy already in
the intake log (same folder UIDVALIDITY + UID) is skipped, and a copy of a
mail we hold (same Message-ID and SHA-256 of the raw bytes) is logged
against the message we already have. Different mails that merely share a
Message-ID or a body are both kept.

`quarantine retry` stores a quarantined mail, read again, through the same
steps as a first read (`store_again`), into the rows it has: its message row
is filled in, and the ticket opened for it becomes the mail's ticket or leads
to the one it belongs to.

Speed: what a batch needs to look up (intake log, copies, threads, the tickets
it names and their people, reporters) is read with one query each before the
first mail, then kept up to date as the batch writes. The rows are held by a
buffered TicketBook, their keys handed out ahead, and go in at the end in one
multi-row statement per table: a batch costs a handful of statements whatever
its size. Mail that acts on tickets (agents', divisions', bounces, rejected
files) runs its workflow code in `book.immediate()`, after what is held.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from mailbridge.adapters.db import KeysTaken, in_chunks, insert_statement
from mailbridge.adapters.files import AttachmentStore
from mailbridge.config import Settings
from mailbridge.errors import StorageError
from mailbridge.intake.form import read_form
from mailbridge.intake.prepare import Prepared, Staged, Unreadable, raw_copy
from mailbridge.outbox.render import Renderer
from mailbridge.workflow import replies
from mailbridge.workflow import agent_mail
from mailbridge.workflow.actions import merge_tickets
from mailbridge.workflow.followups import FollowUp, files_of
from mailbridge.workflow.tickets import NewTicket, StoredFile, TicketBook
from mailbridge.intake.thread import ThreadMatch, match_ticket
from mailbridge.journal import EventKind
from mailbridge.mail import Address, OutcomeKind, ParsedMail, RawMail
from mailbridge.ticket_ids import find_tag, format_ticket_id
from mailbridge.models import (
    Attachment,
    IntakeLog,
    Message,
    Outbox,
    Participant,
    Quarantine,
    RawMessage,
    Reporter,
    Ticket,
)
from mailbridge.logs import get_logger
from mailbridge.policy import bounces, loops, senders
from mailbridge.policy.authenticity import sender_is_authentic
from mailbridge.policy.commands import read_desk_command

# What a mail recorded on an existing ticket came to, when its assignee gets a copy: all but
# a new ticket (its agent is told by the assignment notice) and an agent's refused commands
# (only their sender is told).
_FORWARDED = frozenset({OutcomeKind.REPLY, OutcomeKind.REOPENED, OutcomeKind.OUTSIDER, OutcomeKind.AUTO_REPLY,
                        OutcomeKind.DIVISION_NOTE, OutcomeKind.AGENT_REPLY, OutcomeKind.AGENT_NOTE,
                        OutcomeKind.AGENT_ESCALATED, OutcomeKind.AGENT_RESOLVED, OutcomeKind.AGENT_COMMANDS})
_KIND_OF_ROLE = {senders.AGENT: "agent", senders.DIVISION: "division", senders.OUTSIDER: "outsider"}
_FORGED_EVENT = {senders.AGENT: EventKind.MAIL_FORGED_AGENT, senders.DIVISION: EventKind.MAIL_FORGED_DIVISION}

PROCESSED = "processed"
QUARANTINE = "quarantine"

T_TICKET = Ticket.__table__
T_REPORTER = Reporter.__table__
T_PARTICIPANT = Participant.__table__
T_RAW = RawMessage.__table__
T_MESSAGE = Message.__table__
T_ATTACHMENT = Attachment.__table__
T_INTAKE = IntakeLog.__table__
T_QUARANTINE = Quarantine.__table__
T_OUTBOX = Outbox.__table__

log = get_logger("mailbridge.intake")

@dataclass(frozen=True)
class Outcome:
    uid: int
    kind: OutcomeKind
    ticket_id: int | None = None
    target: str = PROCESSED  # which server folder the copy goes to; "" leaves it
    reason: str = ""


@dataclass(frozen=True)
class StoreContext:
    settings: Settings
    files: AttachmentStore
    mailbox: str
    now: datetime
    renderer: Renderer  # agents are assigned and told, agents' mail acts: on a first read and a retry alike


@dataclass(frozen=True)
class Quarantined:
    """A quarantine entry (P6) whose mail `quarantine retry` reads again."""

    id: int
    message_pk: int  # its message row, recorded when it came
    ticket_id: int | None  # the ticket opened for it then
    placeholder: int | None  # that ticket, while it can still become the mail's (not merged away since)
    reason: str
    mailbox: str  # where it came from, as the intake log has it ("" if it has none)
    folder: str
    uidvalidity: int
    uid: int
    raw_id: int | None  # its raw copy, if one is held


@dataclass
class _Logged:
    id: int
    state: str


@dataclass
class _KnownTicket:
    """What a reply needs of its ticket, read once per batch (or made by it), kept current."""

    status: str
    resolved_at: datetime | None
    reporter: str  # the reporter's address ("" if none)
    people: set[str]  # its participants' addresses


class MailStore:
    """Writes one batch; also the thread stage's TicketIndex for that batch."""

    def __init__(self, session: Session, ctx: StoreContext, batch: Sequence[tuple[RawMail, Prepared | Unreadable]] = (),
                 buffered: bool = True, predict: bool = True):
        self.session = session
        self.conn = session.connection()
        self.ctx = ctx
        self.prefix = ctx.settings.tickets.id_prefix
        self.form_senders = frozenset(s.lower() for s in ctx.settings.forms.senders)
        # Read once a batch: the settings build these sets anew on each call (a few µs a mail each).
        settings = ctx.settings
        self.agents, self.divisions, self.own = settings.agent_addresses, settings.division_addresses, settings.own_addresses
        self.agent_names = {a.email: a.name for a in settings.agents}
        self.staff = self.agents | self.divisions | self.own
        self._intake_rows: list[dict] = []
        self.incomplete_forms: list[tuple] = []
        self.logged: dict[tuple[str, int, int], _Logged] = {}
        self.copies: dict[tuple[str, str], tuple[int, int | None, str]] = {}
        self.threads: dict[str, int] = {}
        self.tickets: set[int] = set()
        self.merged: dict[int, int] = {}
        self.raw_ids: dict[str, int] = {}
        self.known: dict[int, _KnownTicket] = {}
        self._intake_changes: list[dict] = []
        self._notices: list[tuple[int, str, str]] = []  # (ticket, kind, text) for its assignee, at finish
        self._held_raw_bytes = 0
        # Opening tickets and acting on them is the workflow's; the store records mail.
        self.book = TicketBook(self.conn, ctx.settings, ctx.now, ctx.renderer, buffered=buffered)
        self.book.keys.predict = predict
        self._prefetch(batch)

    # --- the batch's lookups, read once -------------------------------------

    def _prefetch(self, batch: Sequence[tuple[RawMail, Prepared | Unreadable]]) -> None:
        c = self.conn
        for folder, uidvalidity in {(r.folder, r.uidvalidity) for r, _ in batch}:
            uids = [r.uid for r, _ in batch if (r.folder, r.uidvalidity) == (folder, uidvalidity)]
            for part in in_chunks(uids):
                for row in c.execute(
                    sa.select(T_INTAKE.c.id, T_INTAKE.c.uid, T_INTAKE.c.state).where(
                        T_INTAKE.c.mailbox == self.ctx.mailbox, T_INTAKE.c.folder == folder,
                        T_INTAKE.c.uidvalidity == uidvalidity, T_INTAKE.c.uid.in_(part),
                    )
                ):
                    self.logged[(folder, uidvalidity, row.uid)] = _Logged(row.id, row.state)
        mails = [p.mail for _, p in batch if isinstance(p, Prepared)]
        ids = sorted({m.message_id for m in mails})
        for part in in_chunks(ids):
            for row in c.execute(
                sa.select(T_MESSAGE.c.id, T_MESSAGE.c.message_id, T_MESSAGE.c.raw_sha256, T_MESSAGE.c.ticket_id,
                          T_MESSAGE.c.kind).where(T_MESSAGE.c.message_id.in_(part)).order_by(T_MESSAGE.c.id.desc())
            ):
                self.copies[(row.message_id, row.raw_sha256)] = (row.id, row.ticket_id, row.kind)
        refs = sorted({r for m in mails for r in (*m.references, *(m.report.message_ids if m.report else ()))})
        for part in in_chunks(refs):
            for row in c.execute(
                sa.select(T_MESSAGE.c.message_id, T_MESSAGE.c.ticket_id)
                .where(T_MESSAGE.c.message_id.in_(part), T_MESSAGE.c.ticket_id.is_not(None))
                .order_by(T_MESSAGE.c.id.desc())  # the oldest message of an ID wins
            ):
                self.threads[row.message_id] = row.ticket_id
        numbers = {n for m in mails if (n := find_tag(m.subject, self.prefix)) is not None}
        self._know_tickets(sorted(numbers | set(self.threads.values())))
        emails = sorted({m.reporter.email for m in mails if m.reporter})
        for part in in_chunks(emails):
            # an address looked up and not found is new: no second query
            self.book.remember_reporters(part, c.execute(sa.select(T_REPORTER.c.id, T_REPORTER.c.email, T_REPORTER.c.name)
                                                         .where(T_REPORTER.c.email.in_(part))))
        shas = sorted({m.raw_sha256 for m in mails})
        for part in in_chunks(shas):
            for row in c.execute(sa.select(T_RAW.c.id, T_RAW.c.sha256).where(T_RAW.c.sha256.in_(part))):
                self.raw_ids.setdefault(row.sha256, row.id)

    def _know_tickets(self, ids: Sequence[int]) -> None:
        """The tickets a batch's mail may answer, with their reporters and participants: one query each."""
        c = self.conn
        for part in in_chunks(ids):
            for row in c.execute(
                sa.select(T_TICKET.c.id, T_TICKET.c.merged_into_id, T_TICKET.c.status, T_TICKET.c.resolved_at,
                          T_REPORTER.c.email).outerjoin(T_REPORTER, T_REPORTER.c.id == T_TICKET.c.reporter_id)
                .where(T_TICKET.c.id.in_(part))
            ):
                self.tickets.add(row.id)
                if row.merged_into_id:
                    self.merged[row.id] = row.merged_into_id
                self.known[row.id] = _KnownTicket(row.status, row.resolved_at, row.email or "", set())
            found = [n for n in part if n in self.known]
            if found:
                for row in c.execute(sa.select(T_PARTICIPANT.c.ticket_id, T_PARTICIPANT.c.email)
                                     .where(T_PARTICIPANT.c.ticket_id.in_(found))):
                    self.known[row.ticket_id].people.add(row.email)

    # TicketIndex, for match_ticket
    def by_message_id(self, message_id: str) -> int | None:
        return self.threads.get(message_id)

    def by_number(self, number: int) -> int | None:
        if number not in self.tickets:
            return None
        for _ in range(10):  # a merged ticket's mail follows it (a chain, at most this long)
            if number not in self.merged:
                break
            number = self._merged_target(number)
        return number

    def _merged_target(self, number: int) -> int:
        target = self.merged[number]
        if target not in self.merged:
            row = self.conn.execute(sa.select(T_TICKET.c.merged_into_id).where(T_TICKET.c.id == target)).scalar()
            if row:
                self.merged[target] = row
        return target

    # --- one mail --------------------------------------------------------------

    def store(self, raw: RawMail, prepared: Prepared | Unreadable) -> Outcome:
        """A server copy taken in: its rows, the intake log's word that it is, and what became of it."""
        logged = self.logged.get((raw.folder, raw.uidvalidity, raw.uid))
        if logged is not None and logged.state != "retry":
            return Outcome(raw.uid, OutcomeKind.ALREADY, target="")
        if isinstance(prepared, Unreadable):
            return self._unparseable(raw, prepared.reason, logged)
        outcome, message_pk = self._take_in(raw, prepared)
        held = "copy of a message already held" if outcome.kind == OutcomeKind.DUPLICATE else ""
        self._log_intake(raw, logged, message_pk, "stored", outcome.target, held)
        return outcome

    def store_again(self, again: Quarantined, raw: RawMail, prepared: Prepared | Unreadable) -> Outcome:
        """`quarantine retry`: the mail of a quarantine entry, read again, taken in as on a first
        read, into the rows it has (its message, the ticket opened for it); the server copy stays
        in the quarantine folder."""
        if isinstance(prepared, Unreadable):
            return self._unreadable_again(again, raw, prepared.reason)
        outcome, _ = self._take_in(raw, prepared, again)
        self._settle_placeholder(again, outcome.ticket_id)
        self.conn.execute(sa.update(T_QUARANTINE).where(T_QUARANTINE.c.id == again.id)
                          .values(status="retried", retried_at=self.ctx.now))
        self.event(again.ticket_id, EventKind.QUARANTINE_RETRIED, "system", {"quarantine": again.id})
        return replace(outcome, target="")

    def _take_in(self, raw: RawMail, prepared: Prepared, again: Quarantined | None = None) -> tuple[Outcome, int]:
        """Rows for a mail that could be read, and the acting it causes: (what became of it, its message)."""
        parsed = prepared.mail
        copy = self.copies.get((parsed.message_id, parsed.raw_sha256))
        if copy is not None and (again is None or copy[0] != again.message_pk):
            message_pk, ticket_id, kind = copy
            target = QUARANTINE if kind == "unparseable" else PROCESSED
            return Outcome(raw.uid, OutcomeKind.DUPLICATE, ticket_id, target), message_pk

        verdict = prepared.verdict
        rules = prepared.rules
        if verdict.is_person and rules is not None and (rules.spam or rules.ignore):
            # Recorded (P6), but no ticket and no acknowledgement: spam, or a sender ops block.
            kind = OutcomeKind.SPAM if rules.spam else OutcomeKind.IGNORED
            verdict = loops.Verdict.automatic(f"{kind}: {', '.join(rules.matched)}")
            raw_id = self._keep_raw(parsed.raw_sha256, parsed.raw_size, raw.raw, prepared.staged)
            message_pk = self._message(parsed, None, str(kind), raw_id, verdict.reason, again)
            self.attachments(parsed, message_pk, None, prepared.staged)
            self.event(None, EventKind.mail(kind), "system", {"rules": list(rules.matched), "message": message_pk})
            return Outcome(raw.uid, kind, None, PROCESSED, verdict.reason), message_pk
        match = match_ticket(parsed, self, self.prefix)
        raw_id = self._keep_raw(parsed.raw_sha256, parsed.raw_size, raw.raw, prepared.staged)

        role = ""
        report: bounces.BounceVerdict | None = None
        if verdict.is_person and match.is_new and self.book.casework is not None:
            taken = self._agent_mail(raw, prepared, raw_id, again)
            if taken is not None:
                return taken
        if verdict.is_person:
            outcome_kind, ticket_id, role = self._person_mail(prepared, match, again.placeholder if again else None,
                                                              raw.received or parsed.date)
            kind = _KIND_OF_ROLE.get(role, "customer")
        elif verdict.kind == loops.VerdictKind.BOUNCE:
            # Only a report about a message we sent to whom it names acts; any other is automatic mail.
            report = self._judge_report(parsed)
            ticket_id = report.ticket_id
            outcome_kind = OutcomeKind.BOUNCE if report.counts else OutcomeKind.AUTOMATIC
            kind = str(outcome_kind)
            if not report.counts:
                verdict = loops.Verdict.automatic(f"{verdict.reason}: {report.reason}")
        else:
            outcome_kind, ticket_id, kind = OutcomeKind(verdict.kind), match.ticket_id, str(verdict.kind)

        message_pk = self._message(parsed, ticket_id, kind, raw_id, verdict.reason, again)
        self.attachments(parsed, message_pk, ticket_id, prepared.staged)
        if ticket_id is not None and role in senders.STAFF and self.book.casework is not None:
            with self.book.immediate():  # the agent's files travel on with the relay or escalation
                act = replies.act_on_agent_reply if role == senders.AGENT else replies.act_on_division_reply
                outcome_kind = act(self.book, parsed, ticket_id, message_pk)
            self.known.pop(ticket_id, None)  # what it did to the ticket is read again if asked
        if verdict.is_person and ticket_id is not None and any(p.rejected for p in parsed.attachments):
            with self.book.immediate():
                replies.tell_about_rejected_files(self.book, parsed, ticket_id)
        if ticket_id is not None and outcome_kind in _FORWARDED and self.book.followups is not None:
            self.book.followups.add(FollowUp(
                ticket_id, parsed.sender.email, parsed.sender.name, parsed.message_id,
                parsed.new_text or parsed.text, files_of(parsed.attachments), role or str(verdict.kind)))
        if report is not None and report.counts:
            with self.book.immediate():
                replies.record_bounce(self.book, report)
        elif not verdict.is_person:
            self.event(ticket_id, EventKind.mail(verdict.kind), parsed.sender.email or "system",
                       {"reason": verdict.reason, "message": message_pk})
        return Outcome(raw.uid, outcome_kind, ticket_id, PROCESSED, verdict.reason), message_pk

    def _unparseable(self, raw: RawMail, reason: str, logged: _Logged | None) -> Outcome:
        """P6: even a mail nobody can read becomes a ticket, flagged for a person."""
        digest = hashlib.sha256(raw.raw).hexdigest()
        raw_id = self._keep_raw(digest, len(raw.raw), raw.raw)
        subject = (_sniff_header(raw.raw, b"subject") or "(unreadable mail)")[:500]
        now = self.ctx.now
        ticket_id = self.book.insert(T_TICKET, subject=subject, status="new", category="Egyéb", area="Egyéb",
                                 channel="email", language=self.ctx.settings.tickets.default_language,
                                 flags="needs_review", created_at=now, updated_at=now, ack_deadline=self.book.deadline(now))
        self.tickets.add(ticket_id)
        self.known[ticket_id] = _KnownTicket("new", None, "", set())
        self.book.pending_assignments.append((ticket_id, "Egyéb", ""))
        message_pk = self.book.insert(
            T_MESSAGE, ticket_id=ticket_id, direction="in", kind="unparseable", internal=False,
            message_id=(_sniff_header(raw.raw, b"message-id") or "")[:998], sender="", sender_name="",
            to_addrs="", cc_addrs="", subject=subject, text="", new_text="", html="", references="",
            reason=reason[:200], raw_id=raw_id, raw_sha256=digest, created_at=now,
        )
        self.book.insert(T_QUARANTINE, message_pk=message_pk, ticket_id=ticket_id, reason=reason, status="waiting",
                     created_at=now)
        self.event(ticket_id, EventKind.TICKET_CREATED, "system", {"channel": "email", "needs_review": True})
        self.event(ticket_id, EventKind.MAIL_QUARANTINED, "system", {"reason": reason, "message": message_pk})
        self._log_intake(raw, logged, message_pk, "quarantined", QUARANTINE, reason)
        return Outcome(raw.uid, OutcomeKind.QUARANTINED, ticket_id, QUARANTINE, reason)

    def _unreadable_again(self, again: Quarantined, raw: RawMail, reason: str) -> Outcome:
        """A retry that could not read the mail either: the entry says so, and nothing else changes."""
        self.conn.execute(sa.update(T_QUARANTINE).where(T_QUARANTINE.c.id == again.id).values(
            status="failed_again", retried_at=self.ctx.now, reason=f"{again.reason}; retry: {reason}"[:2000]))
        self.event(again.ticket_id, EventKind.QUARANTINE_RETRY_FAILED, "system", {"reason": reason})
        return Outcome(raw.uid, OutcomeKind.QUARANTINED, again.ticket_id, "", reason)

    def _settle_placeholder(self, again: Quarantined, ticket_id: int | None) -> None:
        """The ticket opened when the mail could not be read, now that it could: it became the
        mail's ticket (filled in by `open`), or it leads to the ticket the mail went to (merged,
        so its ID still finds the case), or, with none, it closes. Nothing is left to review."""
        placeholder = again.placeholder
        if placeholder is None or placeholder == ticket_id:
            return
        flags = self.conn.execute(sa.select(T_TICKET.c.flags).where(T_TICKET.c.id == placeholder)).scalar() or ""
        self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == placeholder).values(
            flags=",".join(f for f in flags.split(",") if f and f != "needs_review")))
        if ticket_id is not None:
            merge_tickets(self.conn, placeholder, ticket_id, "system", self.ctx.now)
        else:
            self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == placeholder)
                              .values(status="closed", updated_at=self.ctx.now))
            self.event(placeholder, EventKind.TICKET_STATUS, "system", {"status": "closed"})

    # --- a new mail from an agent's address, or with a desk command (#open, #log, #mine) ---

    def _authentic(self, parsed: ParsedMail) -> tuple[bool, str]:
        """Does the receiving border vouch for the sender's domain (SPEC, security)?"""
        if not self.ctx.settings.security.require_agent_auth:
            return True, "check switched off"
        return sender_is_authentic(parsed.headers.get_all("authentication-results"), parsed.sender.email,
                                   tuple(self.ctx.settings.security.trusted_authserv_ids))

    def _agent_mail(self, raw: RawMail, prepared: Prepared, raw_id: int,
                    again: Quarantined | None) -> tuple[Outcome, int] | None:
        """A new mail whose first command is `#open`, `#log` or `#mine`, or that comes from an
        agent's address: an authenticated agent's command is carried out (her mail opens no
        ticket of its own); a command from anyone else, or any mail in an agent's name that
        fails the check, is recorded and changes nothing, and the agent is told why. None: an
        ordinary new mail (an authenticated agent may open a ticket by writing in, as anyone)."""
        parsed = prepared.mail
        sender = parsed.sender.email
        desk = read_desk_command(parsed.new_text, self.agent_names)
        is_agent = sender in self.agents
        if desk is None and not is_agent:
            return None
        authentic, why = self._authentic(parsed) if is_agent else (False, "not an agent")
        if not authentic:
            message_pk = self._message(parsed, None, str(OutcomeKind.REFUSED), raw_id, why, again)
            self.attachments(parsed, message_pk, None, prepared.staged)
            self.event(None, EventKind.MAIL_REFUSED, sender or "unknown",
                       {"command": desk.name if desk else "", "reason": why, "message": message_pk})
            if is_agent:
                log.warning(EventKind.MAIL_FORGED_AGENT, reason=why)
                with self.book.immediate():
                    agent_mail.tell_refused_agent(self.book, sender, why, None)
            return Outcome(raw.uid, OutcomeKind.REFUSED, None, PROCESSED, why), message_pk
        if desk is None:
            return None
        message_pk = self._message(parsed, None, "agent", raw_id, "", again, internal=True)
        self.attachments(parsed, message_pk, None, prepared.staged)
        with self.book.immediate():  # an #open's files go on to its first message
            kind, ticket_id = agent_mail.act_on_desk_command(self.book, parsed, desk, None)
        self.known.clear()  # a command may have changed any ticket it names
        return Outcome(raw.uid, kind, ticket_id, PROCESSED), message_pk

    # --- tickets ---------------------------------------------------------------

    def _person_mail(self, prepared: Prepared, match: ThreadMatch, placeholder: int | None = None,
                     received: datetime | None = None) -> tuple[OutcomeKind, int, str]:
        """(outcome, ticket, the sender's role) for a mail a person wrote. A new ticket goes
        `into` the placeholder opened for it when it could not be read, if there is one.
        `received`: when our server received it (INTERNALDATE, else the Date header)."""
        parsed = prepared.mail
        if match.is_new:
            return (OutcomeKind.NEW_TICKET, self._open_ticket(prepared, into=placeholder, received=received),
                    senders.REPORTER)
        ticket_id = match.ticket_id
        if ticket_id not in self.known:  # a merged ticket's target, or one a command changed
            self._know_tickets([ticket_id])
        ticket = self.known[ticket_id]
        participants = senders.Participants(
            reporter=ticket.reporter,
            others=frozenset(ticket.people | self.book.participants.get(ticket_id, set())),
            agents=self.agents,
            divisions=self.divisions,
        )
        role = senders.sender_role(parsed.sender.email, participants)
        forged = False
        if role in senders.STAFF:
            authentic, why = self._authentic(parsed)
            if not authentic:
                # A forged agent or division address changes nothing, and is a warning (SPEC, security).
                event = _FORGED_EVENT[role]
                self.event(ticket_id, event, parsed.sender.email, {"reason": why})
                log.warning(event, ticket=ticket_id, reason=why)
                if role == senders.AGENT:  # not silent: the agent learns why (at most hourly)
                    with self.book.immediate():
                        agent_mail.tell_refused_agent(self.book, parsed.sender.email, why, ticket_id)
                role, forged = senders.proven_role(role, authentic), True
        effect = senders.reply_effect(role, ticket.status, ticket.resolved_at, self.ctx.now,
                                      self.ctx.settings.tickets.reopen_days)
        by = parsed.sender.email or "unknown"
        if effect == senders.FOLLOW_UP:
            new_id = self._open_ticket(prepared, linked=ticket_id, into=placeholder, received=received)
            self.event(ticket_id, EventKind.TICKET_FOLLOW_UP, by, {"new_ticket": format_ticket_id(new_id, self.prefix)})
            return OutcomeKind.FOLLOW_UP, new_id, senders.REPORTER
        changes: dict = {"updated_at": self.ctx.now}
        if effect == senders.REOPEN:
            changes.update(status="in_progress", resolved_at=None)
            ticket.status, ticket.resolved_at = "in_progress", None
            self.event(ticket_id, EventKind.TICKET_REOPENED, by, {"via": match.via})
        self.book.change(T_TICKET, ticket_id, **changes)
        if effect == senders.RECORD_ONLY:
            self.event(ticket_id, EventKind.MAIL_OUTSIDER, by, {"via": match.via})
            if self.book.casework is not None:  # told once the batch is written (assignees included)
                self._notices.append((ticket_id, "outsider", (
                    "Munkatárs nevében, de hitelesítés nélkül érkezett levél (nem változtatott rajta)." if forged
                    else "Nem résztvevő írt a bejelentéshez (nem változtatott rajta).")))
            return OutcomeKind.OUTSIDER, ticket_id, role
        self.event(ticket_id, EventKind.MAIL_RECEIVED, by, {"via": match.via, "role": role})
        return (OutcomeKind.REOPENED if effect == senders.REOPEN else OutcomeKind.REPLY), ticket_id, role

    def _open_ticket(self, prepared: Prepared, linked: int | None = None, into: int | None = None,
                     received: datetime | None = None) -> int:
        parsed, found = prepared.mail, prepared.classification
        reporter, subject, category, area = self._reporter(parsed), parsed.subject, found.category, found.area
        text, channel, flags = parsed.new_text or parsed.text, "email", ()
        if prepared.rules is not None and prepared.rules.no_ack:
            flags = ("ack_held",)  # a mail rule says: record and assign, acknowledge nothing
        if parsed.sender.email in self.form_senders:
            # P1: the web server sends; the form's own fields say who wrote and about what.
            form = read_form(parsed, self.ctx.settings.forms.labels)
            channel, reporter = "form", form.reporter
            subject = form.subject or subject
            category, area = form.category or category, form.area or area
            text = form.description or form.subject or text
            if form.incomplete:
                flags = (*flags, "incomplete")
                self.incomplete_forms.append((form.missing, form.unknown_values))
        own = self.own
        others: dict[str, str] = {}
        for role, addresses in (("to", parsed.to), ("cc", parsed.cc)):
            for address in addresses:
                if address.email not in own:
                    others.setdefault(address.email, role)
        ticket_id = self.book.open(NewTicket(
            subject=subject, channel=channel, reporter=reporter, category=category, area=area,
            language=prepared.language, others=others, linked=linked, by=parsed.sender.email or "system",
            text=text, flags=flags if reporter else (*flags, "no_sender"), received=received,
        ), into=into)
        self.tickets.add(ticket_id)
        self.known[ticket_id] = _KnownTicket("new", None, reporter.email if reporter else "", set())
        if channel == "email" and reporter and not parsed.sender:  # From had none: the ticket says whose it took
            self.event(ticket_id, EventKind.TICKET_REPORTER_FROM, "system", {"field": parsed.sender_source})
        if "incomplete" in flags:
            missing, unknown = self.incomplete_forms[-1]
            self.incomplete_forms[-1] = (ticket_id, missing, unknown)
            self.event(ticket_id, EventKind.FORM_INCOMPLETE, "system", {"missing": list(missing), "unknown": list(unknown)})
        return ticket_id

    def _reporter(self, parsed: ParsedMail) -> Address:
        """Who a new ticket is for: From's address, or where From has none, Reply-To's, Sender's
        or Return-Path's, but never a staff or our own address: those act only from From,
        authenticated, so a fallback in an agent's name opens a ticket without a reporter."""
        return parsed.reporter if parsed.sender or parsed.reporter.email not in self.staff else parsed.sender

    # --- rows --------------------------------------------------------------

    def _message(self, parsed: ParsedMail, ticket_id: int | None, kind: str, raw_id: int, reason: str,
                 again: Quarantined | None = None, internal: bool = False) -> int:
        """The mail's message row; one read again has its row already (recorded when it came), filled in here."""
        values = {"ticket_id": ticket_id, "kind": kind, "raw_id": raw_id, "raw_sha256": parsed.raw_sha256,
                  "reason": reason[:200], "internal": internal, **message_fields(parsed, self._reporter(parsed))}
        if again is None:
            message_pk = self.book.insert(T_MESSAGE, direction="in", created_at=self.ctx.now, **values)
        else:
            message_pk = again.message_pk
            self.conn.execute(sa.update(T_MESSAGE).where(T_MESSAGE.c.id == message_pk).values(**values))
        self.copies[(parsed.message_id, parsed.raw_sha256)] = (message_pk, ticket_id, kind)
        if ticket_id is not None and parsed.message_id:
            self.threads.setdefault(parsed.message_id, ticket_id)
        return message_pk

    def attachments(self, parsed: ParsedMail, message_pk: int, ticket_id: int | None,
                    staged: Staged | None = None) -> None:
        for i, part in enumerate(parsed.attachments):
            if not part.rejected and staged is not None:  # a parse worker wrote it: moved into place, not read
                self.ctx.files.adopt(staged.attachments[i], part.sha256)
            elif not part.rejected:
                self.ctx.files.put(part.data, part.sha256)
        self.book.attach(message_pk, ticket_id, (
            StoredFile(p.filename, p.content_type, p.size, p.sha256, p.content_id, p.inline, p.rejected, p.reason)
            for p in parsed.attachments))

    def _judge_report(self, parsed: ParsedMail) -> bounces.BounceVerdict:
        ids = bounces.quoted_ids(parsed.report, parsed.references)
        quoted = []
        for part in in_chunks(ids):
            quoted.extend(
                bounces.SentMail(row.id, row.ticket_id, row.message_id, bounces.recipients_of(row.recipients), row.status)
                for row in self.conn.execute(
                    sa.select(T_OUTBOX.c.id, T_OUTBOX.c.ticket_id, T_OUTBOX.c.message_id, T_OUTBOX.c.recipients,
                              T_OUTBOX.c.status).where(T_OUTBOX.c.message_id.in_(part)).order_by(T_OUTBOX.c.id)))
        verdict = bounces.judge_report(parsed.report, quoted)
        if not verdict.counts:
            log.info("mail.bounce_ignored", reason=verdict.reason, ticket=verdict.ticket_id)
        return verdict

    def _keep_raw(self, digest: str, size: int, raw: bytes, staged: Staged | None = None) -> int:
        """The raw_message row of a mail (one per SHA-256): the copy a parse worker
        staged, or one made here from `raw` (through a staged file when big)."""
        if digest in self.raw_ids:
            return self.raw_ids[digest]
        values = {"sha256": digest, "size": size, "created_at": self.ctx.now}
        if staged is not None and isinstance(staged.raw_copy, bytes):  # carried in the worker's answer
            row_id = self._hold_raw(staged.raw_copy, values)
        elif staged is not None and (data := _small_copy(staged.raw_copy)) is not None:
            row_id = self._hold_raw(data, values)
        elif staged is not None:
            row_id = _insert_raw_copy(self.conn, staged.raw_copy, self._keyed(values))
        elif len(raw) <= STAGE_RAW_ABOVE:
            row_id = self._hold_raw(b"".join(raw_copy(raw)), values)
        else:
            copy = self.ctx.files.stage(raw_copy(raw))
            try:
                row_id = _insert_raw_copy(self.conn, copy, self._keyed(values))
            finally:
                self.ctx.files.discard([copy])
        self.raw_ids[digest] = row_id
        return row_id

    def _hold_raw(self, data: bytes, values: dict) -> int:
        """A raw copy's row, written with the batch's; what is held at once stays bounded."""
        if self._held_raw_bytes + len(data) > HOLD_RAW_BYTES:
            self.book.flush()
            self._held_raw_bytes = 0
        self._held_raw_bytes += len(data)
        return self.book.insert(T_RAW, data=data, **values)

    def _keyed(self, values: dict) -> dict:
        """A row written now, beside a buffered book's: with a key of the book's (none: the database's)."""
        return {"id": self.book.keys.next(T_RAW), **values} if self.book.buffered else values

    def _log_intake(self, raw: RawMail, logged: _Logged | None, message_pk: int | None, state: str, target: str,
                    reason: str = "") -> None:
        values = {"message_pk": message_pk, "state": state, "target": target, "reason": reason[:300],
                  "updated_at": self.ctx.now}
        if logged is not None:  # a UID that failed to fetch before: written after its message, at finish
            self._intake_changes.append({"_key": logged.id, **values})
        else:
            self._intake_rows.append({"mailbox": self.ctx.mailbox, "folder": raw.folder, "uidvalidity": raw.uidvalidity,
                                      "uid": raw.uid, "attempts": 0, "created_at": self.ctx.now, **values})
        self.logged[(raw.folder, raw.uidvalidity, raw.uid)] = _Logged(logged.id if logged else 0, state)

    def event(self, ticket_id: int | None, kind: EventKind, by: str, detail: dict) -> None:
        self.book.event(ticket_id, kind, by, detail)

    def finish(self) -> None:
        """Writes what the batch holds, the intake log after the messages it names, then
        hands the batch's new tickets to agents (their mails need the messages) and tells
        assignees what came."""
        if self.book.buffered:
            self.book.flush()
        if self._intake_rows:
            self.conn.execute(insert_statement(T_INTAKE), self._intake_rows)
            self._intake_rows.clear()
        if self._intake_changes:
            self.conn.execute(sa.update(T_INTAKE).where(T_INTAKE.c.id == sa.bindparam("_key"))
                              .values({c: sa.bindparam(c) for c in self._intake_changes[0] if c != "_key"}),
                              self._intake_changes)
            self._intake_changes.clear()
        self.book.finish()
        if self.book.casework is not None:
            notices = self._notices + [
                # The assignee learns which fields the form left out (issue: incomplete submissions).
                (ticket_id, "form_incomplete", "Hiányos űrlap: " + ", ".join([*missing, *unknown]))
                for ticket_id, missing, unknown in self.incomplete_forms]
            self.book.casework.tell_assignees(notices)
        self._notices.clear()
        self.incomplete_forms.clear()


# A raw copy made here of a mail bigger than this goes into its row through a staged
# file, so the mail and its whole copy are not held at once.
STAGE_RAW_ABOVE = 4 * 1024 * 1024
_BLOB_PIECE = 1024 * 1024
# A staged raw copy up to this size is read and written with the batch's rows (one statement);
# a bigger one goes in alone, a piece at a time. The batch holds at most HOLD_RAW_BYTES of them.
SMALL_RAW_COPY = 256 * 1024
HOLD_RAW_BYTES = 16 * 1024 * 1024


def _small_copy(path: str) -> bytes | None:
    """A staged raw copy's bytes if it is small, else None."""
    try:
        with open(path, "rb") as copy:
            if os.fstat(copy.fileno()).st_size > SMALL_RAW_COPY:
                return None
            return copy.read()
    except FileNotFoundError:  # swept as a killed poller's: the mail is read again next poll
        raise StorageError(f"the staged raw copy {path!r} is gone") from None


def _insert_raw_copy(conn: sa.Connection, path: str, values: dict) -> int:
    """A raw_message row whose data is a staged file's. On SQLite a zeroblob written
    a piece at a time: a bound blob is held three times at once (our bytes, SQLite's
    copy, the row), a zeroblob twice (`data` is not the table's last column, so
    SQLite expands it), i.e. 36 MB less for a 36 MB copy."""
    try:
        copy = open(path, "rb")
    except FileNotFoundError:  # swept as a killed poller's: the mail is read again next poll
        raise StorageError(f"the staged raw copy {path!r} is gone") from None
    with copy:
        if conn.dialect.name != "sqlite":
            return conn.execute(insert_statement(T_RAW), {**values, "data": copy.read()}).inserted_primary_key[0]
        length = os.fstat(copy.fileno()).st_size
        row_id = conn.execute(sa.insert(T_RAW).values(**values, data=sa.func.zeroblob(length))).inserted_primary_key[0]
        with conn.connection.driver_connection.blobopen(T_RAW.name, "data", row_id) as blob:
            while piece := copy.read(_BLOB_PIECE):
                blob.write(piece)
    return row_id


def message_fields(parsed: ParsedMail, sender: Address | None = None) -> dict:
    """A message row's columns that come from the mail itself; `sender`: whose it is (the
    reporter's address, From's or a fallback that is not staff's), else From's."""
    sender = parsed.sender if sender is None else sender
    return {
        # A fallback address counts: the reporter's mail is theirs to export and erase.
        "message_id": parsed.message_id, "sender": sender.email, "sender_name": sender.name[:200],
        "to_addrs": ", ".join(a.email for a in parsed.to), "cc_addrs": ", ".join(a.email for a in parsed.cc),
        "subject": parsed.subject[:5000], "text": parsed.text, "new_text": parsed.new_text, "html": parsed.html,
        "references": " ".join(parsed.references), "sent_at": parsed.date,
    }


def store_batch(session: Session, ctx: StoreContext, batch: Sequence[tuple[RawMail, Prepared | Unreadable]],
                again: Quarantined | None = None) -> list[Outcome]:
    """What became of each mail of the batch, its rows written in `session`. `again`: the
    batch is the one mail of this quarantine entry, read again (`quarantine retry`)."""
    if again is not None:
        store = MailStore(session, ctx, batch, buffered=False)  # a retry's one mail acts as it goes
        [(raw, prepared)] = batch
        outcomes = [store.store_again(again, raw, prepared)]
        store.finish()
        return outcomes
    if session.connection().dialect.name == "sqlite":  # one writer at a time: its keys are never taken
        return _store_all(session, ctx, batch)
    for attempt in range(PREDICTED_TRIES + 1):
        # PostgreSQL: another host may take the ticket numbers the batch was given; then
        # it is written again from a savepoint, at last with a nextval per ticket.
        savepoint = session.begin_nested()
        try:
            outcomes = _store_all(session, ctx, batch, predict=attempt < PREDICTED_TRIES)
        except KeysTaken:
            savepoint.rollback()
            log.info("intake.ticket_ids_taken", attempt=attempt + 1)
            continue
        savepoint.commit()
        return outcomes
    raise AssertionError("unreachable: the last try takes each number as it goes")


# How often a batch's predicted ticket numbers may be found taken before it takes them one by one.
PREDICTED_TRIES = 3


def _store_all(session: Session, ctx: StoreContext, batch: Sequence[tuple[RawMail, Prepared | Unreadable]],
               predict: bool = True) -> list[Outcome]:
    store = MailStore(session, ctx, batch, predict=predict)
    outcomes = [store.store(raw, prepared) for raw, prepared in batch]
    store.finish()
    return outcomes


def record_fetch_failure(session: Session, ctx: StoreContext, folder: str, uidvalidity: int, uid: int, reason: str) -> int:
    """A UID the server would not give us: logged for a retry; returns attempts so far."""
    key = (IntakeLog.mailbox == ctx.mailbox, IntakeLog.folder == folder, IntakeLog.uidvalidity == uidvalidity,
           IntakeLog.uid == uid)
    row = session.scalars(sa.select(IntakeLog).where(*key)).first()
    if row is None:
        row = IntakeLog(mailbox=ctx.mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid, state="retry",
                        reason=reason[:300], created_at=ctx.now, updated_at=ctx.now)
    row.attempts += 1
    row.updated_at = ctx.now
    session.add(row)
    return row.attempts


def quarantined(session: Session, entry_id: int | None = None) -> list[Quarantined]:
    """The entries waiting for a retry (or the one asked for, whatever became of it), oldest first."""
    t_entry = T_QUARANTINE
    query = (sa.select(t_entry.c.id, t_entry.c.message_pk, t_entry.c.ticket_id, t_entry.c.reason,
                       T_TICKET.c.merged_into_id, T_MESSAGE.c.raw_id)
             .join(T_MESSAGE, T_MESSAGE.c.id == t_entry.c.message_pk)
             .outerjoin(T_TICKET, T_TICKET.c.id == t_entry.c.ticket_id)
             .where(t_entry.c.id == entry_id if entry_id is not None else t_entry.c.status == "waiting")
             .order_by(t_entry.c.id))
    rows = session.connection().execute(query).all()
    # Where each came from: the first server copy logged against its message.
    came: dict[int, sa.Row] = {}
    for part in in_chunks(sorted({row.message_pk for row in rows})):
        for copy in session.connection().execute(
            sa.select(T_INTAKE.c.message_pk, T_INTAKE.c.mailbox, T_INTAKE.c.folder, T_INTAKE.c.uidvalidity,
                      T_INTAKE.c.uid).where(T_INTAKE.c.message_pk.in_(part)).order_by(T_INTAKE.c.id.desc())
        ):
            came[copy.message_pk] = copy
    entries = []
    for row in rows:
        copy = came.get(row.message_pk)
        placeholder = row.ticket_id if row.merged_into_id is None else None
        entries.append(Quarantined(row.id, row.message_pk, row.ticket_id, placeholder, row.reason,
                                   copy.mailbox if copy else "", copy.folder if copy else "",
                                   copy.uidvalidity if copy else 0, copy.uid if copy else 0, row.raw_id))
    return entries


def kept_copy(session: Session, entry: Quarantined) -> RawMail:
    """The server copy of an entry's mail as it was fetched (empty if none is held: one too
    large to fetch, or one the server never gave)."""
    data = None
    if entry.raw_id is not None:
        data = session.connection().execute(sa.select(T_RAW.c.data).where(T_RAW.c.id == entry.raw_id)).scalar()
    return RawMail(entry.folder, entry.uidvalidity, entry.uid, zlib.decompress(data) if data else b"")


def _sniff_header(raw: bytes, name: bytes) -> str | None:
    found = re.search(rb"(?im)^" + name + rb":[ \t]*(.{1,500})$", raw[:65536])
    return found.group(1).decode("utf-8", "replace").strip() if found else None
