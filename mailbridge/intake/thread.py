"""Thread stage: which ticket does a mail belong to?

References beat the subject tag: people retype tags, not Message-IDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailbridge.mail import ParsedMail
from mailbridge.ticket_ids import find_tag


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
