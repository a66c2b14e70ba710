"""Who gets a new ticket (P1, P2, P10). Pure.

Among the active agents who cover the ticket's area: the one with the fewest
open tickets; a tie goes to the one assigned least recently (never assigned
counts as longest ago), then to the earlier one in the config. Nobody covers
it: the fallback agent (the first active agent marked `fallback`), else none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

_NEVER = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class AgentLoad:
    email: str
    areas: frozenset[str]
    active: bool
    fallback: bool
    open_tickets: int
    last_assigned_at: datetime | None


def choose_agent(area: str, agents: list[AgentLoad]) -> str | None:
    covering = [a for a in agents if a.active and area in a.areas]
    if covering:
        order = {a.email: i for i, a in enumerate(agents)}
        best = min(covering, key=lambda a: (a.open_tickets, a.last_assigned_at or _NEVER, order[a.email]))
        return best.email
    for agent in agents:
        if agent.active and agent.fallback:
            return agent.email
    return None
