"""Follow-ups reach the assignee (SPEC "The agent's day by mail").

Every message recorded on a ticket that its assignee did not write (the
customer's reply, a Cc'd participant, an outsider, an auto-reply, a division's
answer) is forwarded to the assignee, or to the fallback agent while nobody
has the ticket, as `ticket_update`: who wrote, the new text, the files within
`desk.forward_attachment_bytes`. It answers the forwarded mail and carries the
References of the ticket's thread, so it sits in the conversation in the agent's
client and her reply to it threads to the ticket as any agent reply. An
in-system notice goes with it.

Intake collects a batch's follow-ups with `add` and writes them at `finish`:
one query for the tickets, one for their threads, one statement per table.
Forwards go only to configured agents and are `Auto-Submitted: auto-generated`;
a bounce of one marks that outbox row and nothing more (`replies.record_bounce`
tells the assignee in-system only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa

from mailbridge.config import Agent, Settings
from mailbridge.outbox.context import first_message_ids, ticket_contexts
from mailbridge.outbox.queue import notify_agents, queue_mails, render_mail
from mailbridge.outbox.render import Renderer
from mailbridge.policy.forwarding import share_files


@dataclass(frozen=True)
class FollowUp:
    ticket_id: int
    sender: str  # address as written in From ("" for none)
    sender_name: str
    message_id: str
    text: str  # the new text, quoted history stripped
    files: tuple[dict, ...]  # {"sha256", "filename", "content_type", "size"}: stored, not rejected
    role: str  # reporter, participant, outsider, agent, division, auto_reply


def fallback_agent(settings: Settings) -> Agent | None:
    """Who gets what nobody has: the active fallback agent, if one is configured."""
    return next((a for a in settings.agents if a.fallback and a.active), None)


def files_of(attachments) -> tuple[dict, ...]:  # type: ignore[no-untyped-def]
    """A mail's stored files as an outbox row lists them (with sizes for the cap)."""
    return tuple({"sha256": p.sha256, "filename": p.filename, "content_type": p.content_type, "size": p.size}
                 for p in attachments if not p.rejected)


def attachment_context(files: tuple[dict, ...], cap: int) -> tuple[tuple[dict, ...], dict]:
    """(what goes as attachments, what the template says of the files): `attached` and
    `listed` ({filename, size}) and the cap."""
    attached, listed = share_files(files, cap)
    said = {"attached": [{"filename": f["filename"], "size": f.get("size", 0)} for f in attached],
            "listed": [{"filename": f["filename"], "size": f.get("size", 0)} for f in listed],
            "cap_bytes": cap}
    return tuple({k: f[k] for k in ("sha256", "filename", "content_type")} for f in attached), said


class FollowUpBook:
    def __init__(self, conn: sa.Connection, settings: Settings, renderer: Renderer, now: datetime):
        self.conn = conn
        self.settings = settings
        self.renderer = renderer
        self.now = now
        self.pending: list[FollowUp] = []

    def add(self, follow_up: FollowUp) -> None:
        self.pending.append(follow_up)

    def finish(self) -> None:
        """The batch's forwards, written now: after the batch's commands have acted, so a
        ticket handed over in the same batch goes to its new assignee."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        ids = sorted({f.ticket_id for f in pending})
        contexts = ticket_contexts(self.conn, self.settings, ids)
        threads = first_message_ids(self.conn, ids)
        fallback = fallback_agent(self.settings)
        cap = self.settings.desk.forward_attachment_bytes
        mails, notices = [], []
        for f in pending:
            context = contexts.get(f.ticket_id)
            if context is None:
                continue
            agent = context["agent"] or ({"name": fallback.name, "email": fallback.email} if fallback else None)
            if agent is None or agent["email"].casefold() == f.sender.casefold():
                continue  # nobody to tell, or the assignee wrote it herself
            attachments, said = attachment_context(f.files, cap)
            context = {**context, "agent": agent, "text": f.text, "role": f.role, **said,
                       "sender": {"name": f.sender_name, "email": f.sender}}
            mail = render_mail(self.renderer, "ticket_update", self.settings.tickets.default_language, context,
                               (agent["email"],), f.ticket_id, in_reply_to=f.message_id, attachments=attachments)
            mails.append(replace(mail, references=tuple(r for r in (threads.get(f.ticket_id), f.message_id) if r)))
            notices.append((agent["email"], f.ticket_id, "follow_up", mail.subject))
        queue_mails(self.conn, self.settings, mails, self.now)
        notify_agents(self.conn, notices, self.now)
