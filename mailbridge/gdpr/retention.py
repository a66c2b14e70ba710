"""The retention rules (GDPR Art. 5(1)(e)): what is old enough goes, daily.

`[retention]` in the config:

- ``closed_ticket_days`` (0 keeps them): a ticket ``closed`` and untouched
  (``updated_at``) for that many days is purged; a ``resolved`` one counts as
  closed once ``closed_ticket_days + tickets.reopen_days`` have passed (by
  then a reply no longer reopens it). Purging removes what identifies or
  describes people: message bodies, subjects, addresses and names, raw
  copies, attachments (the file too when no other attachment row or queued
  mail uses it), participants, notifications, the outbox rows, the people
  and reasons in its journal, and the reporter when no other ticket has
  them. The ticket row stays, closed, with subject ``(purged)`` and its
  category, area, channel, dates and message count, so statistics still add
  up; an event ``retention.purged`` (no personal data) says when. Message-IDs
  stay: they thread a late reply to the old ticket (as a follow-up) and find
  the server copies.
  A ticket with mail still waiting in quarantine or in the outbox is kept
  until that is done.
- ``raw_message_days`` (0 keeps them): raw copies older than that are
  dropped, except those of mail waiting in quarantine (a retry needs them).

Idempotent: a purged ticket is done until something new happens to it. On
SQLite the WAL is checkpointed afterwards so no deleted page lingers there
(``secure_delete`` is on). A dry run does everything in a transaction that
is rolled back, so what it lists is exactly what a real run would do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from mailbridge import journal
from mailbridge.adapters.db import Database, in_chunks
from mailbridge.adapters.files import AttachmentStore
from mailbridge.config import Settings
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.journal import EventKind
from mailbridge.logs import get_logger
from mailbridge.gdpr.erase import ErasureReport, finish_pending
from mailbridge.models import T_ATTACHMENT, T_EVENT, T_MESSAGE, T_NOTIFICATION, T_OUTBOX, T_ERASURE
from mailbridge.models import T_PARTICIPANT, T_QUARANTINE, T_RAW, T_REPORTER, T_TICKET


PURGED_SUBJECT = "(purged)"
PURGED_EVENT = EventKind.RETENTION_PURGED
PURGED_BY = "(purged)"

# Journal details that hold no one's personal data (an agent's address is the
# company's business, not a customer's); every other detail is emptied.
_CLEAN_DETAILS = frozenset({
    "ticket.created", "ticket.status", "ticket.category", "ticket.area", "ticket.assigned", "ticket.unassigned",
    "ticket.escalated", "ticket.resolved", "ticket.merged_into", "ticket.merged_from", "ticket.follow_up",
    "contact.logged", "reply.relayed", "note.added", "division.replied", "ack.by_hand", "quarantine.retried",
    PURGED_EVENT,
})


log = get_logger("mailbridge.retention")


@dataclass
class RetentionReport:
    dry_run: bool
    closed_ticket_days: int
    raw_message_days: int
    purged: list[str] = field(default_factory=list)  # ticket IDs
    held: list[str] = field(default_factory=list)  # old enough, but mail still waits (quarantine, outbox)
    raw_dropped: int = 0
    files_deleted: int = 0
    server_copies_deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.purged or self.raw_dropped or self.files_deleted)

    def describe(self) -> str:
        """What goes (dry run) or went: ticket IDs and counts, no personal data."""
        verb = "to purge" if self.dry_run else "purged"
        lines = ["retention (dry run: nothing changed)"] if self.dry_run else []
        if self.closed_ticket_days:
            lines.append(f"closed tickets {verb}: {', '.join(self.purged) or 'none'}")
            if self.held:
                lines.append(f"closed tickets kept while mail waits (quarantine, outbox): {', '.join(self.held)}")
        else:
            lines.append("closed tickets: kept (retention.closed_ticket_days = 0)")
        lines.append(f"raw copies {'to drop' if self.dry_run else 'dropped'}: {self.raw_dropped}"
                     + ("" if self.raw_message_days else " (retention.raw_message_days = 0)"))
        lines.append(f"attachment files {'to delete' if self.dry_run else 'deleted'}: {self.files_deleted}")
        if not self.dry_run:
            lines.append(f"server copies expunged: {self.server_copies_deleted}")
        return "\n".join(lines)


class _DryRun(Exception):
    """Rolls the dry run's transaction back."""


RETENTION = "retention"  # the key of retention's pending server-copy clean-ups


