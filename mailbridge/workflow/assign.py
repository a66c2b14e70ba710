"""A new ticket gets an agent, who is told by mail and in-system (P1, P2, P10).

The agents' loads are read once per batch of new tickets and kept current
as tickets are handed out, so intake does not count open tickets per mail.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from mailbridge.config import Settings
from mailbridge.models import OPEN_SQL, Event, Ticket
from mailbridge.outbox.queue import first_message_id, notify_agent, queue_mail, render_mail, ticket_context
from mailbridge.outbox.render import Renderer
from mailbridge.policy.assignment import AgentLoad, choose_agent

T_TICKET = Ticket.__table__
T_EVENT = Event.__table__


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
        if not self.settings.agents:
            return None
        load = self._load()
        loads = [AgentLoad(a.email, frozenset(a.areas), a.active, a.fallback, load.get(a.email, 0), self._last.get(a.email))
                 for a in self.settings.agents]
        agent = choose_agent(area, loads)
        if agent is None:
            self.conn.execute(sa.insert(T_EVENT), {"ticket_id": ticket_id, "type": "ticket.unassigned", "at": now,
                                                   "by": by, "detail": '{"reason": "no active agent covers the area"}'})
            return None
        self.conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == ticket_id).values(assignee=agent, assigned_at=now))
        load[agent] = load.get(agent, 0) + 1
        self._last[agent] = now
        self.conn.execute(sa.insert(T_EVENT), {"ticket_id": ticket_id, "type": "ticket.assigned", "at": now, "by": by,
                                               "detail": f'{{"agent": "{agent}"}}'})
        context = ticket_context(self.conn, self.settings, ticket_id)
        context.update(text=customer_text)
        language = self.settings.tickets.default_language
        mail = render_mail(self.renderer, "agent_assigned", language, context, (agent,), ticket_id,
                           in_reply_to=first_message_id(self.conn, ticket_id))
        queue_mail(self.conn, self.settings, mail, now)
        notify_agent(self.conn, agent, ticket_id, "assigned", mail.subject, now)
        return agent


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
