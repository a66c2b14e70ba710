"""Thread stage: which ticket does a mail belong to?

References beat the subject tag: people retype tags, not Message-IDs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from mailbridge.mail import ParsedMail


class TicketIndex(Protocol):
    def by_message_id(self, message_id: str) -> int | None: ...

    def by_number(self, number: int) -> int | None: ...


@dataclass(frozen=True)
class ThreadMatch:
    ticket_id: int | None
    via: str = ""  # references, subject

    @property
    def is_new(self) -> bool:
        return self.ticket_id is None


NEW = ThreadMatch(None)


# The ticket.id column is a 32-bit INTEGER on PostgreSQL: a bigger number names no ticket,
# and asking the database for it would fail instead of finding nothing.
MAX_TICKET_NUMBER = 2**31 - 1


@lru_cache(maxsize=8)
def tag_pattern(prefix: str) -> re.Pattern[str]:
    """`[CRX-000042]`, any case, with or without leading zeros, anywhere in the subject."""
    # [0-9], not \d: \d and int() take Arabic-Indic or full-width digits, which no tag of ours has.
    return re.compile(rf"\[\s*{re.escape(prefix)}\s*-\s*0*([0-9]{{1,12}})\s*\]", re.IGNORECASE)


def _ticket_number(digits: str) -> int | None:
    number = int(digits)
    return number if number <= MAX_TICKET_NUMBER else None


def find_tag(subject: str, prefix: str) -> int | None:
    found = tag_pattern(prefix).search(subject or "")
    return _ticket_number(found.group(1)) if found else None


def format_ticket_id(number: int, prefix: str) -> str:
    return f"{prefix}-{number:06d}"


def parse_ticket_id(text: str, prefix: str) -> int | None:
    """`CRX-000042`, `crx-42`, `[CRX-42]` or `42` -> 42; None for anything else, or beyond any ticket."""
    found = re.fullmatch(rf"\[?\s*(?:{re.escape(prefix)}\s*-\s*)?0*([0-9]{{1,12}})\s*\]?", text.strip(), re.IGNORECASE)
    return _ticket_number(found.group(1)) if found else None


def match_ticket(mail: ParsedMail, tickets: TicketIndex, prefix: str) -> ThreadMatch:
    for ref in mail.references:
        if ticket_id := tickets.by_message_id(ref):
            return ThreadMatch(ticket_id, via="references")
    if mail.report is not None:
        for ref in mail.report.message_ids:
            if ticket_id := tickets.by_message_id(ref):
                return ThreadMatch(ticket_id, via="report")
    number = find_tag(mail.subject, prefix)
    if number is not None and (ticket_id := tickets.by_number(number)):
        return ThreadMatch(ticket_id, via="subject")
    return NEW
