"""Opening tickets and recording what was said on them, whatever the entrance.

Mail (intake), the command line and later entrances open a ticket and
record a message or a logged contact through `TicketBook`, in the caller's
transaction. Rows nothing else in the batch refers to (participants, files,
journal entries) are written together at `finish`, one statement per table,
and the batch's new tickets are then handed to agents: a batch of a thousand
mails costs a handful of statements, a ticket opened by hand the same code.

A `buffered` book (intake's) holds the rows others refer to as well (reporters,
tickets, raw copies, messages, quarantine entries) and the changes to tickets
and reporters, with keys handed out ahead (`RowKeys`), until `flush`: code that
reads or writes those tables itself runs inside `immediate()`, which flushes first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailbridge import journal
from mailbridge.adapters.db import RowKeys, insert_rows, insert_statement
from mailbridge.config import Settings
from mailbridge.journal import EventKind
from mailbridge.mail import Address
from mailbridge.models import T_ATTACHMENT, T_EVENT, T_MESSAGE, T_PARTICIPANT, T_QUARANTINE, T_RAW, T_REPORTER, T_TICKET
from mailbridge.outbox.render import Renderer
from mailbridge.policy.deadline import ack_deadline, before_go_live
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.workflow.actions import Casework
from mailbridge.workflow.assign import AssignmentBook
from mailbridge.workflow.followups import FollowUpBook

# A buffered book's keyed tables, in the order their rows go in (each refers only to those before it).
KEYED = (T_REPORTER, T_TICKET, T_RAW, T_MESSAGE, T_QUARANTINE)


@dataclass(frozen=True)
class NewTicket:
    subject: str
    channel: str  # vocabulary.CHANNELS
    reporter: Address | None
    category: str
    area: str
    language: str
    others: Mapping[str, str] = field(default_factory=dict)  # address -> role (to, cc): participants
    linked: int | None = None  # the older ticket this one follows
    by: str = "system"
    text: str = ""  # the reporter's first words: the assignment notice quotes them
    flags: tuple[str, ...] = ()
    assignee: str | None = None  # an agent chosen by whoever opens it (#open by mail); None: by area and load
    received: datetime | None = None  # when our server received the mail it comes from (None: now, by hand)


@dataclass(frozen=True)
class StoredFile:
    """A file already in the attachment store, to be listed on a message."""

    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str = ""
    inline: bool = False
    rejected: bool = False
    reason: str = ""


def message_row(**values: Any) -> dict[str, Any]:
    """A message row with every column a mail may leave empty filled in."""
    row: dict[str, Any] = {"direction": "in", "channel": "email", "internal": False, "message_id": "", "sender": "",
                           "sender_name": "", "to_addrs": "", "cc_addrs": "", "subject": "", "text": "",
                           "new_text": "", "html": "", "references": "", "reason": "", "raw_sha256": ""}
    row.update(values)
    return row


class TicketBook:
    def __init__(self, conn: sa.Connection, settings: Settings, now: datetime, renderer: Renderer | None = None,
                 buffered: bool = False):
        self.conn = conn
        self.settings = settings
        self.now = now
        self._deadlines: dict[datetime, datetime] = {}
        self.prefix = settings.tickets.id_prefix
        # renderer None: nobody is assigned or told here
        self.renderer = renderer
        self.assignments = AssignmentBook(conn, settings, renderer) if renderer else None
        self.casework = Casework(conn, settings, renderer, now) if renderer else None
        self.followups = FollowUpBook(conn, settings, renderer, now) if renderer else None
        self.reporters: dict[str, tuple[int, str]] = {}  # address -> (id, name), known in this batch
        self.looked_up: set[str] = set()  # addresses already asked for: not there means new
        self.participants: dict[int, set[str]] = defaultdict(set)  # added by this batch
        self.pending_assignments: list[tuple[int, str, str]] = []
        self.given: dict[int, str] = {}  # ticket -> the agent its opener chose
        self._participant_rows: list[dict] = []
        self._attachment_rows: list[dict] = []
        self._events: list[dict] = []
        self.buffered = buffered
        self.keys = RowKeys(conn, KEYED)
        self._rows: dict[str, dict[int, dict]] = {t.name: {} for t in KEYED}  # table -> key -> row, not written yet
        self._changes: dict[tuple[str, int], dict] = {}  # (table, key) -> new values of a row written before

    # --- what the batch already knows ---------------------------------------------

    def remember_reporters(self, addresses: Iterable[str], rows: Iterable[sa.Row]) -> None:
        """The reporters of a batch, read in one query by the caller."""
        self.looked_up |= set(addresses)
        for row in rows:
            self.reporters[row.email] = (row.id, row.name)

    # --- opening ----------------------------------------------------------------

    def open(self, new: NewTicket, into: int | None = None) -> int:
        """A new ticket, whatever the channel: reporter, participants, deadline, journal, and
        (at `finish`) its agent, who is told by mail and in-system. `into`: the ticket opened
        for this case before anyone could read it (a quarantined mail read again, P6); it keeps
        its ID, status, recorded time and deadline, and gets the rest."""
        reporter_id = None
        if new.reporter is not None and (new.reporter.email or new.reporter.name):
            reporter_id = self.reporter_id(new.reporter)
        values = {"subject": (new.subject or "(no subject)")[:500], "category": new.category, "area": new.area,
                  "channel": new.channel, "reporter_id": reporter_id, "language": new.language,
                  "flags": ",".join(new.flags), "linked_ticket_id": new.linked, "updated_at": self.now}
        since = self.settings.tickets.acknowledge_since
        history = before_go_live(new.received, since, self.settings.policy.timezone)
        if history:  # no acknowledgement is due, so no deadline: the SLA watcher and reports skip it
            values["ack_deadline"] = None
        if into is None:
            ticket_id = self.insert(T_TICKET, status="new", created_at=self.now,
                                    **{"ack_deadline": self.deadline(self.now), **values})
        else:
            ticket_id = into
            self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == into).values(**values))
        people = {new.reporter.email: "reporter"} if new.reporter is not None and new.reporter.email else {}
        for email, role in new.others.items():
            people.setdefault(email, role)
        for email, role in people.items():
            self._participant_rows.append({"ticket_id": ticket_id, "email": email, "role": role})
            self.participants[ticket_id].add(email)
        if into is None:  # one read again was opened when it came: the journal says so already
            detail = {"channel": new.channel, "category": new.category, "area": new.area}
            if new.linked is not None:
                detail["follows"] = format_ticket_id(new.linked, self.prefix)
            self.event(ticket_id, EventKind.TICKET_CREATED, new.by, detail)
        if history:
            self.event(ticket_id, EventKind.ACK_BEFORE_GO_LIVE, "system", {
                "received": new.received.isoformat(), "acknowledge_since": since.isoformat(),  # type: ignore[union-attr]
                "reason": "received before tickets.acknowledge_since: the mailbox's history is not acknowledged"})
        self.pending_assignments.append((ticket_id, new.area, new.text[:4000]))
        if new.assignee:
            self.given[ticket_id] = new.assignee
        return ticket_id

    def open_by_hand(self, new: NewTicket, said: str, files: Iterable[StoredFile] = ()) -> int:
        """P3: a case that came by phone, post, social media or otherwise, entered by an agent:
        the ticket, what the reporter said as its first message, and the files they gave."""
        reporter = new.reporter or Address("")
        ticket_id = self.open(new)
        message_pk = self.record_message(ticket_id=ticket_id, kind="manual", channel=new.channel,
                                         sender=reporter.email, sender_name=reporter.name, subject=new.subject,
                                         text=said, new_text=said)
        self.attach(message_pk, ticket_id, files)
        self.finish()  # assigned now: without an address, the assignee must acknowledge it
        if not reporter.email:
            # P7 still holds: the agent acknowledges by the channel the case came in.
            self.event(ticket_id, EventKind.ACK_BY_HAND, "system", {"channel": new.channel})
            self.finish()
            if self.casework is not None:
                self.casework.tell_assignee(ticket_id, "ack_by_hand",
                                            f"Nincs e-mail cím: a visszaigazolást {new.channel} csatornán kell megadni.")
        return ticket_id

    def deadline(self, recorded_at: datetime) -> datetime:
        # A batch's tickets are recorded at one time: the working days are counted once.
        if (known := self._deadlines.get(recorded_at)) is not None:
            return known
        p = self.settings.policy
        found = ack_deadline(recorded_at, p.ack_business_days, p.timezone, p.country).astimezone(timezone.utc)
        self._deadlines[recorded_at] = found
        return found

    def reporter_id(self, person: Address) -> int:
        if not person.email:  # a caller known only by name (phone, post): a reporter of their own
            return self.insert(T_REPORTER, email=None, name=person.name[:200], created_at=self.now)
        known = self.reporters.get(person.email)
        if known is None and person.email not in self.looked_up:
            found = self.conn.execute(sa.select(T_REPORTER.c.id, T_REPORTER.c.name)
                                      .where(T_REPORTER.c.email == person.email)).first()
            known = (found.id, found.name) if found else None
        if known is None:
            known = (self.insert(T_REPORTER, email=person.email, name=person.name[:200], created_at=self.now),
                     person.name)
        elif person.name and not known[1]:
            self.change(T_REPORTER, known[0], name=person.name[:200])
            known = (known[0], person.name)
        self.reporters[person.email] = known
        return known[0]

    def add_participant(self, ticket_id: int, email: str, role: str) -> None:
        self._participant_rows.append({"ticket_id": ticket_id, "email": email, "role": role})
        self.participants[ticket_id].add(email)

    # --- recording ----------------------------------------------------------------

    def record_message(self, **values: Any) -> int:
        """A message on a ticket (or on none): a mail, a case entered by hand, a logged contact."""
        return self.insert(T_MESSAGE, **message_row(created_at=self.now, **values))

    def attach(self, message_pk: int, ticket_id: int | None, files: Iterable[StoredFile]) -> None:
        for f in files:
            self._attachment_rows.append({
                "message_pk": message_pk, "ticket_id": ticket_id, "filename": f.filename,
                "content_type": f.content_type[:200], "size": f.size, "sha256": f.sha256,
                "content_id": f.content_id[:998], "inline": f.inline, "rejected": f.rejected, "reason": f.reason,
            })
            if f.rejected and ticket_id is not None:
                self.event(ticket_id, EventKind.ATTACHMENT_REJECTED, "system",
                           {"filename": f.filename, "size": f.size, "reason": f.reason})

    def flush_attachments(self) -> None:
        """The files written now, not at `finish`: a relay or escalation sends them on at once."""
        if self.buffered:
            self.flush()  # their messages first
        if self._attachment_rows:
            insert_rows(self.conn, T_ATTACHMENT, self._attachment_rows)
            self._attachment_rows.clear()

    def log_contact(self, ticket_id: int, channel: str, direction: str, agent: str, note: str) -> int:
        """P9: a contact outside the mail (phone, post, …), recorded as an internal message."""
        reporter = self.conn.execute(
            sa.select(T_REPORTER.c.email).join(T_TICKET, T_TICKET.c.reporter_id == T_REPORTER.c.id)
            .where(T_TICKET.c.id == ticket_id)).scalar()
        message_pk = self.record_message(
            ticket_id=ticket_id, direction=direction, kind="contact", channel=channel, internal=True, sender=agent,
            to_addrs=reporter or "", subject=f"{channel} ({direction})", text=note, new_text=note)
        self.event(ticket_id, EventKind.CONTACT_LOGGED, agent, {"channel": channel, "direction": direction})
        self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == ticket_id).values(updated_at=self.now))
        return message_pk

    def event(self, ticket_id: int | None, kind: EventKind, by: str, detail: Mapping[str, Any] | None = None) -> None:
        self._events.append(journal.entry(ticket_id, kind, by, self.now, detail))

    def insert(self, table: sa.Table, **values: Any) -> int:
        if self.buffered:
            key = self.keys.next(table)
            self._rows[table.name][key] = {"id": key, **values}
            return key
        # Parameters, not .values(): a statement built per row costs 4x in compilation.
        key = self.conn.execute(insert_statement(table), values).inserted_primary_key[0]
        self.keys.forget()
        return key

    def change(self, table: sa.Table, key: int, **values: Any) -> None:
        """New values for a row of a keyed table (a ticket touched or reopened, a reporter's name)."""
        if not self.buffered:
            self.conn.execute(sa.update(table).where(table.c.id == key).values(**values))
        elif key in self._rows[table.name]:
            self._rows[table.name][key].update(values)
        else:
            self._changes.setdefault((table.name, key), {}).update(values)

    def flush(self) -> None:
        """Writes what a buffered book holds: each table's rows in one statement per set of
        columns (multi-row), the changes one statement per table and set of columns."""
        for table in KEYED:
            rows = self._rows[table.name]
            self.keys.claim(table, list(rows))
            for shape in _by_shape(rows.values()):
                insert_rows(self.conn, table, shape)
            rows.clear()
        if self._changes:
            tables = {t.name: t for t in KEYED}
            grouped: dict[tuple[str, tuple[str, ...]], list[dict]] = defaultdict(list)
            for (name, key), values in self._changes.items():
                grouped[(name, tuple(sorted(values)))].append({"_key": key, **values})
            for (name, columns), params in grouped.items():
                table = tables[name]
                self.conn.execute(sa.update(table).where(table.c.id == sa.bindparam("_key"))
                                  .values({c: sa.bindparam(c) for c in columns}), params)
            self._changes.clear()
        if self._participant_rows:
            insert_rows(self.conn, T_PARTICIPANT, self._participant_rows)
            self._participant_rows.clear()
        if self._attachment_rows:
            insert_rows(self.conn, T_ATTACHMENT, self._attachment_rows)
            self._attachment_rows.clear()

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """For code that reads or writes the book's tables itself: what the book holds is
        written first, and its own rows go in at once until the block ends."""
        buffered, self.buffered = self.buffered, False
        try:
            if buffered:
                self.flush()
            yield
        finally:
            self.buffered = buffered
            self.keys.forget()  # rows went in with keys the database chose

    def finish(self) -> None:
        """Writes the rows nothing in the batch refers to, one statement per table, then hands
        the batch's new tickets to agents (their notices quote the messages)."""
        with self.immediate():
            self._finish()

    def _finish(self) -> None:
        if self._participant_rows:
            insert_rows(self.conn, T_PARTICIPANT, self._participant_rows)
            self._participant_rows.clear()
        self.flush_attachments()
        if self._events:  # journal.entry's rows: one shape
            insert_rows(self.conn, T_EVENT, self._events)
        self._events.clear()
        if self.assignments is not None:
            self.assignments.assign_many(self.pending_assignments, self.now, given=self.given)
        self.pending_assignments.clear()
        self.given.clear()
        if self.followups is not None:
            self.followups.finish()


def _by_shape(rows: Iterable[dict]) -> list[list[dict]]:
    """Rows grouped by their columns, in order of first appearance: one multi-row INSERT each."""
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        shapes.setdefault(tuple(row), []).append(row)
    return list(shapes.values())
