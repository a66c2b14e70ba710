"""What an agent does to a ticket, by mail command or from the CLI: one function each.

Each writes its change, the journal event and the mail it causes in the
caller's transaction (the outbox rule: a change and its notice commit
together or not at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from mailbridge import journal
from mailbridge.adapters.db import in_chunks
from mailbridge.config import Settings
from mailbridge.journal import EventKind
from mailbridge.models import T_ATTACHMENT, T_MESSAGE, T_PARTICIPANT, T_REPORTER, T_TICKET
from mailbridge.outbox.context import first_message_id, ticket_attachments, ticket_context
from mailbridge.outbox.queue import notify_agent, notify_agents, queue_mail, render_mail
from mailbridge.outbox.render import Renderer



class Casework:
    def __init__(self, conn: sa.Connection, settings: Settings, renderer: Renderer, now: datetime):
        self.conn = conn
        self.settings = settings
        self.renderer = renderer
        self.now = now

    def event(self, ticket_id: int, kind: EventKind, by: str, detail: dict | None = None) -> None:
        journal.record(self.conn, ticket_id, kind, by, self.now, detail)

    def _update(self, ticket_id: int, **values: object) -> None:
        self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == ticket_id).values(updated_at=self.now, **values))

    def _customer(self, ticket_id: int) -> tuple[str, str] | None:
        """(address, language) of the reporter, if automatic mail may go there."""
        row = self.conn.execute(
            sa.select(T_REPORTER.c.email, T_REPORTER.c.undeliverable, T_TICKET.c.language)
            .join(T_TICKET, T_TICKET.c.reporter_id == T_REPORTER.c.id).where(T_TICKET.c.id == ticket_id)
        ).first()
        if row is None or not row.email or row.undeliverable:
            return None
        return row.email, row.language

    def relay(self, ticket_id: int, agent: str, text: str, files: tuple[dict, ...] = ()) -> bool:
        """An agent's reply reaches the customer from the support address, with its files.
        It tells the ticket ID as an acknowledgement would (`acknowledge.TELLS_THE_ID`): none is
        queued beside it, and the ticket counts as acknowledged once the server takes it."""
        customer = self._customer(ticket_id)
        if customer is None:
            self.event(ticket_id, EventKind.RELAY_IMPOSSIBLE, agent, {"reason": "no reachable reporter address"})
            return False
        context = ticket_context(self.conn, self.settings, ticket_id)
        agent_row = next((a for a in self.settings.agents if a.email == agent), None)
        context.update(text=text, agent={"name": agent_row.name if agent_row else agent, "email": agent})
        mail = render_mail(self.renderer, "agent_relay", customer[1], context, (customer[0],), ticket_id,
                           in_reply_to=first_message_id(self.conn, ticket_id), attachments=files)
        queue_mail(self.conn, self.settings, mail, self.now)
        self.event(ticket_id, EventKind.REPLY_RELAYED, agent, {"attachments": len(files)})
        return True

    def set_status(self, ticket_id: int, status: str, by: str) -> None:
        values: dict = {"status": status}
        if status == "resolved":
            values["resolved_at"] = self.now
        self._update(ticket_id, **values)
        self.event(ticket_id, EventKind.TICKET_STATUS, by, {"status": status})

    def set_field(self, ticket_id: int, field: str, value: str, by: str) -> None:
        self._update(ticket_id, **{field: value})
        self.event(ticket_id, EventKind(f"ticket.{field}"), by, {field: value})

    def assign(self, ticket_id: int, agent: str, by: str) -> None:
        self._update(ticket_id, assignee=agent, assigned_at=self.now)
        self.event(ticket_id, EventKind.TICKET_ASSIGNED, by, {"agent": agent})
        context = ticket_context(self.conn, self.settings, ticket_id)
        context.update(text=self._first_text(ticket_id))
        mail = render_mail(self.renderer, "agent_assigned", self.settings.tickets.default_language, context,
                           (agent,), ticket_id)
        queue_mail(self.conn, self.settings, mail, self.now)
        notify_agent(self.conn, agent, ticket_id, "assigned", mail.subject, self.now)

    def escalate(self, ticket_id: int, division: str, note: str, by: str) -> None:
        """P11: the division gets the case's history and files; the ticket waits on it."""
        row = next(d for d in self.settings.divisions if d.email == division)
        context = ticket_context(self.conn, self.settings, ticket_id)
        history = self.conn.execute(
            sa.select(T_MESSAGE.c.created_at, T_MESSAGE.c.direction, T_MESSAGE.c.sender, T_MESSAGE.c.new_text)
            .where(T_MESSAGE.c.ticket_id == ticket_id, T_MESSAGE.c.internal.is_(False))
            .order_by(T_MESSAGE.c.created_at, T_MESSAGE.c.id)
        ).all()
        context.update(division={"name": row.name, "email": row.email}, text=note,
                       history=[{"at": h.created_at, "direction": h.direction, "sender": h.sender, "text": h.new_text}
                                for h in history])
        mail = render_mail(self.renderer, "escalation", self.settings.tickets.default_language, context,
                           (row.email,), ticket_id, attachments=ticket_attachments(self.conn, ticket_id))
        queue_mail(self.conn, self.settings, mail, self.now)
        self._update(ticket_id, status="escalated")
        self.event(ticket_id, EventKind.TICKET_ESCALATED, by, {"division": row.name})

    def resolve(self, ticket_id: int, outcome: str, by: str) -> None:
        """P12: the customer is told the outcome; the ticket is resolved."""
        customer = self._customer(ticket_id)
        if customer is not None:
            context = ticket_context(self.conn, self.settings, ticket_id)
            context.update(text=outcome)
            mail = render_mail(self.renderer, "outcome", customer[1], context, (customer[0],), ticket_id,
                               in_reply_to=first_message_id(self.conn, ticket_id))
            queue_mail(self.conn, self.settings, mail, self.now)
        self._update(ticket_id, status="resolved", resolved_at=self.now)
        self.event(ticket_id, EventKind.TICKET_RESOLVED, by, {"told_customer": customer is not None})

    def tell_assignee(self, ticket_id: int, kind: str, text: str) -> None:
        self.tell_assignees([(ticket_id, kind, text)])

    def tell_assignees(self, notices: Sequence[tuple[int, str, str]]) -> None:
        """In-system notices (ticket, kind, text) to each ticket's assignee: one query, one insert."""
        ids = sorted({ticket_id for ticket_id, _, _ in notices})
        assignees: dict[int, str] = {}
        for part in in_chunks(ids):
            assignees.update(self.conn.execute(sa.select(T_TICKET.c.id, T_TICKET.c.assignee)
                                               .where(T_TICKET.c.id.in_(part), T_TICKET.c.assignee.is_not(None))).all())
        notify_agents(self.conn, [(assignees[t], t, kind, text) for t, kind, text in notices if assignees.get(t)], self.now)

    def _first_text(self, ticket_id: int) -> str:
        return self.conn.execute(
            sa.select(T_MESSAGE.c.new_text).where(T_MESSAGE.c.ticket_id == ticket_id, T_MESSAGE.c.direction == "in")
            .order_by(T_MESSAGE.c.id).limit(1)
        ).scalar() or ""


