"""The outbox sender: queued rows -> SMTP, with retries and back-off.

A message is claimed before it is sent and marked sent right after the
server took it: a crash in between sends it again, under the same
Message-ID, which is the one duplicate a reader can recognise; nothing
queued is ever lost, and several daemons never send the same row. A temporary failure waits 1, 2, 4 … minutes (at most
4 hours) before the next try; after `outbox.max_attempts`, or at once on a
permanent refusal (5xx), the message is `failed` and the assignee is told.

A poisoned row (one that cannot be read, built or put on the wire: stored
headers that are no JSON, a line break in an address, anything a library
raises that is no answer of the server) costs a try like a temporary failure
and fails for good after its tries; the rest of the round goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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

from mailbridge import journal
from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge import metrics
from mailbridge.adapters.smtp import NeedsSmtputf8, PermanentSmtpError, SmtpConnection, address_for_server
from mailbridge.config import Settings
from mailbridge.errors import SmtpError, error_fields
from mailbridge.logs import get_logger
from mailbridge.journal import EventKind
from mailbridge.models import T_OUTBOX, T_REPORTER, T_TICKET
from mailbridge.outbox.queue import notify_agent

log = get_logger("mailbridge.outbox")

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
    acknowledged: int = 0  # tickets whose acknowledgement the server accepted this round (`on_accepted`)


@dataclass(frozen=True)
class UnreadableRow:
    """An outbox row whose stored values cannot be read back (bytes that are no UTF-8 in a
    text column): what its failure needs, so it fails like any poisoned row."""

    id: int
    attempts: int
    ticket_id: int | None
    error: str
    template: str = "(unreadable)"
    subject: str = "(unreadable)"
    recipients: str = ""


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 … minutes after the n-th failed try, never more than 4 hours."""
    return min(timedelta(minutes=2 ** max(0, attempts - 1)), MAX_DELAY)


def _real_now() -> datetime:
    return datetime.now(timezone.utc)


