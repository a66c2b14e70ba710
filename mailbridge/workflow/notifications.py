"""Agents' in-system notices (P1, P2): listed, and marked read, from any entrance."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from mailbridge.models import T_NOTIFICATION
from mailbridge.ticket_ids import format_ticket_id



def read_notifications(conn: sa.Connection, prefix: str, now: datetime, agent: str | None = None,
                       include_read: bool = False, mark_read: bool = False) -> list[dict]:
    """An agent's (or everyone's) notices, oldest first; `mark_read` marks the listed ones read."""
    query = sa.select(T_NOTIFICATION).order_by(T_NOTIFICATION.c.id)
    if agent:
        query = query.where(T_NOTIFICATION.c.agent == agent)
    if not include_read:
        query = query.where(T_NOTIFICATION.c.read_at.is_(None))
    rows = conn.execute(query).all()
    if mark_read and rows:
        conn.execute(sa.update(T_NOTIFICATION).where(T_NOTIFICATION.c.id.in_([r.id for r in rows])).values(read_at=now))
    return [{"id": r.id, "agent": r.agent, "ticket": format_ticket_id(r.ticket_id, prefix) if r.ticket_id else None,
             "kind": r.kind, "text": r.text, "created_at": r.created_at.isoformat(),
             "read": bool(r.read_at) or mark_read} for r in rows]
