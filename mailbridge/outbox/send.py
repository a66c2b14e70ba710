"""The outbox sender: queued rows -> SMTP, with retries and back-off.

A message is claimed before it is sent and marked sent right after the
server took it: a crash in between sends it again, under the same
Message-ID, which is the one duplicate a reader can recognise; nothing
queued is ever lost, and several daemons never send the same row. A temporary failure waits 1, 2, 4 … minutes (at most
4 hours) before the next try; after `outbox.max_attempts`, or at once on a
permanent refusal (5xx), the message is `failed` and the assignee is told.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import encoders
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr

import sqlalchemy as sa

from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.adapters.smtp import PermanentSmtpError, SmtpConnection
from mailbridge.config import Settings
from mailbridge.errors import SmtpError
from mailbridge.logs import get_logger
from mailbridge.models import Event, Outbox, Reporter, Ticket
from mailbridge.outbox.queue import notify_agent

log = get_logger("mailbridge.outbox")

T_OUTBOX = Outbox.__table__
T_EVENT = Event.__table__
T_TICKET = Ticket.__table__
T_REPORTER = Reporter.__table__
BATCH = 100  # rows marked for a retry at once when the server cannot be reached
ROUND_LIMIT = 2000  # mails one round sends at most over one connection,
ROUND_SECONDS = 60.0  # and for at most this long: a backlog drains in a few rounds, not at 100 per 15 s
MAX_DELAY = timedelta(hours=4)
LEASE = timedelta(minutes=10)  # SQLite: how long a claimed row waits before a crashed send is retried


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unavailable: str = ""  # the SMTP server could not be reached this round: why


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 … minutes after the n-th failed try, never more than 4 hours."""
    return min(timedelta(minutes=2 ** max(0, attempts - 1)), MAX_DELAY)


def build_message(row: sa.Row, settings: Settings, now: datetime) -> bytes:
    """The wire form of an outbox row.

    Built with the compat32 classes on purpose: the newer email policy, when it
    folds a long non-ASCII Subject into several encoded words, drops the space
    between two of them ("hibás cégnév" arrives as "hibáscégnév").
    """
    charset = Charset("utf-8")
    charset.body_encoding = QP
    if row.body_html:
        body: Message = MIMEMultipart("alternative")
        body.attach(MIMEText(row.body_text, "plain", charset))
        body.attach(MIMEText(row.body_html, "html", charset))
    else:
        body = MIMEText(row.body_text, "plain", charset)
    files = json.loads(row.attachments or "[]")
    if files:
        store = AttachmentStore(settings.storage.path)
        message: Message = MIMEMultipart("mixed")
        message.attach(body)
        for item in files:
            maintype, _, subtype = (item.get("content_type") or "application/octet-stream").partition("/")
            try:
                data = store.get(item["sha256"])
            except OSError:  # erased or lost since it was queued: send the rest
                log.warning("outbox.attachment_missing", outbox=row.id)
                continue
            part = MIMEBase(maintype, subtype or "octet-stream")
            part.set_payload(data)
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", item["filename"]))
            message.attach(part)
    else:
        message = body
    message["From"] = formataddr((settings.smtp.from_name, settings.smtp.from_address), charset="utf-8")
    message["To"] = row.recipients
    message["Subject"] = Header(row.subject, "utf-8")
    message["Date"] = format_datetime(now)
    message["Message-ID"] = row.message_id
    for name, value in json.loads(row.headers or "{}").items():
        message[name] = value
    return message.as_bytes(policy=compat32.clone(linesep="\r\n"))


def deliver_due(db: Database, settings: Settings, now: datetime,
                connect: Callable[[], SmtpConnection] | None = None) -> SendReport:
    """Sends what is due, one claimed row at a time (see `_next_due`)."""
    report = SendReport()
    connect = connect or (lambda: SmtpConnection(settings.smtp))
    with db.transaction() as conn:
        if not conn.execute(_due(now).with_only_columns(T_OUTBOX.c.id).limit(1)).first():
            return report
    try:
        smtp = connect().__enter__()
    except SmtpError as exc:
        report.unavailable = str(exc)  # the caller logs it once per incident, not per round
        with db.transaction() as conn:
            for row in conn.execute(_due(now).limit(BATCH).with_for_update(skip_locked=True)).all():
                _record_failure(conn, settings, row, str(exc), now, permanent=False, report=report)
        return report
    try:
        started = time.monotonic()
        for _ in range(ROUND_LIMIT):
            if time.monotonic() - started > ROUND_SECONDS:
                break
            server_unwell = sent = False
            with _next_due(db, now) as (row, outcome):
                if row is None:
                    break
                recipients = [r.strip() for r in row.recipients.split(",") if r.strip()]
                try:
                    smtp.send(build_message(row, settings, now), settings.smtp.from_address, recipients)
                except SmtpError as exc:
                    permanent = isinstance(exc, PermanentSmtpError)
                    with outcome() as conn:
                        _record_failure(conn, settings, row, str(exc), now, permanent=permanent, report=report)
                    server_unwell = not permanent
                else:
                    with outcome() as conn:
                        _record_sent(conn, row, now)
                    sent = True
            if server_unwell:
                break  # the rest wait for the next round
            if sent:  # committed: now it counts
                report.sent += 1
                log.info("outbox.sent", outbox=row.id, template=row.template, ticket=row.ticket_id)
    finally:
        smtp.close()
    return report


