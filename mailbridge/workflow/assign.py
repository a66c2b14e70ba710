"""A new ticket gets an agent, who is told by mail and in-system (P1, P2, P10).

The agents' loads are read once per batch of new tickets and kept current
as tickets are handed out, so intake does not count open tickets per mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

from mailbridge.config import Settings
from mailbridge import journal
from mailbridge.journal import EventKind
from mailbridge.models import T_TICKET
from mailbridge.vocabulary import OPEN_SQL
from mailbridge.outbox.context import first_message_files, first_message_ids, ticket_contexts
from mailbridge.outbox.queue import notify_agents, queue_mails, render_mail
from mailbridge.outbox.render import Renderer
from mailbridge.policy.assignment import AgentLoad, choose_agent
from mailbridge.workflow.followups import attachment_context



class AssignmentBook:
    def __init__(self, conn: sa.Connection, settings: Settings, renderer: Renderer):
        self.conn = conn
        self.settings = settings
        self.renderer = renderer
        self._open: dict[str, int] | None = None
        self._last: dict[str, datetime] = {}

    def _load(self) -> dict[str, int]:
        if self._open is None:
            rows = self.conn.execute(
                sa.select(T_TICKET.c.assignee, sa.func.count())
                .where(T_TICKET.c.assignee.is_not(None), sa.text(f"ticket.{OPEN_SQL}"))  # the partial index
                .group_by(T_TICKET.c.assignee)
            ).all()
            self._open = {r[0]: r[1] for r in rows}
            # One index lookup per agent (assignee, assigned_at), not a pass over every ticket ever assigned.
            for agent in self.settings.agents:
                last = self.conn.execute(sa.select(sa.func.max(T_TICKET.c.assigned_at))
                                         .where(T_TICKET.c.assignee == agent.email)).scalar()
                if last is not None:
                    self._last[agent.email] = _aware(last)
        return self._open

    def assign(self, ticket_id: int, area: str, now: datetime, customer_text: str = "", by: str = "system") -> str | None:
        """Chooses, records and tells the agent; returns the agent's address (None: nobody)."""
        return self.assign_many([(ticket_id, area, customer_text)], now, by).get(ticket_id)

    def assign_many(self, tickets: list[tuple[int, str, str]], now: datetime, by: str = "system",
                    given: Mapping[int, str] | None = None) -> dict[int, str | None]:
        """`assign` for a batch of new tickets ((id, area, customer text), …): the choices one by
        one, as loads change, and the writes one statement per table for the whole batch.
        `given`: tickets whose agent their opener chose (an agent's `#open` by mail)."""
        given = given or {}
        if not self.settings.agents or not tickets:
            return {}
        load = self._load()
        agents = {a.email: a for a in self.settings.agents}
        ids = [ticket_id for ticket_id, _, _ in tickets]
        contexts = ticket_contexts(self.conn, self.settings, ids)
        answering = first_message_ids(self.conn, ids)
        files = first_message_files(self.conn, ids)
        cap = self.settings.desk.forward_attachment_bytes
        language = self.settings.tickets.default_language
        chosen: dict[int, str | None] = {}
        events, mails = [], []
        for ticket_id, area, customer_text in tickets:
            loads = [AgentLoad(a.email, frozenset(a.areas), a.active, a.fallback, load.get(a.email, 0),
                               self._last.get(a.email)) for a in self.settings.agents]
            agent = chosen[ticket_id] = given.get(ticket_id) or choose_agent(area, loads)
            if agent is None:
                events.append(journal.entry(ticket_id, EventKind.TICKET_UNASSIGNED, by, now,
                                            {"reason": "no active agent covers the area"}))
                continue
            load[agent] = load.get(agent, 0) + 1
            self._last[agent] = now
            events.append(journal.entry(ticket_id, EventKind.TICKET_ASSIGNED, by, now, {"agent": agent}))
            context = contexts[ticket_id]
            # The first mail's files go along, as with a follow-up (within the cap; the rest listed).
            attachments, said = attachment_context(files.get(ticket_id, ()), cap)
            context.update(agent={"name": agents[agent].name, "email": agent}, text=customer_text, **said)
            mails.append(render_mail(self.renderer, "agent_assigned", language, context, (agent,), ticket_id,
                                     in_reply_to=answering.get(ticket_id, ""), attachments=attachments))
        given = [{"ticket": t, "agent": a} for t, a in chosen.items() if a is not None]
        if given:
            self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == sa.bindparam("ticket"))
                              .values(assignee=sa.bindparam("agent"), assigned_at=now), given)
        journal.record_all(self.conn, events)
        if mails:
            queue_mails(self.conn, self.settings, mails, now)
            notify_agents(self.conn, [(mail.to[0], mail.ticket_id, "assigned", mail.subject) for mail in mails], now)
        return chosen


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