def build_message(row: sa.Row, settings: Settings, now: datetime, recipients: list[str] | None = None) -> bytes:
    """The wire form of an outbox row, addressed `To:` its `recipients` as the server takes
    them (`address_for_server`; the row's own when not given).

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
    to = ", ".join(recipients) if recipients is not None else row.recipients
    # An internationalised address goes as UTF-8 (RFC 6532; only ever with SMTPUTF8): as
    # surrogate-escaped bytes compat32 writes it unchanged, where a plain str would become
    # one encoded word around the whole address, which no client reads as an address.
    message["To"] = to if to.isascii() else to.encode("utf-8").decode("ascii", "surrogateescape")
    message["Subject"] = Header(row.subject, "utf-8")
    message["Date"] = format_datetime(now)
    message["Message-ID"] = row.message_id
    for name, value in json.loads(row.headers or "{}").items():
        message[name] = value
    return message.as_bytes(policy=compat32.clone(linesep="\r\n"))


# What the workflow does once the server took a row's mail: (conn, ticket_id, template, now) -> True
# when that acknowledged the ticket. Called in the transaction that marks the row sent.
OnAccepted = Callable[[sa.Connection, "int | None", str, datetime], bool]


def deliver_due(db: Database, settings: Settings, now: datetime,
                connect: Callable[[], SmtpConnection] | None = None,
                clock: Callable[[], datetime] = _real_now, on_accepted: OnAccepted | None = None) -> SendReport:
    """Sends what is due as of `now`, one claimed row at a time (see `_next_due`).

    `on_accepted` runs in the transaction that marks a row sent, so what the server's
    acceptance means for the ticket (acknowledged, SPEC) commits with it or not at all.

    A retry (and a lease) is timed from the earlier of `now` and the real clock:
    `tick --at` a year ahead with the server down must not park the mail for a
    year, since the daemon that sends it next runs on the real clock; a tick in
    the past makes the retry due at once, which costs nothing.
    """
    report = SendReport()
    connect = connect or (lambda: SmtpConnection(settings.smtp))
    retry_from = min(now, clock())
    with db.transaction() as conn:
        if not conn.execute(_due(now).with_only_columns(T_OUTBOX.c.id).limit(1)).first():
            return report
    try:
        smtp = connect().__enter__()
    except SmtpError as exc:
        report.unavailable = str(exc)  # the caller logs it once per incident, not per round
        with db.transaction() as conn:
            for row_id in conn.execute(_due(now).with_only_columns(T_OUTBOX.c.id).limit(BATCH)
                                       .with_for_update(skip_locked=True)).scalars().all():
                row = _claim(conn, sa.select(T_OUTBOX).where(T_OUTBOX.c.id == row_id))
                _record_failure(conn, settings, row, str(exc), retry_from, permanent=False, report=report)
        return report
    try:
        smtputf8 = smtp.offers_smtputf8()
        try:
            sender = address_for_server(settings.smtp.from_address, smtputf8)
        except PermanentSmtpError as exc:  # the config's fault, not the rows': they wait, no try spent
            report.unavailable = f"smtp.from_address: {exc}"
            return report
        started = time.monotonic()
        for _ in range(ROUND_LIMIT):
            if time.monotonic() - started > ROUND_SECONDS:
                break
            server_unwell = sent = told = False
            with _next_due(db, now, retry_from) as (row, outcome):
                if row is None:
                    break
                try:
                    if isinstance(row, UnreadableRow):
                        raise _Poisoned(row.error)
                    recipients = [address_for_server(r, smtputf8) for r in row.recipients.split(",") if r.strip()]
                    if not recipients:
                        raise PermanentSmtpError("smtp: the message has no recipient")
                    smtp.send(build_message(row, settings, now, recipients), sender, recipients)
                except SmtpError as exc:
                    permanent = isinstance(exc, PermanentSmtpError)
                    with outcome() as conn:
                        _record_failure(conn, settings, row, str(exc), retry_from, permanent=permanent, report=report,
                                        undeliverable=permanent and not isinstance(exc, NeedsSmtputf8))
                    server_unwell = not permanent
                except Exception as exc:  # noqa: BLE001 - a poisoned row fails alone; the round goes on
                    reason = str(exc) if isinstance(exc, _Poisoned) else _reason(exc)
                    if row.attempts == 0:  # one line per row, however many tries it gets
                        log.warning("outbox.poisoned", outbox=row.id, template=row.template, ticket=row.ticket_id,
                                    **error_fields(exc))
                    metrics.FAULTS.labels("outbox").inc()
                    with outcome() as conn:
                        _record_failure(conn, settings, row, reason, retry_from, permanent=False, report=report)
                else:
                    with outcome() as conn:
                        _record_sent(conn, row, now)
                        told = on_accepted is not None and on_accepted(conn, row.ticket_id, row.template, now)
                    sent = True
            if server_unwell:
                break  # the rest wait for the next round
            if sent:  # committed: now it counts
                report.sent += 1
                report.acknowledged += told
                log.info("outbox.sent", outbox=row.id, template=row.template, ticket=row.ticket_id)
    finally:
        smtp.close()
    return report


class _Poisoned(Exception):
    """A row found unreadable when it was claimed; its message is the reason to record."""


def _reason(exc: Exception) -> str:
    """Why a row could not be sent, for its `last_error` and the assignee (not for the log)."""
    text = " ".join(str(exc).split())
    return f"cannot build or send the message: {type(exc).__name__}" + (f": {text[:200]}" if text else "")


def _claim(conn: sa.Connection, query: sa.Select) -> sa.Row | UnreadableRow | None:
    """The first outbox row `query` finds; when its values cannot be read back, the few its failure needs."""
    try:
        return conn.execute(query).first()
    except sa.exc.OperationalError as exc:
        # SQLite: a text value that is no UTF-8 fails as it is decoded, in the client; the
        # transaction goes on. Anything else is the database's trouble, not the row's.
        if not _undecodable(exc):
            raise
    part = conn.execute(query.with_only_columns(T_OUTBOX.c.id, T_OUTBOX.c.attempts, T_OUTBOX.c.ticket_id)).one()
    return UnreadableRow(part.id, part.attempts, part.ticket_id, "the stored message cannot be read back "
                         "(a text column holds bytes that are no UTF-8)")


def _undecodable(exc: BaseException) -> bool:
    return "decode" in str(getattr(exc, "orig", exc)).lower()


@contextmanager
def _next_due(db: Database, now: datetime, retry_from: datetime
              ) -> Iterator[tuple[sa.Row | UnreadableRow | None, Callable[[], AbstractContextManager]]]:
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
            row = _claim(conn, _due(now).limit(1).with_for_update(skip_locked=True))
            yield row, lambda: nullcontext(conn)
        return
    with db.transaction() as conn:
        row = _claim(conn, _due(now).limit(1))
        if row is not None:
            conn.execute(sa.update(T_OUTBOX).where(T_OUTBOX.c.id == row.id).values(next_attempt_at=retry_from + LEASE))
    yield row, db.transaction


def _due(now: datetime) -> sa.Select:
    return (sa.select(T_OUTBOX).where(T_OUTBOX.c.status == "queued", T_OUTBOX.c.next_attempt_at <= now)
            .order_by(T_OUTBOX.c.id))


def _record_sent(conn: sa.Connection, row: sa.Row, now: datetime) -> None:
    conn.execute(sa.update(T_OUTBOX).where(T_OUTBOX.c.id == row.id).values(
        status="sent", sent_at=now, attempts=row.attempts + 1, last_error=""))
    if row.ticket_id is not None:
        journal.record(conn, row.ticket_id, EventKind.sent(row.template), "system", now, {"outbox": row.id})


def _record_failure(conn: sa.Connection, settings: Settings, row: sa.Row | UnreadableRow, error: str,
                    now: datetime, permanent: bool, report: SendReport, undeliverable: bool | None = None) -> None:
    """A failed try of `row` at `now` (for a retry: the earlier of the job's and the real clock).
    `undeliverable` (default: `permanent`): the recipient's address is at fault, not our server."""
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
    journal.record(conn, row.ticket_id, EventKind.OUTBOX_FAILED, "system", now,
                   {"outbox": row.id, "error": error[:300]})
    ticket = conn.execute(sa.select(T_TICKET.c.assignee, T_TICKET.c.reporter_id)
                          .where(T_TICKET.c.id == row.ticket_id)).first()
    if ticket is None:  # the row outlived its ticket: nobody to tell
        return
    if (permanent if undeliverable is None else undeliverable) and ticket.reporter_id is not None:
        email = conn.execute(sa.select(T_REPORTER.c.email).where(T_REPORTER.c.id == ticket.reporter_id)).scalar()
        if email and email in row.recipients:
            conn.execute(sa.update(T_REPORTER).where(T_REPORTER.c.id == ticket.reporter_id).values(undeliverable=True))
    if ticket.assignee:
        notify_agent(conn, ticket.assignee, row.ticket_id, "outbox_failed",
                     f"Nem sikerült kézbesíteni: {row.subject} ({error[:200]})", now)