def apply_retention(db: Database, settings: Settings, now: datetime, dry_run: bool = False) -> RetentionReport:
    """Applies the [retention] rules as of `now`; with `dry_run` only reports."""
    rules = settings.retention
    now = now.astimezone(timezone.utc)
    report = RetentionReport(dry_run, rules.closed_ticket_days, rules.raw_message_days)
    store = AttachmentStore(settings.storage.path)
    try:
        with db.session() as session:
            conn = session.connection()
            freed_raw: set[int] = set()
            freed_files: set[str] = set()
            if rules.closed_ticket_days:
                due, held = _closed_tickets(conn, settings, now)
                prefix = settings.tickets.id_prefix
                report.held = [format_ticket_id(t, prefix) for t in held]
                staff = {"system", "cli", *settings.agent_addresses, *settings.division_addresses}
                copies = sorted(set(conn.execute(sa.select(T_MESSAGE.c.message_id).where(
                    T_MESSAGE.c.ticket_id.in_(due), T_MESSAGE.c.direction == "in",
                    T_MESSAGE.c.message_id != "")).scalars())) if due else []
                if copies and not dry_run:
                    # The server copies go too; written down like an erasure's, so an IMAP
                    # outage now is finished by the next run.
                    conn.execute(sa.insert(T_ERASURE), {
                        "pseudonym": RETENTION, "status": "pending", "server_copies": json.dumps(copies),
                        "files": "[]", "created_at": now})
                for ticket_id in due:
                    raw, files = _purge_ticket(conn, ticket_id, now, rules.closed_ticket_days, staff)
                    freed_raw |= raw
                    freed_files |= files
                    report.purged.append(format_ticket_id(ticket_id, prefix))
            if rules.raw_message_days:
                freed_raw |= _unlink_old_raw(conn, now - timedelta(days=rules.raw_message_days))
            report.raw_dropped = _delete_unreferenced_raw(conn, freed_raw)
            unused = sorted(sha for sha in freed_files if not _file_in_use(conn, sha))
            report.files_deleted = len(unused)
            if dry_run:
                raise _DryRun
            # Inside the write transaction: no intake can take the same file up again meanwhile.
            for sha256 in unused:
                store.delete(sha256)
    except _DryRun:
        return report
    cleanup = ErasureReport(RETENTION)
    finish_pending(db, settings, RETENTION, cleanup)
    report.server_copies_deleted = cleanup.server_copies_deleted
    if cleanup.pending:
        log.warning("retention.server_copies_pending", reason="; ".join(cleanup.problems)[:200])
    if report.changed:
        db.leave_no_copy()
    log.info("retention.applied", purged=len(report.purged), held=len(report.held), raw_dropped=report.raw_dropped,
             files_deleted=report.files_deleted)
    return report


def retention_job(db: Database, settings: Settings, now: datetime) -> RetentionReport:
    """The scheduler's daily run."""
    return apply_retention(db, settings, now)


# --- closed tickets ---------------------------------------------------------------------------


def _closed_tickets(conn: sa.Connection, settings: Settings, now: datetime) -> tuple[list[int], list[int]]:
    """(tickets to purge now, tickets old enough but with mail still waiting)."""
    days = settings.retention.closed_ticket_days
    closed_before = now - timedelta(days=days)
    resolved_before = now - timedelta(days=days + settings.tickets.reopen_days)
    purged_since = (
        sa.select(T_EVENT.c.id)
        .where(T_EVENT.c.ticket_id == T_TICKET.c.id, T_EVENT.c.type == PURGED_EVENT, T_EVENT.c.at >= T_TICKET.c.updated_at)
        .exists()
    )
    old = list(conn.execute(
        sa.select(T_TICKET.c.id).where(
            sa.or_(sa.and_(T_TICKET.c.status == "closed", T_TICKET.c.updated_at < closed_before),
                   sa.and_(T_TICKET.c.status == "resolved", T_TICKET.c.updated_at < resolved_before)),
            ~purged_since,
        ).order_by(T_TICKET.c.id).with_for_update(of=T_TICKET, skip_locked=True)  # another host purges the rest
    ).scalars())
    waiting: set[int] = set()
    for part in in_chunks(old):
        waiting.update(conn.execute(sa.select(T_OUTBOX.c.ticket_id).where(
            T_OUTBOX.c.ticket_id.in_(part), T_OUTBOX.c.status == "queued")).scalars())
        waiting.update(conn.execute(sa.select(T_QUARANTINE.c.ticket_id).where(
            T_QUARANTINE.c.ticket_id.in_(part), T_QUARANTINE.c.status == "waiting")).scalars())
        waiting.update(conn.execute(
            sa.select(T_MESSAGE.c.ticket_id).join(T_QUARANTINE, T_QUARANTINE.c.message_pk == T_MESSAGE.c.id)
            .where(T_MESSAGE.c.ticket_id.in_(part), T_QUARANTINE.c.status == "waiting")).scalars())
    return [t for t in old if t not in waiting], [t for t in old if t in waiting]


