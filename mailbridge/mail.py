"""The plain values intake stages hand each other (never dicts or library objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class Address:
    email: str  # lower-cased; "" when the header is missing or unusable
    name: str = ""

    def __bool__(self) -> bool:
        return bool(self.email)


@dataclass(frozen=True)
class RawMail:
    """One server copy, exactly as fetched."""

    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    received: datetime | None = None  # INTERNALDATE: when our server took it in (None: not known)


@dataclass(frozen=True)
class Headers:
    """Header fields by lower-cased name, values unfolded, in order."""

    fields: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str = "") -> str:
        name = name.lower()
        for key, value in self.fields:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> tuple[str, ...]:
        name = name.lower()
        return tuple(value for key, value in self.fields if key == name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(key == name.lower() for key, _ in self.fields)


@dataclass(frozen=True)
class Part:
    """An attachment (or inline image) of a mail."""

    filename: str  # sanitised
    content_type: str
    size: int
    sha256: str
    data: bytes = field(repr=False, default=b"")  # empty when rejected
    content_id: str = ""  # without <>
    inline: bool = False
    rejected: bool = False
    reason: str = ""


@dataclass(frozen=True)
class DeliveryReport:
    """What a bounce says: who failed, and which of our messages it is about."""

    recipients: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()
    permanent: bool = True


@dataclass(frozen=True)
class ParsedMail:
    message_id: str
    sender: Address
    subject: str
    text: str  # the whole text body (a rendering of the HTML when there is no text part)
    new_text: str  # quoted history stripped
    html: str
    references: tuple[str, ...]  # In-Reply-To first
    attachments: tuple[Part, ...]
    headers: Headers
    raw_sha256: str
    raw_size: int
    return_path: str | None = None  # None: no header; "": the null sender <>
    reply_to: Address | None = None
    # Where the reporter's address comes from: "from", or where From has none, "reply-to",
    # "sender" or "return-path", whose address is `fallback_sender`. `sender` stays From's:
    # agent and division checks read it alone, so a fallback never makes a mail staff's.
    sender_source: str = "from"
    fallback_sender: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    date: datetime | None = None
    content_type: str = "text/plain"
    report: DeliveryReport | None = None  # set for delivery reports
    defects: tuple[str, ...] = ()

    @property
    def reporter(self) -> Address:
        """Who a new ticket is for: From's address, else the fallback (see sender_source)."""
        return self.sender or self.fallback_sender or self.sender


class OutcomeKind(StrEnum):
    """What became of a mail intake took in: `poll --once` counts these, the log and the
    metrics label them. Here, not in intake: the workflow says what an agent's mail did."""

    NEW_TICKET = "new_ticket"
    REPLY = "reply"
    REOPENED = "reopened"
    FOLLOW_UP = "follow_up"  # a reply to a closed ticket: a new one, linked to it
    OUTSIDER = "outsider"  # recorded on the ticket, changes nothing
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    AUTOMATIC = "automatic"
    SPAM = "spam"
    IGNORED = "ignored"  # a sender ops' mail rules block
    DUPLICATE = "duplicate"  # a copy of a mail we hold
    QUARANTINED = "quarantined"
    ALREADY = "already"  # this server copy was taken in before
    # an agent's or a division's mail on a ticket (workflow/replies.py)
    AGENT_REPLY = "agent_reply"
    AGENT_NOTE = "agent_note"
    AGENT_ESCALATED = "agent_escalated"
    AGENT_RESOLVED = "agent_resolved"
    AGENT_COMMANDS = "agent_commands"
    AGENT_COMMAND_FAILED = "agent_command_failed"
    DIVISION_NOTE = "division_note"
    # an agent's desk command by mail (workflow/agent_mail.py)
    AGENT_OPENED = "agent_opened"  # #open: a ticket on another channel
    AGENT_LOGGED = "agent_logged"  # #log: a contact logged on the ticket
    AGENT_QUEUE = "agent_queue"  # #mine: her queue sent at once
    REFUSED = "refused"  # a desk command from a non-agent, or a new mail in an agent's name that fails the
    # authenticity check: recorded, nothing done
