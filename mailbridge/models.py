"""The tables. Times are timezone-aware UTC; the edges convert for people.

The schema itself is owned by the alembic migrations in
`mailbridge/migrations`; these classes must match them (a test compares).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mailbridge.vocabulary import OPEN_SQL



class Reporter(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    # NULL for mail without a usable From; unique otherwise.
    email: Optional[str] = Field(default=None, sa_column=sa.Column(sa.String(320), unique=True, nullable=True))
    name: str = Field(default="", sa_column=sa.Column(sa.String(200), nullable=False, server_default=""))
    created_at: datetime
    # A permanent bounce: no more automatic mail goes to this address.
    undeliverable: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))


class Ticket(SQLModel, table=True):
    __table_args__ = (
        sa.Index("ix_ticket_status_created", "status", "created_at"),
        sa.Index("ix_ticket_assignee_assigned", "assignee", "assigned_at"),
        # The queue: open tickets by ID, without reading the closed million.
        sa.Index("ix_ticket_open", "id", sqlite_where=sa.text(OPEN_SQL), postgresql_where=sa.text(OPEN_SQL)),
        {"sqlite_autoincrement": True},  # an ID is never handed out twice
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(default="new", sa_column=sa.Column(sa.String(20), nullable=False))
    category: str = Field(default="Egyéb", sa_column=sa.Column(sa.String(80), nullable=False))
    area: str = Field(default="Egyéb", sa_column=sa.Column(sa.String(80), nullable=False))
    channel: str = Field(default="email", sa_column=sa.Column(sa.String(20), nullable=False))
    reporter_id: Optional[int] = Field(default=None, foreign_key="reporter.id", index=True)
    assignee: Optional[str] = Field(default=None, sa_column=sa.Column(sa.String(320), nullable=True))
    language: str = Field(default="hu", sa_column=sa.Column(sa.String(8), nullable=False))
    flags: str = Field(default="", sa_column=sa.Column(sa.String(200), nullable=False, server_default=""))
    linked_ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id")
    created_at: datetime
    updated_at: datetime
    ack_deadline: Optional[datetime] = None
    acknowledged_at: Optional[datetime] = None
    resolved_at: Optional[datetime] = None
    assigned_at: Optional[datetime] = None
    # Set when merged: later mail to this ticket follows it to the other one.
    merged_into_id: Optional[int] = Field(default=None, foreign_key="ticket.id")

    @property
    def flag_list(self) -> list[str]:
        return [f for f in self.flags.split(",") if f]


class Participant(SQLModel, table=True):
    """Who may change a ticket by mail: reporter and the first mail's To/Cc."""

    __table_args__ = (sa.UniqueConstraint("ticket_id", "email"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    email: str = Field(sa_column=sa.Column(sa.String(320), nullable=False))
    role: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))


class RawMessage(SQLModel, table=True):
    """The message as received, zlib-compressed: re-parse, export, audit."""

    __tablename__ = "raw_message"
    id: Optional[int] = Field(default=None, primary_key=True)
    sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    size: int
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime


