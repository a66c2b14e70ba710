"""`gdpr export EMAIL`: everything held about one person, as one ZIP (GDPR Art. 15).

The ZIP is written owner-only (0600) to a temporary file beside the target
and renamed into place, so a half-written export never carries the name.

Contents
--------
``person.json``
    The document below (UTF-8, keys always present, times ISO-8601 in UTC).
``attachments/<sha256>-<filename>``
    Each stored file of the person's messages (and the files we mailed them),
    once per SHA-256 and name.
``raw/<message-row-id>.eml``
    The raw copy of each message they sent, as received (decompressed).

``person.json``::

    {
      "format": "mailbridge-export/1",
      "exported_at": "2026-11-30T09:00:00+00:00",
      "subject": {"email": "anna@example.hu", "names": ["Kovács Anna"]},
      "tickets": [{
        "id": "CRX-000042", "subject": "...", "status": "closed", "category": "...", "area": "...",
        "channel": "email", "created_at": "...", "ack_deadline": "..." | null,
        "acknowledged_at": "..." | null, "resolved_at": "..." | null, "assignee": "agent@..." | null,
        "role": "reporter" | "participant" | "correspondent"
      }],
      "messages": [{
        "ticket": "CRX-000042" | null, "direction": "in" | "out", "kind": "customer", "channel": "email",
        "created_at": "...", "sender": "...", "to": ["..."], "cc": ["..."], "subject": "...",
        "text": "...", "html": "...",
        "attachments": [{"filename": "...", "size": 123, "sha256": "...", "path": "attachments/..." | null}],
        "raw": "raw/17.eml" | null
      }],
      "contacts": [{"ticket": "CRX-000042", "channel": "phone", "direction": "in" | "out",
                    "by": "agent@...", "at": "...", "note": "..."}],
      "events": [{"type": "ticket.status", "at": "...", "ticket": "CRX-000042"}]
    }

What counts as the person's (and what not, Art. 15(4): the rights of others):

- tickets: those they reported ("reporter"), were a participant of (To/Cc of
  the first mail: "participant"), or wrote to without being either
  ("correspondent": their mail is recorded on someone else's ticket);
- messages: those they sent (a web-form submission counts as sent by its
  reporter: the form server's address and our own are nobody's person), and
  our outgoing, non-internal mail addressed to them (To or Cc). Never another person's message on the same ticket, nor an internal
  note; logged contacts are listed under "contacts" instead;
- attachment "path" is null when the file was rejected or is no longer
  stored; "raw" is null when no raw copy is kept (retention, or not a mail);
- contacts: contacts logged by hand (``ticket log``) on tickets they
  reported or with them as the other party;
- events: the journal of the tickets they reported, and their own actions on
  other tickets: only type, time and ticket (who did it and the details can
  be other people's data).

A person we hold nothing about gets a valid export with empty lists.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.config import Settings
from mailbridge.errors import StorageError
from mailbridge.gdpr import person_address
from mailbridge.ticket_ids import format_ticket_id
from mailbridge.models import T_ATTACHMENT, T_EVENT, T_MESSAGE, T_OUTBOX, T_PARTICIPANT, T_RAW, T_REPORTER, T_TICKET

FORMAT = "mailbridge-export/1"


_ROLE_RANK = {"reporter": 0, "participant": 1, "correspondent": 2}


@dataclass(frozen=True)
class ExportReport:
    tickets: int
    messages: int
    attachments: int  # files in the ZIP
    raw_messages: int  # raw copies in the ZIP


def export_person(db: Database, settings: Settings, email: str, out: Path, now: datetime | None = None) -> ExportReport:
    """Writes the ZIP of everything held about `email` to `out` (0600, atomically)."""
    email = person_address(email)  # "" or "%" is nobody, never everybody
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    prefix = settings.tickets.id_prefix
    files = AttachmentStore(settings.storage.path)
    with db.session() as session:
        conn = session.connection()
        document, raws, wanted = _collect(conn, settings, email, prefix)
        raw_data = {message_pk: zlib.decompress(data) for message_pk, data in _raw_copies(conn, raws)}
    for message in document["messages"]:
        if message["raw"] is not None and int(Path(message["raw"]).stem) not in raw_data:
            message["raw"] = None
    blobs: dict[str, bytes] = {}
    for path, sha256 in wanted.items():
        try:
            blobs[path] = files.get(sha256)
        except OSError:
            pass  # erased or purged meanwhile: listed, but no longer held
    for message in document["messages"]:
        for entry in message["attachments"]:
            if entry["path"] is not None and entry["path"] not in blobs:
                entry["path"] = None
    document["exported_at"] = _iso(now)
    _write_zip(out, document, blobs, raw_data, now)
    return ExportReport(tickets=len(document["tickets"]), messages=len(document["messages"]),
                        attachments=len(blobs), raw_messages=len(raw_data))


# --- what is theirs -----------------------------------------------------------------


def _collect(conn: sa.Connection, settings: Settings, email: str, prefix: str) -> tuple[dict, dict[int, int], dict[str, str]]:
    """(person.json without exported_at, {message row: raw row}, {zip path: sha256})."""
    reporter_ids = list(conn.execute(sa.select(T_REPORTER.c.id).where(T_REPORTER.c.email == email)).scalars())
    names = [n for n in conn.execute(sa.select(T_REPORTER.c.name).where(T_REPORTER.c.email == email)).scalars() if n]

    roles: dict[int, str] = {}

    def take(ticket_ids, role: str) -> None:
        for ticket_id in ticket_ids:
            if ticket_id is not None and _ROLE_RANK[role] < _ROLE_RANK.get(roles.get(ticket_id, ""), 9):
                roles[ticket_id] = role

    if reporter_ids:
        take(conn.execute(sa.select(T_TICKET.c.id).where(T_TICKET.c.reporter_id.in_(reporter_ids))).scalars(), "reporter")
    take(conn.execute(sa.select(T_PARTICIPANT.c.ticket_id).where(T_PARTICIPANT.c.email == email)).scalars(), "participant")
    reported = {t for t, role in roles.items() if role == "reporter"}

    form_senders = {s.lower() for s in settings.forms.senders}
    machine = email in form_senders or email in settings.own_addresses
    messages = []
    theirs: set[int] = set()  # sent by them: their raw copies go into the ZIP
    for m in conn.execute(sa.select(T_MESSAGE).order_by(T_MESSAGE.c.created_at, T_MESSAGE.c.id).where(
        sa.or_(T_MESSAGE.c.sender == email,
               T_MESSAGE.c.to_addrs.contains(email, autoescape=True),
               T_MESSAGE.c.cc_addrs.contains(email, autoescape=True),
               sa.and_(T_MESSAGE.c.sender.in_(form_senders), T_MESSAGE.c.ticket_id.in_(sorted(reported))))
    )):
        if m.kind == "contact":
            continue  # a contact logged by hand: under "contacts"
        # What the web server or our own address sent is the reporter's or ours, not theirs.
        sent = (m.sender == email and not machine) or (
            m.sender in form_senders and m.direction == "in" and m.ticket_id in reported)
        addressed = m.direction == "out" and not m.internal and email in (*_addresses(m.to_addrs), *_addresses(m.cc_addrs))
        if sent or addressed:
            messages.append(m)
            if sent:
                theirs.add(m.id)
    take((m.ticket_id for m in messages if m.id in theirs and m.sender == email), "correspondent")
    for m in messages:
        if m.id in theirs and m.sender == email and m.sender_name and m.sender_name not in names:
            names.append(m.sender_name)

    ticket_rows = conn.execute(sa.select(T_TICKET).where(T_TICKET.c.id.in_(list(roles))).order_by(T_TICKET.c.id)).all()
    tickets = [_ticket(t, roles[t.id], prefix) for t in ticket_rows]

    attachments: dict[int, list] = {}
    message_ids = [m.id for m in messages]
    for a in conn.execute(sa.select(T_ATTACHMENT).where(T_ATTACHMENT.c.message_pk.in_(message_ids))
                          .order_by(T_ATTACHMENT.c.id)):
        attachments.setdefault(a.message_pk, []).append(
            {"filename": a.filename, "size": a.size, "sha256": a.sha256, "rejected": a.rejected})
    sent_files = _files_we_sent(conn, [m.message_id for m in messages if m.direction == "out" and m.message_id])

    wanted: dict[str, str] = {}
    raws: dict[int, int] = {}
    documented = []
    for m in messages:
        files = attachments.get(m.id, [])
        if m.direction == "out" and not files:
            files = sent_files.get(m.message_id, [])
        entries = []
        for f in files:
            path = None
            if not f.get("rejected"):
                path = f"attachments/{f['sha256']}-{_safe_name(f['filename'])}"
                wanted[path] = f["sha256"]
            entries.append({"filename": f["filename"], "size": f["size"], "sha256": f["sha256"], "path": path})
        raw = None
        if m.raw_id is not None and m.id in theirs:
            raws[m.id] = m.raw_id
            raw = f"raw/{m.id}.eml"
        documented.append({
            "ticket": _ref(m.ticket_id, prefix), "direction": m.direction, "kind": m.kind, "channel": m.channel,
            "created_at": _iso(m.created_at), "sender": m.sender, "to": _addresses(m.to_addrs),
            "cc": _addresses(m.cc_addrs), "subject": m.subject, "text": m.text, "html": m.html,
            "attachments": entries, "raw": raw,
        })

    contact_query = sa.select(T_MESSAGE).where(T_MESSAGE.c.kind == "contact", sa.or_(
        T_MESSAGE.c.ticket_id.in_(sorted(reported)), T_MESSAGE.c.to_addrs.contains(email, autoescape=True),
    )).order_by(T_MESSAGE.c.created_at, T_MESSAGE.c.id)
    contacts = [
        {"ticket": _ref(c.ticket_id, prefix), "channel": c.channel, "direction": c.direction, "by": c.sender,
         "at": _iso(c.created_at), "note": c.text}
        for c in conn.execute(contact_query)
        if c.ticket_id in reported or email in _addresses(c.to_addrs)
    ]

    concern = [T_EVENT.c.ticket_id.in_(sorted(reported))]
    if not machine:
        concern.append(T_EVENT.c.by == email)
    event_query = sa.select(T_EVENT.c.type, T_EVENT.c.at, T_EVENT.c.ticket_id).where(sa.or_(*concern)).order_by(
        T_EVENT.c.at, T_EVENT.c.id)
    events = [{"type": e.type, "at": _iso(e.at), "ticket": _ref(e.ticket_id, prefix)} for e in conn.execute(event_query)]

    document = {
        "format": FORMAT,
        "exported_at": None,
        "subject": {"email": email, "names": names},
        "tickets": tickets,
        "messages": documented,
        "contacts": contacts,
        "events": events,
    }
    return document, raws, wanted


def _files_we_sent(conn: sa.Connection, message_ids: list[str]) -> dict[str, list[dict]]:
    """Files attached to our outgoing mail (an agent's reply relayed with its files)."""
    found: dict[str, list[dict]] = {}
    if not message_ids:
        return found
    sizes: dict[str, int] = {}
    for row in conn.execute(sa.select(T_OUTBOX.c.message_id, T_OUTBOX.c.attachments)
                            .where(T_OUTBOX.c.message_id.in_(message_ids))):
        files = json.loads(row.attachments or "[]")
        for f in files:
            if f["sha256"] not in sizes:
                sizes[f["sha256"]] = conn.execute(sa.select(T_ATTACHMENT.c.size).where(
                    T_ATTACHMENT.c.sha256 == f["sha256"]).limit(1)).scalar() or 0
        found[row.message_id] = [{"filename": f["filename"], "size": sizes[f["sha256"]], "sha256": f["sha256"]}
                                 for f in files]
    return found


def _raw_copies(conn: sa.Connection, raws: dict[int, int]):
    if not raws:
        return
    data = dict(conn.execute(sa.select(T_RAW.c.id, T_RAW.c.data).where(T_RAW.c.id.in_(set(raws.values())))).all())
    for message_pk, raw_id in raws.items():
        if raw_id in data:
            yield message_pk, data[raw_id]


def _ticket(t, role: str, prefix: str) -> dict:
    return {
        "id": format_ticket_id(t.id, prefix), "subject": t.subject, "status": t.status, "category": t.category,
        "area": t.area, "channel": t.channel, "created_at": _iso(t.created_at), "ack_deadline": _iso(t.ack_deadline),
        "acknowledged_at": _iso(t.acknowledged_at), "resolved_at": _iso(t.resolved_at), "assignee": t.assignee,
        "role": role,
    }


# --- the file -------------------------------------------------------------------------


def _write_zip(out: Path, document: dict, blobs: dict[str, bytes], raws: dict[int, bytes], now: datetime) -> None:
    out = Path(out)
    folder = out.parent if str(out.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".part")  # 0600 from the start
    except OSError as exc:
        raise StorageError(f"{out}: cannot write the export: {exc.strerror}") from None
    stamp = now.timetuple()[:6]
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                def put(name: str, data: bytes) -> None:
                    info = zipfile.ZipInfo(name, date_time=stamp)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o600 << 16
                    archive.writestr(info, data)

                put("person.json", json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8") + b"\n")
                for path in sorted(blobs):
                    put(path, blobs[path])
                for message_pk in sorted(raws):
                    put(f"raw/{message_pk}.eml", raws[message_pk])
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, out)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise StorageError(f"{out}: cannot write the export: {exc.strerror}") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# --- small helpers ----------------------------------------------------------------------------


def _addresses(joined: str) -> list[str]:
    return [a.strip().lower() for a in joined.split(",") if a.strip()]


def _ref(ticket_id: int | None, prefix: str) -> str | None:
    return format_ticket_id(ticket_id, prefix) if ticket_id is not None else None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands times back naive; they were written in UTC.
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).isoformat()


def _safe_name(filename: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\:]", "_", filename).strip().lstrip(".") or "file"
    return name[:150]