@contextmanager
def _next_due(db: Database, now: datetime) -> Iterator[tuple[sa.Row | None, Callable[[], AbstractContextManager]]]:
    """The next due row, ours until its outcome is written; yields it and how to write that outcome.

    PostgreSQL (several hosts): the row stays locked (`FOR UPDATE SKIP LOCKED`)
    in a transaction that lasts until the server took the mail and the row
    says `sent`; other daemons skip it, and if this one dies mid-send its lock
    goes with its session, so only the message in hand may go out again, under
    the same Message-ID. SQLite (one host): no write lock is held across a
    send, which would stall intake; the row is leased instead, for another
    process on the host to skip and for a crashed send to be retried later.
    """
    if db.coordinated:
        with db.transaction() as conn:
            row = conn.execute(_due(now).limit(1).with_for_update(skip_locked=True)).first()
            yield row, lambda: nullcontext(conn)
        return
    with db.transaction() as conn:
        row = conn.execute(_due(now).limit(1)).first()
        if row is not None:
            conn.execute(sa.update(T_OUTBOX).where(T_OUTBOX.c.id == row.id).values(next_attempt_at=now + LEASE))
    yield row, db.transaction


def _due(now: datetime) -> sa.Select:
    return (sa.select(T_OUTBOX).where(T_OUTBOX.c.status == "queued", T_OUTBOX.c.next_attempt_at <= now)
            .order_by(T_OUTBOX.c.id))


def _record_sent(conn: sa.Connection, row: sa.Row, now: datetime) -> None:
    conn.execute(sa.update(T_OUTBOX).where(T_OUTBOX.c.id == row.id).values(
        status="sent", sent_at=now, attempts=row.attempts + 1, last_error=""))
    if row.ticket_id is not None:
        conn.execute(sa.insert(T_EVENT), {"ticket_id": row.ticket_id, "type": f"{row.template}.sent", "at": now,
                                          "by": "system", "detail": json.dumps({"outbox": row.id})})


def _record_failure(conn: sa.Connection, settings: Settings, row: sa.Row, error: str, now: datetime,
                    permanent: bool, report: SendReport) -> None:
    attempts = row.attempts + 1
    give_up = permanent or attempts >= settings.outbox.max_attempts
    values: dict = {"attempts": attempts, "last_error": error[:1000]}
    if give_up:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = now + backoff(attempts)
    conn.execute(sa.update(T_OUTBOX).where(T_OUTBOX.c.id == row.id).values(**values))
    if not give_up:
        report.retrying += 1
        return
    report.failed += 1
    log.warning("outbox.failed", outbox=row.id, template=row.template, ticket=row.ticket_id, attempts=attempts)
    if row.ticket_id is None:
        return
    conn.execute(sa.insert(T_EVENT), {"ticket_id": row.ticket_id, "type": "outbox.failed", "at": now,
                                      "by": "system", "detail": json.dumps({"outbox": row.id, "error": error[:300]})})
    ticket = conn.execute(sa.select(T_TICKET.c.assignee, T_TICKET.c.reporter_id)
                          .where(T_TICKET.c.id == row.ticket_id)).one()
    if permanent and ticket.reporter_id is not None:
        email = conn.execute(sa.select(T_REPORTER.c.email).where(T_REPORTER.c.id == ticket.reporter_id)).scalar()
        if email and email in row.recipients:
            conn.execute(sa.update(T_REPORTER).where(T_REPORTER.c.id == ticket.reporter_id).values(undeliverable=True))
    if ticket.assignee:
        notify_agent(conn, ticket.assignee, row.ticket_id, "outbox_failed",
                     f"Nem sikerült kézbesíteni: {row.subject} ({error[:200]})", now)