class Message(SQLModel, table=True):
    __table_args__ = (sa.Index("ix_message_msgid_sha", "message_id", "raw_sha256"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id", index=True)
    direction: str = Field(default="in", sa_column=sa.Column(sa.String(3), nullable=False))
    # customer, agent, outsider, auto_reply, bounce, automatic, unparseable, outgoing
    kind: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    # email, or the channel of a contact logged by hand (phone, post, social, other) (P3, P9)
    channel: str = Field(default="email", sa_column=sa.Column(sa.String(20), nullable=False, server_default="email"))
    internal: bool = False
    message_id: str = Field(default="", sa_column=sa.Column(sa.String(998), nullable=False, index=True))
    sender: str = Field(default="", sa_column=sa.Column(sa.String(320), nullable=False))
    sender_name: str = Field(default="", sa_column=sa.Column(sa.String(200), nullable=False))
    to_addrs: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    cc_addrs: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    text: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    new_text: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    html: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    references: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    reason: str = Field(default="", sa_column=sa.Column(sa.String(200), nullable=False))
    raw_id: Optional[int] = Field(default=None, foreign_key="raw_message.id")
    raw_sha256: str = Field(default="", sa_column=sa.Column(sa.String(64), nullable=False))
    sent_at: Optional[datetime] = None
    created_at: datetime


class Attachment(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id", index=True)
    filename: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    content_type: str = Field(default="application/octet-stream", sa_column=sa.Column(sa.String(200), nullable=False))
    size: int
    sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    content_id: str = Field(default="", sa_column=sa.Column(sa.String(998), nullable=False))
    inline: bool = False
    rejected: bool = False
    reason: str = Field(default="", sa_column=sa.Column(sa.String(200), nullable=False))


class Event(SQLModel, table=True):
    """The journal: what happened to a ticket (or to the system), by whom."""

    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id", index=True)
    type: str = Field(sa_column=sa.Column(sa.String(60), nullable=False))
    at: datetime
    by: str = Field(default="system", sa_column=sa.Column(sa.String(320), nullable=False))
    detail: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))


class IntakeLog(SQLModel, table=True):
    """Our own record of every server copy: the truth about what was taken in.

    Keyed by folder UIDVALIDITY + UID, never by flags another client may change.
    """

    __tablename__ = "intake_log"
    __table_args__ = (sa.UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_intake_uid"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    mailbox: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    folder: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    uidvalidity: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    uid: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    message_pk: Optional[int] = Field(default=None, foreign_key="message.id")
    # stored -> moved; quarantined -> moved; retry (fetch failed); stale (UIDVALIDITY changed)
    state: str = Field(sa_column=sa.Column(sa.String(20), nullable=False, index=True))
    target: str = Field(default="", sa_column=sa.Column(sa.String(300), nullable=False))
    attempts: int = 0
    reason: str = Field(default="", sa_column=sa.Column(sa.String(300), nullable=False))
    created_at: datetime
    updated_at: datetime


class Quarantine(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id")
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # waiting, retried (parsed after a fix), failed_again
    status: str = Field(default="waiting", sa_column=sa.Column(sa.String(20), nullable=False))
    created_at: datetime
    retried_at: Optional[datetime] = None


class Outbox(SQLModel, table=True):
    """Mail we owe someone; written in the transaction that caused it."""

    __table_args__ = (sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
                      sa.Index("ix_outbox_recipients_created", "recipients", "created_at"))
    id: Optional[int] = Field(default=None, primary_key=True)
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id", index=True)
    template: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    recipients: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    message_id: str = Field(sa_column=sa.Column(sa.String(998), nullable=False, unique=True))
    headers: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    body_text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    body_html: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    # JSON list of {sha256, filename, content_type}: files from the attachment store
    attachments: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False, server_default="[]"))
    # queued, sent, failed, bounced
    status: str = Field(default="queued", sa_column=sa.Column(sa.String(20), nullable=False))
    attempts: int = 0
    next_attempt_at: Optional[datetime] = None
    last_error: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime
    sent_at: Optional[datetime] = None


class Notification(SQLModel, table=True):
    """An agent's in-system notice (P1, P2): listed and marked read from the CLI."""

    __table_args__ = (sa.Index("ix_notification_agent_read", "agent", "read_at"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    agent: str = Field(sa_column=sa.Column(sa.String(320), nullable=False))
    ticket_id: Optional[int] = Field(default=None, foreign_key="ticket.id")
    kind: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime
    read_at: Optional[datetime] = None


class Erasure(SQLModel, table=True):
    """An erasure in progress or done (Art. 17): what is left to clean outside the database.

    Keyed by the stable pseudonym, never by the address, so a second run after a
    crash finds it without the address being stored anywhere.
    """

    id: Optional[int] = Field(default=None, primary_key=True)
    pseudonym: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, index=True))
    status: str = Field(default="pending", sa_column=sa.Column(sa.String(20), nullable=False))
    # JSON: Message-ID header values of server copies to delete, attachment files to drop
    server_copies: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False))
    files: str = Field(default="[]", sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime
    finished_at: Optional[datetime] = None


# The tables, for SQLAlchemy Core statements: the busy paths (intake, the outbox, erasure)
# write rows in bulk, without an ORM object per row.
T_REPORTER = Reporter.__table__
T_TICKET = Ticket.__table__
T_PARTICIPANT = Participant.__table__
T_RAW = RawMessage.__table__
T_MESSAGE = Message.__table__
T_ATTACHMENT = Attachment.__table__
T_EVENT = Event.__table__
T_INTAKE = IntakeLog.__table__
T_QUARANTINE = Quarantine.__table__
T_OUTBOX = Outbox.__table__
T_NOTIFICATION = Notification.__table__
T_ERASURE = Erasure.__table__
