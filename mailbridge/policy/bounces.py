"""What a delivery report may change: which of our messages failed, and for whom. Pure.

Anyone can send a mail that looks like a delivery report (RFC 3464) and
names any address; most that reach a support desk are backscatter about
mail we never sent. So a report changes a recipient's state (the outbox row
`bounced`, the address undeliverable) only when it is about a message we
sent to that recipient:

- it quotes one of our Message-IDs (the returned original's headers, or its
  own In-Reply-To/References), which carry 64 random bits, so only someone
  who received that message can quote it;
- that message went out (an outbox row `sent`, or `bounced` already for
  another of its recipients): a report about mail still queued is no report;
- the failed recipient it names is, exactly, one we sent that message to.

A report that says delivery is only delayed changes nothing either.
No VERP: the quoted Message-ID already ties a report to one message, and a
per-recipient return path would need a `+` extension the mail provider may
not offer; the reports that quote no headers at all are rare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailbridge.mail import DeliveryReport

# The outbox states of a message that left us.
WENT_OUT = ("sent", "bounced")


@dataclass(frozen=True)
class SentMail:
    """One of our messages a report quotes: an outbox row."""

    outbox_id: int
    ticket_id: int | None
    message_id: str
    recipients: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class BounceVerdict:
    bounced: tuple[SentMail, ...] = ()  # outbox rows to mark bounced
    undeliverable: tuple[str, ...] = ()  # addresses that failed for good
    about: tuple[SentMail, ...] = ()  # the messages of ours it quotes, whatever it says of them
    reason: str = ""  # why nothing changes, when nothing does

    @property
    def counts(self) -> bool:
        """Is it a report about a message we sent to whom it names?"""
        return not self.reason

    @property
    def ticket_id(self) -> int | None:
        """The ticket it belongs to: that of the first message of ours it quotes."""
        for mail in (*self.bounced, *self.about):
            if mail.ticket_id is not None:
                return mail.ticket_id
        return None


def quoted_ids(report: DeliveryReport | None, references: Sequence[str]) -> tuple[str, ...]:
    """The Message-IDs a report may be about, to look our outbox up by."""
    found = (*(report.message_ids if report else ()), *references)
    return tuple(dict.fromkeys(i.strip() for i in found if i and i.strip()))


def judge_report(report: DeliveryReport | None, quoted: Sequence[SentMail]) -> BounceVerdict:
    """`quoted`: the outbox rows whose Message-ID the report (or its References) names."""
    ours = tuple(m for m in quoted if m.status in WENT_OUT)
    if not ours:
        return BounceVerdict(reason="quotes no message we sent")
    failed = {_address(r) for r in (report.recipients if report else ())} - {""}
    if not failed:
        return BounceVerdict(about=ours, reason="names no failed recipient")
    bounced, undeliverable = [], []
    for mail in ours:
        hit = failed & {_address(r) for r in mail.recipients}
        if hit:
            bounced.append(mail)
            undeliverable.extend(sorted(hit - set(undeliverable)))
    if not bounced:
        return BounceVerdict(about=ours, reason="names no recipient of the message it quotes")
    if report is not None and not report.permanent:
        return BounceVerdict(about=ours, reason="delivery only delayed")
    return BounceVerdict(tuple(bounced), tuple(undeliverable), ours)


def recipients_of(column: str) -> tuple[str, ...]:
    """An outbox row's `recipients` column ("a@x, b@y") as addresses."""
    return tuple(a for a in (_address(part) for part in column.split(",")) if a)


def _address(value: str) -> str:
    return value.strip().strip("<>").strip().lower()
