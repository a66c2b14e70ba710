"""`gdpr erase EMAIL`: a person pseudonymised everywhere (GDPR Art. 17).

Exact identity: the person is the normalised address, compared for equality
with normalised stored values; never a substring or a LIKE pattern over it
(erasing anna@ must not touch johanna@, `_` and `%` are plain characters).
Theirs: their reporter and participant rows, the messages they sent (a web
form's submission on a ticket they reported counts), our messages addressed
to them, and everything derived from those: our notices on the tickets they
reported (acknowledgements, assignment notices quoting their first mail,
escalations, relays; the outbox rows and the `out` messages alike), notices
elsewhere that quote them, the quoted history of replies to them, the
subjects of their tickets. Elsewhere their address and names are replaced
only as whole words, by the rules in `policy/erasure.py`.

Two phases, so a crash at any point is finished by running it again:
1. One database transaction: every change planned above; what is left to
   clean outside the database (attachment files, the server copies in the
   IMAP folders) is written down in an `erasure` row, keyed by the pseudonym,
   never by the address.
2. Outside: files no other ticket still uses are deleted, the server copies
   are expunged, SQLite's WAL is checkpointed and the file vacuumed so no
   freed page keeps an old copy; only then is the erasure row marked done.

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

from mailbridge import journal
from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.adapters.imap import imap_session
from mailbridge.config import Settings
from mailbridge.errors import MailServerError, UsageError
from mailbridge.gdpr import person_address
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.journal import EventKind
from mailbridge.logs import get_logger
from mailbridge.models import T_ATTACHMENT, T_ERASURE, T_EVENT, T_MESSAGE, T_NOTIFICATION
from mailbridge.models import T_OUTBOX, T_PARTICIPANT, T_RAW, T_REPORTER, T_TICKET
from mailbridge.policy.erasure import (
    ERASED,
    ERASED_DOMAIN,
    Mentions,
    addressed_to,
    names_for_text,
    placeholder,
    quotes,
    replace_recipient,
)

log = get_logger("mailbridge.gdpr")

TABLES = {t.name: t for t in (T_REPORTER, T_PARTICIPANT, T_TICKET, T_MESSAGE, T_ATTACHMENT, T_RAW, T_OUTBOX,
                              T_NOTIFICATION, T_EVENT)}
RAW_BATCH = 200  # raw copies decompressed at a time while looking for mentions
CANCELLED = "recipient erased (GDPR Art. 17)"


def pseudonym_for(settings: Settings, email: str, create: bool = True) -> str | None:
    """The person's stable pseudonym; None when `create` is off and no key exists yet
    (then nobody was ever erased, and nothing is pending under any pseudonym)."""
    key_file = Path(settings.storage.path) / "pseudonym.key"
    if not key_file.exists():
        if not create:
            return None
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    digest = hmac.new(key_file.read_bytes(), email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"erased-{digest[:16]}"


@dataclass
class ErasurePlan:
    email: str
    pseudonym: str | None  # None: made by the erasure itself (no key yet)
    names: tuple[str, ...] = ()  # replaced inside other people's text
    kept_names: tuple[tuple[str, str], ...] = ()  # (name, why it stays in other people's text)
    changes: dict[str, dict[int, dict]] = field(default_factory=dict)  # table -> row id -> new values
    deletions: dict[str, set[int]] = field(default_factory=dict)  # table -> row ids
    tickets: list[int] = field(default_factory=list)  # where they appear: each gets an `erasure` event
    files: list[str] = field(default_factory=list)  # SHA-256 of their files, deleted once unused
    server_copies: list[str] = field(default_factory=list)  # Message-IDs of their mail on the IMAP server
    pending: int = 0  # erasures of this person started before and not finished

    @property
    def empty(self) -> bool:
        return not (any(self.changes.values()) or any(self.deletions.values()) or self.pending)

    def counts(self) -> dict[str, int]:
        return {name: len(self.changes.get(name, {})) + len(self.deletions.get(name, set())) for name in TABLES
                if self.changes.get(name) or self.deletions.get(name)}

    def describe(self, dry_run: bool = False) -> str:
        verb = "would" if dry_run else "will"
        lines = [f"{verb} pseudonymise as {self.pseudonym or 'a new pseudonym'}: their tickets stay, countable;"
                 " their texts, subjects, raw copies, unshared files and server copies go"]
        lines += [f"  {table}: {count} row(s)" for table, count in self.counts().items()]
        lines.append(f"  files: {len(self.files)}, server copies: {len(self.server_copies)}")
        if self.names:
            lines.append("  names replaced in other people's text: " + ", ".join(self.names))
        for name, why in self.kept_names:
            lines.append(f"  name kept in other people's text ({why}): {name}")
        if self.pending:
            lines.append(f"  ({self.pending} earlier erasure(s) to finish)")
        if dry_run:
            lines.append("dry run: nothing written")
        return "\n".join(lines)


@dataclass
class ErasureReport:
    pseudonym: str
    messages: int = 0
    files_deleted: int = 0
    server_copies_deleted: int = 0
    pending: bool = False
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = (f"erased as {self.pseudonym}: {self.messages} message(s) changed, {self.files_deleted} file(s) "
                f"deleted, {self.server_copies_deleted} server cop(ies) expunged")
        if self.pending:
            text += "; NOT finished (" + "; ".join(self.problems) + "): run it again"
        return text


def plan_erasure(db: Database, settings: Settings, email: str) -> ErasurePlan:
    """What `erase_person` would change; writes nothing (not even the pseudonym key)."""
    email = _customer_address(settings, email)
    pseudonym = pseudonym_for(settings, email, create=False)
    with db.session() as session:
        plan = _collect(session.connection(), settings, email, pseudonym)
    return plan


def erase_person(db: Database, settings: Settings, email: str) -> ErasureReport:
    email = _customer_address(settings, email)
    pseudonym = pseudonym_for(settings, email)
    assert pseudonym is not None
    report = ErasureReport(pseudonym)
    with db.session() as session:
        conn = session.connection()
        plan = _collect(conn, settings, email, pseudonym)  # again, inside the writing transaction
        if any(plan.changes.values()) or any(plan.deletions.values()):
            _apply(conn, plan, datetime.now(timezone.utc))
            report.messages = len(plan.changes.get("message", {}))
    finish_pending(db, settings, pseudonym, report)
    return report


def _customer_address(settings: Settings, text: str) -> str:
    email = person_address(text)
    ours = settings.own_addresses | settings.agent_addresses | settings.division_addresses
    if email in ours or email in {s.lower() for s in settings.forms.senders}:
        # Every notice we send comes from our address: erasing it would empty them all.
        raise UsageError(f"{email} is our own, an agent's, a division's or a web form's address, not a customer's")
    return email


# --- what changes -------------------------------------------------------------------------------


def _collect(conn: sa.Connection, settings: Settings, email: str, pseudonym: str | None) -> ErasurePlan:
    plan = ErasurePlan(email, pseudonym)
    pseudonym = pseudonym or "erased-0000000000000000"  # a dry run before the first erasure: same shape
    pseudo_address = f"{pseudonym}@{ERASED_DOMAIN}"
    changes: dict[str, dict[int, dict]] = {name: {} for name in TABLES}
    deletions: dict[str, set[int]] = {name: set() for name in TABLES}

    def ref(ticket_id: int | None) -> str | None:
        return format_ticket_id(ticket_id, settings.tickets.id_prefix) if ticket_id else None

    def change(table: sa.Table, row: sa.Row, **values: object) -> None:
        """Records only what differs, so a row nothing happens to stays byte for byte."""
        differing = {k: v for k, v in values.items() if getattr(row, k) != v}
        if differing:
            changes[table.name].setdefault(row.id, {}).update(differing)

    reporters = [r for r in conn.execute(sa.select(T_REPORTER).where(_normalised(T_REPORTER.c.email) == email))
                 if (r.email or "").strip().lower() == email]
    reporter_ids = [r.id for r in reporters]
    reported = set(conn.execute(sa.select(T_TICKET.c.id).where(T_TICKET.c.reporter_id.in_(reporter_ids))).scalars())
    form_senders = sorted({s.lower() for s in settings.forms.senders})
    theirs = {m.id: m for m in conn.execute(sa.select(T_MESSAGE).where(sa.or_(
        _normalised(T_MESSAGE.c.sender) == email,
        # A web form's submission is its reporter's mail, though the form server sent it.
        sa.and_(T_MESSAGE.c.ticket_id.in_(reported), T_MESSAGE.c.direction == "in",
                _normalised(T_MESSAGE.c.sender).in_(form_senders)))))}
    # The LIKE only narrows the rows down; the exact address comparison decides.
    addressed = {m.id: m for m in conn.execute(sa.select(T_MESSAGE).where(
        sa.or_(T_MESSAGE.c.direction == "out", T_MESSAGE.c.kind == "contact"),
        sa.or_(*_containing(T_MESSAGE.c.to_addrs, [email]), *_containing(T_MESSAGE.c.cc_addrs, [email]))))
        if m.id not in theirs and (addressed_to(m.to_addrs, email) or addressed_to(m.cc_addrs, email))}
    participants = [p for p in conn.execute(sa.select(T_PARTICIPANT).where(_normalised(T_PARTICIPANT.c.email) == email))
                    if p.email.strip().lower() == email]

    names = [r.name for r in reporters] + [m.sender_name for m in theirs.values()
                                           if m.sender.strip().lower() == email]
    others = [a.name for a in settings.agents] + [d.name for d in settings.divisions] + [settings.smtp.from_name]
    for name in {n for n in names if len(n.split()) > 1}:  # one word is never looked for: see names_for_text
        others += [r.name for r in conn.execute(sa.select(T_REPORTER.c.id, T_REPORTER.c.name).where(
            sa.or_(*_containing(T_REPORTER.c.name, [name])))) if r.id not in reporter_ids]
    plan.names, plan.kept_names = names_for_text(names, others)
    mentions = Mentions(email, plan.names, pseudonym, protected=tuple(others))
    their_texts = [t for m in theirs.values() for t in (m.text, m.new_text) if t and t != ERASED]
    touched = (reported | {p.ticket_id for p in participants}
               | {m.ticket_id for m in (*theirs.values(), *addressed.values()) if m.ticket_id is not None})

    def subject(ticket_id: int | None, text: str) -> str:
        return placeholder(ref(ticket_id)) if ticket_id in reported else mentions.replace(text)

    # Messages: theirs emptied; ours to them emptied; what quotes them loses the quote.
    emptied_out: set[str] = set()  # Message-IDs of our mails whose text went: their outbox rows follow
    quoting: dict[int, sa.Row] = {}  # other people's mail quoting them
    for m in theirs.values():
        values = dict(text=ERASED, new_text=ERASED, html="", subject=placeholder(ref(m.ticket_id)), raw_id=None,
                      to_addrs=replace_recipient(m.to_addrs, email, pseudo_address),
                      cc_addrs=replace_recipient(m.cc_addrs, email, pseudo_address),
                      references=mentions.replace(m.references), sender_name=mentions.replace(m.sender_name))
        if m.sender.strip().lower() == email:
            values.update(sender=pseudo_address, sender_name=pseudonym)
        if m.direction == "in":
            values["message_id"] = f"<{pseudonym}.{m.id}@{ERASED_DOMAIN}>"
        change(T_MESSAGE, m, **values)
    on_their_tickets = conn.execute(sa.select(T_MESSAGE).where(T_MESSAGE.c.ticket_id.in_(sorted(touched)))).all() if touched else []
    elsewhere = conn.execute(sa.select(T_MESSAGE).where(sa.or_(*[
        c for col in ("subject", "text", "new_text", "html", "to_addrs", "cc_addrs", "references")
        for c in _containing(T_MESSAGE.c[col], mentions.needles())]))).all()
    for m in {m.id: m for m in (*addressed.values(), *on_their_tickets, *elsewhere)}.values():
        if m.id in theirs:
            continue
        recipients = dict(to_addrs=replace_recipient(m.to_addrs, email, pseudo_address),
                          cc_addrs=replace_recipient(m.cc_addrs, email, pseudo_address))
        ours = m.direction == "out" and m.kind != "contact"
        derived = m.id in addressed or m.ticket_id in reported or (
            m.ticket_id in touched and quotes(f"{m.text}\n{m.new_text}", their_texts))
        if derived and (ours or m.id in addressed):
            change(T_MESSAGE, m, text=ERASED, new_text=ERASED, html="", subject=subject(m.ticket_id, m.subject),
                   **recipients)
            if m.message_id:
                emptied_out.add(m.message_id)
        elif derived:
            # Someone else's mail on their case: their own words stay, the quoted history goes,
            # and so do the raw and server copies when they quote them.
            own_words = mentions.replace(m.new_text)
            values = dict(text=own_words, new_text=own_words, html="", subject=subject(m.ticket_id, m.subject),
                          references=mentions.replace(m.references), **recipients)
            if quotes(m.text, their_texts):
                quoting[m.id] = m
                values["raw_id"] = None
            change(T_MESSAGE, m, **values)
        else:
            change(T_MESSAGE, m, subject=mentions.replace(m.subject), text=mentions.replace(m.text),
                   new_text=mentions.replace(m.new_text), html=mentions.replace(m.html),
                   references=mentions.replace(m.references), **recipients)

    # The outbox: the copy of each of those mails, and anything queued to them.
    outbox = conn.execute(sa.select(T_OUTBOX).where(sa.or_(
        T_OUTBOX.c.ticket_id.in_(sorted(touched)), T_OUTBOX.c.message_id.in_(sorted(emptied_out)),
        *[c for col in ("recipients", "subject", "body_text", "body_html", "headers", "last_error")
          for c in _containing(T_OUTBOX.c[col], mentions.needles())]))).all()
    for row in outbox:
        to_them = addressed_to(row.recipients, email)
        recipients = replace_recipient(row.recipients, email, pseudo_address)
        if to_them or row.message_id in emptied_out or row.ticket_id in reported or (
                row.ticket_id in touched and quotes(row.body_text, their_texts)):
            values = dict(body_text=ERASED, body_html="", attachments="[]", recipients=recipients,
                          subject=subject(row.ticket_id, row.subject), headers=mentions.replace(row.headers),
                          last_error=mentions.replace(row.last_error))
            if to_them and row.status == "queued":
                values.update(status="failed", last_error=CANCELLED)  # never sent to a pseudonym
            change(T_OUTBOX, row, **values)
        else:
            body = mentions.replace(row.body_text)
            if row.template == "agent_digest" and reported:
                # An agent's digest lists a ticket as "[ID] subject" on a line: theirs keep the ID.
                tags = "|".join(re.escape(f"[{ref(t)}]") for t in sorted(reported))
                body = re.sub(rf"(?m)^(\s*)({tags}) .*$", lambda m: m.group(1) + placeholder(m.group(2)[1:-1]), body)
            change(T_OUTBOX, row, recipients=recipients, subject=mentions.replace(row.subject),
                   body_text=body, body_html=mentions.replace(row.body_html),
                   headers=mentions.replace(row.headers), last_error=mentions.replace(row.last_error))

    for row in conn.execute(sa.select(T_NOTIFICATION).where(sa.or_(
            T_NOTIFICATION.c.ticket_id.in_(reported), *_containing(T_NOTIFICATION.c.text, mentions.needles())))):
        change(T_NOTIFICATION, row, text=subject(row.ticket_id, row.text))
    for row in conn.execute(sa.select(T_EVENT).where(sa.or_(
            _normalised(T_EVENT.c.by) == email,
            *[c for col in ("by", "detail") for c in _containing(T_EVENT.c[col], mentions.needles())]))):
        change(T_EVENT, row, by=pseudo_address if row.by.strip().lower() == email else row.by,
               detail=mentions.replace(row.detail))

    # Their tickets stay, countable, under a neutral subject; they keep one pseudonymous reporter.
    for row in conn.execute(sa.select(T_TICKET).where(sa.or_(
            T_TICKET.c.id.in_(reported), *_containing(T_TICKET.c.subject, mentions.needles())))):
        change(T_TICKET, row, subject=ERASED if row.id in reported else mentions.replace(row.subject))
    keeper = conn.execute(sa.select(T_REPORTER).where(T_REPORTER.c.email == pseudo_address)).first()
    for reporter in reporters:
        if keeper is None:
            keeper = reporter
            change(T_REPORTER, reporter, email=pseudo_address, name=pseudonym)
            continue
        # Erased before and written again since: one pseudonymous reporter (the address is unique).
        for ticket in conn.execute(sa.select(T_TICKET).where(T_TICKET.c.reporter_id == reporter.id)):
            change(T_TICKET, ticket, reporter_id=keeper.id)
        deletions["reporter"].add(reporter.id)
    seen: set[int] = set(conn.execute(sa.select(T_PARTICIPANT.c.ticket_id).where(
        T_PARTICIPANT.c.email == pseudo_address)).scalars())
    for participant in participants:
        if participant.ticket_id in seen:
            deletions["participant"].add(participant.id)
        else:
            seen.add(participant.ticket_id)
            change(T_PARTICIPANT, participant, email=pseudo_address)

    # Their files and raw copies go; other people's raw copies lose the mentions.
    mailed = [*theirs, *addressed]
    for attachment in conn.execute(sa.select(T_ATTACHMENT).where(T_ATTACHMENT.c.message_pk.in_(mailed))):
        deletions["attachment"].add(attachment.id)
        plan.files.append(attachment.sha256)
    own_raws = {m.raw_id for m in (*theirs.values(), *quoting.values()) if m.raw_id is not None}
    shared = set(conn.execute(sa.select(T_MESSAGE.c.raw_id).where(
        T_MESSAGE.c.raw_id.in_(own_raws), T_MESSAGE.c.id.not_in([*theirs, *quoting]))).scalars()) if own_raws else set()
    deletions["raw_message"] = own_raws - shared
    for raw_id, data in _raw_mentions(conn, mentions, skip=deletions["raw_message"]):
        changes["raw_message"][raw_id] = {"data": zlib.compress(data, 6), "size": len(data)}

    plan.changes = {k: v for k, v in changes.items() if v}
    plan.deletions = {k: v for k, v in deletions.items() if v}
    plan.files = sorted(set(plan.files))
    plan.server_copies = sorted({m.message_id for m in (*theirs.values(), *quoting.values())
                                 if m.direction == "in" and m.message_id})
    plan.tickets = sorted(touched)
    if plan.pseudonym is not None:
        plan.pending = conn.execute(sa.select(sa.func.count()).select_from(T_ERASURE).where(
            T_ERASURE.c.pseudonym == plan.pseudonym, T_ERASURE.c.status == "pending")).scalar() or 0
    return plan


def _raw_mentions(conn: sa.Connection, mentions: Mentions, skip: set[int]):  # type: ignore[no-untyped-def]
    """(raw id, rewritten bytes) of every other raw copy that mentions them, a batch at a time."""
    needles = [n.lower().encode() for n in mentions.needles()] + [n.encode() for n in mentions.needles()]
    last = 0
    while True:
        batch = conn.execute(sa.select(T_RAW.c.id, T_RAW.c.data).where(T_RAW.c.id > last)
                             .order_by(T_RAW.c.id).limit(RAW_BATCH)).all()
        if not batch:
            return
        last = batch[-1].id
        for raw in batch:
            if raw.id in skip:
                continue
            data = zlib.decompress(raw.data)
            lowered = data.lower()
            if not any(n in data or n in lowered for n in needles):
                continue
            # surrogateescape: bytes that are not UTF-8 come back exactly as they were.
            text = data.decode("utf-8", "surrogateescape")
            if mentions.found(text):
                yield raw.id, mentions.replace(text).encode("utf-8", "surrogateescape")


def _apply(conn: sa.Connection, plan: ErasurePlan, now: datetime) -> None:
    conn.execute(sa.insert(T_ERASURE), {"pseudonym": plan.pseudonym, "status": "pending", "created_at": now,
                                        "server_copies": json.dumps(plan.server_copies), "files": json.dumps(plan.files)})
    # Rows that point elsewhere change first (raw_id, reporter_id), then what they pointed at goes.
    for name in ("message", "outbox", "notification", "event", "ticket", "reporter", "participant", "raw_message"):
        table = TABLES[name]
        for row_id, values in plan.changes.get(name, {}).items():
            conn.execute(sa.update(table).where(table.c.id == row_id).values(**values))
    for name in ("attachment", "raw_message", "participant", "reporter"):
        ids = sorted(plan.deletions.get(name, ()))
        if ids:
            conn.execute(sa.delete(TABLES[name]).where(TABLES[name].c.id.in_(ids)))
    if plan.tickets:
        journal.record_all(conn, (journal.entry(ticket_id, EventKind.ERASURE, "system", now)
                                  for ticket_id in plan.tickets))
    log.info("gdpr.erased", messages=len(plan.changes.get("message", {})), tickets=len(plan.tickets))


def _normalised(column: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.lower(sa.func.trim(column))


def _containing(column: sa.ColumnElement, needles) -> list[sa.ColumnElement]:  # type: ignore[no-untyped-def]
    """Rows whose column holds a needle as written or lower-cased: a narrowing-down only
    (wildcards escaped), the whole-word rules decide. SQLite lower-cases ASCII only."""
    found = []
    for needle in needles:
        found.append(column.contains(needle, autoescape=True))
        found.append(sa.func.lower(column).contains(needle.lower(), autoescape=True))
    return found


# --- outside the database -------------------------------------------------------------------------


def finish_pending(db: Database, settings: Settings, pseudonym: str, report: ErasureReport) -> None:
    with db.session() as session:
        pending = session.connection().execute(sa.select(T_ERASURE).where(
            T_ERASURE.c.pseudonym == pseudonym, T_ERASURE.c.status == "pending")).all()
    if not pending:
        return
    store = AttachmentStore(settings.storage.path)
    finished = []
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
        finished.append(erasure.id)
    db.leave_no_copy(vacuum=True)
    # Done only once no freed page holds an old copy: a run killed in the vacuum is finished by the next.
    if finished:
        with db.session() as session:
            session.connection().execute(sa.update(T_ERASURE).where(T_ERASURE.c.id.in_(finished)).values(
                status="done", finished_at=datetime.now(timezone.utc)))


def _expunge_server_copies(settings: Settings, message_ids: list[str]) -> int:
    if not message_ids:
        return 0
    deleted = 0
    for s in settings.intake_mailboxes:
        with imap_session(s) as imap:
            for folder in (s.processed_folder, s.quarantine_folder, s.folder):
                deleted += imap.delete_by_message_id(folder, message_ids)
    return deleted
