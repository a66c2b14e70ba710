"""The journal: what happened to a ticket (or to the system), by whom, and when.

One writer for every entrance and job, so each entry has the same shape: a
kind from `EventKind` (a typo is an error here, not a new kind in the
database), and its detail serialised as JSON by `json.dumps`, never by hand.
The rows go in the caller's transaction: a change and its entry commit
together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from mailbridge.models import T_EVENT



class EventKind(StrEnum):
    # a ticket's life
    TICKET_CREATED = "ticket.created"
    TICKET_STATUS = "ticket.status"
    TICKET_CATEGORY = "ticket.category"
    TICKET_AREA = "ticket.area"
    TICKET_ASSIGNED = "ticket.assigned"
    TICKET_UNASSIGNED = "ticket.unassigned"
    TICKET_ESCALATED = "ticket.escalated"
    TICKET_RESOLVED = "ticket.resolved"
    TICKET_REOPENED = "ticket.reopened"
    TICKET_FOLLOW_UP = "ticket.follow_up"
    TICKET_MERGED_INTO = "ticket.merged_into"
    TICKET_MERGED_FROM = "ticket.merged_from"
    TICKET_REPORTER_FROM = "ticket.reporter_from"  # From had no address: {"field": "reply-to" | "sender" | "return-path"}
    FORM_INCOMPLETE = "form.incomplete"
    # people acting on it
    REPLY_RELAYED = "reply.relayed"
    RELAY_IMPOSSIBLE = "relay.impossible"
    NOTE_ADDED = "note.added"
    COMMAND_FAILED = "command.failed"
    DIVISION_REPLIED = "division.replied"
    CONTACT_LOGGED = "contact.logged"
    # mail that came in
    MAIL_RECEIVED = "mail.received"
    MAIL_OUTSIDER = "mail.outsider"
    MAIL_FORGED_AGENT = "mail.forged_agent"
    MAIL_FORGED_DIVISION = "mail.forged_division"
    MAIL_QUARANTINED = "mail.quarantined"
    MAIL_SPAM = "mail.spam"
    MAIL_IGNORED = "mail.ignored"
    MAIL_AUTO_REPLY = "mail.auto_reply"
    MAIL_AUTOMATIC = "mail.automatic"
    MAIL_BOUNCE = "mail.bounce"
    MAIL_REFUSED = "mail.refused"  # a desk command from a non-agent or an unauthenticated agent address
    AGENT_REFUSED = "agent.refused"  # the agent was told her mail was refused (at most hourly: the claim)
    ATTACHMENT_REJECTED = "attachment.rejected"
    QUARANTINE_RETRIED = "quarantine.retried"
    QUARANTINE_RETRY_FAILED = "quarantine.retry_failed"
    # acknowledgement and deadline (P7)
    ACK_QUEUED = "ack.queued"
    ACK_HELD = "ack.held"
    ACK_RATE_LIMITED = "ack.rate_limited"
    ACK_BY_HAND = "ack.by_hand"
    ACK_BEFORE_GO_LIVE = "ack.before_go_live"  # received before tickets.acknowledge_since: none is due
    SLA_WARNING = "sla.warning"
    SLA_BREACHED = "sla.breached"
    # mail that went out: `<template>.sent`, and what became of the rest
    ACK_SENT = "ack.sent"
    AGENT_ASSIGNED_SENT = "agent_assigned.sent"
    AGENT_RELAY_SENT = "agent_relay.sent"
    ATTACHMENT_REJECTED_SENT = "attachment_rejected.sent"
    COMMAND_FAILED_SENT = "command_failed.sent"
    ESCALATION_SENT = "escalation.sent"
    OUTCOME_SENT = "outcome.sent"
    SLA_WARNING_SENT = "sla_warning.sent"
    OPS_ALARM_SENT = "ops_alarm.sent"
    TICKET_UPDATE_SENT = "ticket_update.sent"
    AGENT_REFUSED_SENT = "agent_refused.sent"
    OUTBOX_FAILED = "outbox.failed"
    # the desk's scheduled mail (system events): the claim that a day's digests, or a week's
    # report, were queued, so no second process or tick queues them again
    AGENT_DIGEST_QUEUED = "agent_digest.queued"
    SUPERVISOR_REPORT_QUEUED = "supervisor_report.queued"
    OUTBOX_BOUNCED = "outbox.bounced"
    # personal data
    ERASURE = "erasure"
    RETENTION_PURGED = "retention.purged"

    @classmethod
    def mail(cls, kind: str) -> EventKind:
        """A mail recorded as `kind` (spam, ignored, auto_reply, automatic, bounce, …)."""
        return cls(f"mail.{kind}")

    @classmethod
    def sent(cls, template: str) -> EventKind:
        return cls(f"{template}.sent")


def entry(ticket_id: int | None, kind: EventKind, by: str, at: datetime,
          detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One journal row, ready to insert (alone, or with others in one statement)."""
    return {"ticket_id": ticket_id, "type": EventKind(kind).value, "at": at, "by": by,
            "detail": json.dumps(dict(detail or {}), ensure_ascii=False)}


def record(conn: sa.Connection, ticket_id: int | None, kind: EventKind, by: str, at: datetime,
           detail: Mapping[str, Any] | None = None) -> None:
    conn.execute(sa.insert(T_EVENT), entry(ticket_id, kind, by, at, detail))


def record_all(conn: sa.Connection, entries: Iterable[dict[str, Any]]) -> None:
    """Entries made with `entry`, in one statement."""
    rows = list(entries)
    if rows:
        conn.execute(sa.insert(T_EVENT), rows)