def _purge_ticket(conn: sa.Connection, ticket_id: int, now: datetime, days: int,
                  staff: set[str]) -> tuple[set[int], set[str]]:
    """Purges one ticket; returns (raw copies it let go, attachment files it let go)."""
    messages = conn.execute(sa.select(T_MESSAGE.c.id, T_MESSAGE.c.raw_id).where(T_MESSAGE.c.ticket_id == ticket_id)).all()
    message_ids = [m.id for m in messages]
    raw_ids = {m.raw_id for m in messages if m.raw_id is not None}

    of_ticket = [T_ATTACHMENT.c.ticket_id == ticket_id]
    for part in in_chunks(message_ids):
        of_ticket.append(T_ATTACHMENT.c.message_pk.in_(part))
    files = set(conn.execute(sa.select(T_ATTACHMENT.c.sha256).where(sa.or_(*of_ticket))).scalars())
    conn.execute(sa.delete(T_ATTACHMENT).where(sa.or_(*of_ticket)))

    conn.execute(sa.update(T_MESSAGE).where(T_MESSAGE.c.ticket_id == ticket_id).values(
        sender="", sender_name="", to_addrs="", cc_addrs="", subject="", text="", new_text="", html="",
        references="", reason="", raw_id=None))
    for table in (T_PARTICIPANT, T_NOTIFICATION, T_OUTBOX):
        conn.execute(sa.delete(table).where(table.c.ticket_id == ticket_id))
    conn.execute(sa.update(T_QUARANTINE).where(T_QUARANTINE.c.ticket_id == ticket_id).values(reason=PURGED_SUBJECT))

    for event in conn.execute(sa.select(T_EVENT.c.id, T_EVENT.c.type, T_EVENT.c.by, T_EVENT.c.detail)
                              .where(T_EVENT.c.ticket_id == ticket_id)).all():
        by = event.by if event.by in staff else PURGED_BY
        detail = event.detail if event.type in _CLEAN_DETAILS else "{}"
        if (by, detail) != (event.by, event.detail):
            conn.execute(sa.update(T_EVENT).where(T_EVENT.c.id == event.id).values(by=by, detail=detail))

    ticket = conn.execute(sa.select(T_TICKET.c.reporter_id, T_TICKET.c.status)
                          .where(T_TICKET.c.id == ticket_id)).one()
    conn.execute(sa.update(T_TICKET).where(T_TICKET.c.id == ticket_id).values(
        subject=PURGED_SUBJECT, reporter_id=None, status="closed"))  # updated_at stays: the dates are statistics
    if ticket.reporter_id is not None:
        still_used = conn.execute(sa.select(T_TICKET.c.id).where(T_TICKET.c.reporter_id == ticket.reporter_id)
                                  .limit(1)).first()
        if still_used is None:
            conn.execute(sa.delete(T_REPORTER).where(T_REPORTER.c.id == ticket.reporter_id))
    journal.record(conn, ticket_id, EventKind.RETENTION_PURGED, "system", now,
                   {"rule": "closed_ticket_days", "days": days, "was": ticket.status})
    return raw_ids, files


def _file_in_use(conn: sa.Connection, sha256: str) -> bool:
    if conn.execute(sa.select(T_ATTACHMENT.c.id).where(T_ATTACHMENT.c.sha256 == sha256).limit(1)).first():
        return True
    # Mail still to go out may carry the file (an agent's reply with it, an escalation).
    return conn.execute(sa.select(T_OUTBOX.c.id).where(T_OUTBOX.c.attachments.contains(sha256)).limit(1)).first() is not None


# --- raw copies -----------------------------------------------------------------------


def _unlink_old_raw(conn: sa.Connection, before: datetime) -> set[int]:
    """Messages let go of raw copies older than `before`; returns those copies."""
    waiting = (
        sa.select(T_MESSAGE.c.raw_id).join(T_QUARANTINE, T_QUARANTINE.c.message_pk == T_MESSAGE.c.id)
        .where(T_QUARANTINE.c.status == "waiting", T_MESSAGE.c.raw_id.is_not(None))
    )
    old = list(conn.execute(sa.select(T_RAW.c.id).where(T_RAW.c.created_at < before, T_RAW.c.id.not_in(waiting)))
               .scalars())
    for part in in_chunks(old):
        conn.execute(sa.update(T_MESSAGE).where(T_MESSAGE.c.raw_id.in_(part)).values(raw_id=None))
    return set(old)


def _delete_unreferenced_raw(conn: sa.Connection, candidates: Iterable[int]) -> int:
    """Deletes those of `candidates` no message refers to any more; returns how many."""
    candidates = sorted(candidates)
    deleted = 0
    for part in in_chunks(candidates):
        used = set(conn.execute(sa.select(T_MESSAGE.c.raw_id).where(T_MESSAGE.c.raw_id.in_(part))).scalars())
        gone = [r for r in part if r not in used]
        if gone:
            deleted += conn.execute(sa.delete(T_RAW).where(T_RAW.c.id.in_(gone))).rowcount
    return deleted
