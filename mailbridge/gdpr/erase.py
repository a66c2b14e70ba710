"""`gdpr erase EMAIL`: a person pseudonymised everywhere (GDPR Art. 17).

Two phases, so a crash at any point is finished by running it again:
1. One database transaction: the person's address and names become a stable
   pseudonym in every row (their tickets stay, countable); their bodies and
   raw copies go; what is left to clean outside the database (attachment
   files, the server copies in the IMAP folders) is written down in an
   `erasure` row, keyed by the pseudonym, never by the address.
2. Outside: files no other ticket still uses are deleted, the server copies
   are expunged, SQLite's WAL is checkpointed and the file vacuumed so no
   freed page keeps an old copy. Then the erasure row is marked done.

The pseudonym is an HMAC of the address under a key kept in the storage
folder: stable (a second run finds the same pending erasure) but not
reversible by trying addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.adapters.imap import imap_session
from mailbridge.config import Settings
from mailbridge.errors import MailServerError
from mailbridge.logs import get_logger
from mailbridge.models import (
    Attachment,
    Erasure,
    Event,
    Message,
    Notification,
    Outbox,
    Participant,
    RawMessage,
    Reporter,
    Ticket,
)

log = get_logger("mailbridge.gdpr")

T_REPORTER, T_TICKET, T_MESSAGE = Reporter.__table__, Ticket.__table__, Message.__table__
T_RAW, T_ATTACHMENT, T_EVENT = RawMessage.__table__, Attachment.__table__, Event.__table__
T_PARTICIPANT, T_OUTBOX, T_NOTIFICATION = Participant.__table__, Outbox.__table__, Notification.__table__
T_ERASURE = Erasure.__table__
ERASED = "[erased]"


def pseudonym_for(settings: Settings, email: str) -> str:
    key_file = Path(settings.storage.path) / "pseudonym.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    digest = hmac.new(key_file.read_bytes(), email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"erased-{digest[:16]}"


@dataclass
class ErasurePlan:
    email: str
    pseudonym: str
    names: list[str] = field(default_factory=list)
    tickets: list[int] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    pending: int = 0  # erasures of this person started before and not finished

    @property
    def empty(self) -> bool:
        return not (self.tickets or self.messages or self.names or self.pending)

    def describe(self) -> str:
        if self.empty:
            return "nothing held about this address"
        parts = [f"will pseudonymise as {self.pseudonym}: {len(self.tickets)} ticket(s) kept and countable,"
                 f" {len(self.messages)} of their message(s) emptied, raw copies and unshared files deleted,"
                 " server copies expunged"]
        if self.pending:
            parts.append(f"({self.pending} earlier erasure(s) to finish)")
        return " ".join(parts)


@dataclass
class ErasureReport:
    pseudonym: str
    messages: int = 0
    files_deleted: int = 0
    server_copies_deleted: int = 0
    pending: bool = False
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = (f"erased as {self.pseudonym}: {self.messages} message(s) emptied, {self.files_deleted} file(s) "
                f"deleted, {self.server_copies_deleted} server cop(ies) expunged")
        if self.pending:
            text += "; NOT finished (" + "; ".join(self.problems) + "): run it again"
        return text


def _their_messages(conn: sa.Connection, email: str) -> list[sa.Row]:
    like = f"%{email}%"
    return conn.execute(
        sa.select(T_MESSAGE).where(
            (sa.func.lower(T_MESSAGE.c.sender) == email)
            | ((T_MESSAGE.c.direction == "out") & sa.func.lower(T_MESSAGE.c.to_addrs).like(like))
        )
    ).all()


def plan_erasure(db: Database, settings: Settings, email: str) -> ErasurePlan:
    plan = ErasurePlan(email, pseudonym_for(settings, email))
    with db.session() as session:
        conn = session.connection()
        reporters = conn.execute(sa.select(T_REPORTER).where(sa.func.lower(T_REPORTER.c.email) == email)).all()
        plan.names = sorted({r.name for r in reporters if r.name})
        reporter_ids = [r.id for r in reporters]
        tickets = set()
        if reporter_ids:
            tickets |= set(conn.execute(sa.select(T_TICKET.c.id).where(T_TICKET.c.reporter_id.in_(reporter_ids))).scalars())
        tickets |= set(conn.execute(sa.select(T_PARTICIPANT.c.ticket_id).where(T_PARTICIPANT.c.email == email)).scalars())
        messages = _their_messages(conn, email)
        tickets |= {m.ticket_id for m in messages if m.ticket_id}
        plan.tickets = sorted(tickets)
        plan.messages = [m.id for m in messages]
        plan.names = sorted(set(plan.names) | {m.sender_name for m in messages if m.sender_name and m.sender == email})
        plan.pending = conn.execute(sa.select(sa.func.count()).select_from(T_ERASURE).where(
            T_ERASURE.c.pseudonym == plan.pseudonym, T_ERASURE.c.status == "pending")).scalar() or 0
    return plan


def erase_person(db: Database, settings: Settings, email: str) -> ErasureReport:
    plan = plan_erasure(db, settings, email)
    report = ErasureReport(plan.pseudonym)
    if plan.tickets or plan.messages or plan.names:
        report.messages = _erase_in_database(db, settings, plan)
    finish_pending(db, settings, plan.pseudonym, report)
    return report


def _replacer(plan: ErasurePlan):  # type: ignore[no-untyped-def]
    """Replaces the address and the names (longest first) with the pseudonym, case-insensitively."""
    pseudo_address = f"{plan.pseudonym}@erased.invalid"
    needles = [(re.escape(plan.email), pseudo_address)]
    needles += [(re.escape(name), plan.pseudonym) for name in sorted(plan.names, key=len, reverse=True) if len(name) > 2]
    pattern = re.compile("|".join(f"({n})" for n, _ in needles), re.IGNORECASE)
    replacements = [r for _, r in needles]

    def replace(text: str | None) -> str | None:
        if not text:
            return text
        return pattern.sub(lambda m: replacements[m.lastindex - 1], text)

    return replace, pattern


def _erase_in_database(db: Database, settings: Settings, plan: ErasurePlan) -> int:
    now = datetime.now(timezone.utc)
    replace, pattern = _replacer(plan)
    pseudo_address = f"{plan.pseudonym}@erased.invalid"
    with db.session() as session:
        conn = session.connection()
        theirs = _their_messages(conn, plan.email)
        own_incoming = [m for m in theirs if m.direction == "in"]
        server_copies = sorted({m.message_id for m in own_incoming if m.message_id})
        files = sorted(set(conn.execute(sa.select(T_ATTACHMENT.c.sha256).where(
            T_ATTACHMENT.c.message_pk.in_([m.id for m in theirs]))).scalars())) if theirs else []
        conn.execute(sa.insert(T_ERASURE), {"pseudonym": plan.pseudonym, "status": "pending", "created_at": now,
                                            "server_copies": json.dumps(server_copies), "files": json.dumps(files)})
        raw_ids = {m.raw_id for m in theirs if m.raw_id}
        for message in theirs:
            conn.execute(sa.update(T_MESSAGE).where(T_MESSAGE.c.id == message.id).values(
                text=ERASED, new_text=ERASED, html="", subject=replace(message.subject),
                sender=pseudo_address if message.sender.lower() == plan.email else message.sender,
                sender_name=plan.pseudonym if message.sender.lower() == plan.email else message.sender_name,
                to_addrs=replace(message.to_addrs), cc_addrs=replace(message.cc_addrs), raw_id=None,
                message_id=f"<{plan.pseudonym}.{message.id}@erased.invalid>" if message.direction == "in" else message.message_id,
            ))
        if theirs:
            conn.execute(sa.delete(T_ATTACHMENT).where(T_ATTACHMENT.c.message_pk.in_([m.id for m in theirs])))
        for raw_id in raw_ids:
            still_used = conn.execute(sa.select(T_MESSAGE.c.id).where(T_MESSAGE.c.raw_id == raw_id).limit(1)).first()
            if still_used is None:
                conn.execute(sa.delete(T_RAW).where(T_RAW.c.id == raw_id))
        # Their address and names inside everyone else's text: notes, quotes, relays, journal.
        like_any = [f"%{plan.email}%"] + [f"%{n}%" for n in plan.names if len(n) > 2]
        for table, columns in ((T_MESSAGE, ("subject", "text", "new_text", "html", "to_addrs", "cc_addrs")),
                               (T_OUTBOX, ("recipients", "subject", "body_text", "body_html", "headers", "last_error")),
                               (T_EVENT, ("by", "detail")), (T_NOTIFICATION, ("text",)), (T_TICKET, ("subject",))):
            condition = sa.or_(*[getattr(table.c, col).ilike(p) for col in columns for p in like_any])
            for row in conn.execute(sa.select(table).where(condition)).all():
                values = {col: replace(getattr(row, col)) for col in columns}
                conn.execute(sa.update(table).where(table.c.id == row.id).values(**values))
        # Raw copies of other people's mail that quote them: rewritten, not kept as they were.
        needle = plan.email.encode()
        for raw in conn.execute(sa.select(T_RAW.c.id, T_RAW.c.data)).all():
            data = zlib.decompress(raw.data)
            if needle in data.lower() or any(n.encode() in data for n in plan.names if len(n) > 2):
                text = data.decode("utf-8", "surrogateescape")
                cleaned = (replace(text) or "").encode("utf-8", "surrogateescape")
                conn.execute(sa.update(T_RAW).where(T_RAW.c.id == raw.id).values(data=zlib.compress(cleaned, 6),
                                                                                 size=len(cleaned)))
        conn.execute(sa.update(T_REPORTER).where(sa.func.lower(T_REPORTER.c.email) == plan.email).values(
            email=pseudo_address, name=plan.pseudonym))
        conn.execute(sa.update(T_PARTICIPANT).where(T_PARTICIPANT.c.email == plan.email).values(email=pseudo_address))
        for ticket_id in plan.tickets:
            conn.execute(sa.insert(T_EVENT), {"ticket_id": ticket_id, "type": "erasure", "at": now, "by": "system",
                                              "detail": "{}"})
    log.info("gdpr.erased", messages=len(theirs), tickets=len(plan.tickets))
    return len(theirs)


def finish_pending(db: Database, settings: Settings, pseudonym: str, report: ErasureReport) -> None:
    with db.session() as session:
        pending = session.connection().execute(sa.select(T_ERASURE).where(
            T_ERASURE.c.pseudonym == pseudonym, T_ERASURE.c.status == "pending")).all()
    store = AttachmentStore(settings.storage.path)
    for erasure in pending:
        for sha in json.loads(erasure.files):
            with db.session() as session:
                used = session.connection().execute(
                    sa.select(T_ATTACHMENT.c.id).where(T_ATTACHMENT.c.sha256 == sha).limit(1)).first()
            if used is None and store.path_of(sha).exists():
                store.delete(sha)
                report.files_deleted += 1
        try:
            report.server_copies_deleted += _expunge_server_copies(settings, json.loads(erasure.server_copies))
        except MailServerError as exc:
            report.pending = True
            report.problems.append(f"server copies: {exc}")
            log.warning("gdpr.erase_pending", reason="imap unavailable")
            continue
        with db.session() as session:
            session.connection().execute(sa.update(T_ERASURE).where(T_ERASURE.c.id == erasure.id).values(
                status="done", finished_at=datetime.now(timezone.utc)))
    db.leave_no_copy(vacuum=True)


def _expunge_server_copies(settings: Settings, message_ids: list[str]) -> int:
    if not message_ids:
        return 0
    deleted = 0
    for s in settings.intake_mailboxes:
        with imap_session(s) as imap:
            for folder in (s.processed_folder, s.quarantine_folder, s.folder):
                deleted += imap.delete_by_message_id(folder, message_ids)
    return deleted