def merge_tickets(conn: sa.Connection, source: int, target: int, by: str, now: datetime) -> None:
    """`ticket merge`: the source's mails, files and people move to the target; the source
    closes and points there, so later mail to it follows (threading reads merged_into_id)."""
    conn.execute(sa.update(T_MESSAGE).where(T_MESSAGE.c.ticket_id == source).values(ticket_id=target))
    conn.execute(sa.update(T_ATTACHMENT).where(T_ATTACHMENT.c.ticket_id == source).values(ticket_id=target))
    known = set(conn.execute(sa.select(T_PARTICIPANT.c.email).where(T_PARTICIPANT.c.ticket_id == target)).scalars())
    for row in conn.execute(sa.select(T_PARTICIPANT).where(T_PARTICIPANT.c.ticket_id == source)).all():
        if row.email not in known:
            conn.execute(sa.insert(T_PARTICIPANT), {"ticket_id": target, "email": row.email, "role": "participant"})
    conn.execute(sa.delete(T_PARTICIPANT).where(T_PARTICIPANT.c.ticket_id == source))
    conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == source).values(status="closed", merged_into_id=target,
                                                                          updated_at=now))
    journal.record_all(conn, [journal.entry(source, EventKind.TICKET_MERGED_INTO, by, now, {"ticket": target}),
                              journal.entry(target, EventKind.TICKET_MERGED_FROM, by, now, {"ticket": source})])
