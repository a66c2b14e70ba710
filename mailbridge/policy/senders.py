"""Who may change a ticket by mail, and what a reply does to it. Pure.

A ticket changes only for its participants (reporter, the first mail's
To/Cc, agents, divisions); anyone else's mail is kept on the ticket and the
assignee is told, so a stranger who guesses a subject tag cannot steer it.
Anyone can write a staff address in From, so staff rights also need the
authenticity check (`policy.authenticity`); `proven_role` says what is left
when it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

REPORTER = "reporter"
PARTICIPANT = "participant"
AGENT = "agent"
DIVISION = "division"
OUTSIDER = "outsider"

# What a threaded mail does to its ticket.
APPEND = "append"  # recorded, no status change
REOPEN = "reopen"  # resolved within the reopen window -> in_progress
FOLLOW_UP = "follow_up"  # closed, or resolved too long ago -> a new linked ticket
RECORD_ONLY = "record_only"  # outsider: recorded, nothing changes, assignee told


@dataclass(frozen=True)
class Participants:
    reporter: str
    others: frozenset[str]
    agents: frozenset[str]
    divisions: frozenset[str]


def sender_role(sender: str, who: Participants) -> str:
    sender = sender.lower()
    if not sender:
        return OUTSIDER
    if sender in who.agents:
        return AGENT
    if sender in who.divisions:
        return DIVISION
    if sender == who.reporter:
        return REPORTER
    if sender in who.others:
        return PARTICIPANT
    return OUTSIDER


STAFF = frozenset({AGENT, DIVISION})


def proven_role(role: str, authentic: bool) -> str:
    """The role a mail acts with once the authenticity check has spoken. A staff address
    that fails it gets no staff rights, nor a participant's (agents are often on a
    ticket's Cc): the mail is an outsider's, recorded and changing nothing."""
    if role in STAFF and not authentic:
        return OUTSIDER
    return role


def reply_effect(role: str, status: str, resolved_at: datetime | None, now: datetime, reopen_days: int) -> str:
    """What a threaded mail from `role` does to a ticket in `status`."""
    if role == OUTSIDER:
        return RECORD_ONLY
    if role in (AGENT, DIVISION):
        return APPEND  # agents' commands are read by the workflow, not here
    if status == "closed":
        return FOLLOW_UP
    if status == "resolved":
        if resolved_at is not None and now - resolved_at > timedelta(days=reopen_days):
            return FOLLOW_UP
        return REOPEN
    return APPEND
