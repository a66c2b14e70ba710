"""The store writes a batch in a handful of statements (issue 16), and ticket numbers stay
gapless and in the mails' order, on SQLite and when another host takes numbers meanwhile."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.message import EmailMessage
from datetime import datetime, timezone

import sqlalchemy as sa

from conftest import write_config
from factory import simple_mail
from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.config import load_settings
from mailbridge.intake.prepare import PrepareOptions, prepare_mail
from mailbridge.intake.store import StoreContext, store_batch
from mailbridge.mail import OutcomeKind, RawMail
from mailbridge.models import Attachment, Event, Message, Participant, RawMessage, Reporter, Ticket
from mailbridge.outbox.render import Renderer

AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Egyéb"], "fallback": True}]


def test_a_poll_of_two_hundred_mails_sends_a_handful_of_statements(mailbox, mailbridge_for):
    mails = [simple_mail(i) for i in range(180)]
    # replies in the same poll: to a mail of it (its ticket is not written yet), by another person
    mails += [simple_mail(1000 + i, sender=f"customer{i}@example.hu",
                          in_reply_to=message_from_bytes(mails[i])["Message-ID"]) for i in range(10)]
    mails += [simple_mail(2000 + i, sender=f"someone{i}@example.de", subject=f"Re: [CRX-{i + 1:06d}] kérdés")
              for i in range(10)]
    mailbox.deliver_many(mails)
    desk = mailbridge_for(mailbox, agents=AGENTS, imap={"batch_size": 200})
    result = desk("poll", "--once")
    polled = next(json.loads(line) for line in result.stderr.splitlines() if '"intake.polled"' in line)
    assert polled["new_ticket"] == 180 and polled["reply"] == 10 and polled["outsider"] == 10
    assert polled["statements"] <= 0.3 * len(mails)
    engine = sa.create_engine(f"sqlite:///{desk.config.parent}/mailbridge.db")
    with engine.connect() as db:
        # numbered 1.. in the mailbox's order, each with its first message, reporter and assignee
        rows = db.execute(sa.text(
            "SELECT t.id, m.subject, r.email, t.assignee FROM ticket t JOIN message m ON m.ticket_id = t.id"
            " AND m.direction = 'in' JOIN reporter r ON r.id = t.reporter_id WHERE m.id IN"
            " (SELECT min(id) FROM message WHERE direction = 'in' GROUP BY ticket_id) ORDER BY t.id")).all()
        assert [r.id for r in rows] == list(range(1, 181))
        assert all(r.subject.endswith(f"#{i}") and r.email == f"customer{i}@example.hu" and r.assignee
                   for i, r in enumerate(rows))
        # the same-poll replies are on their tickets, the outsiders' mails on the tickets they name
        replies = db.execute(sa.text(
            "SELECT sender, min(ticket_id), max(ticket_id), count(*) FROM message WHERE direction = 'in'"
            " AND sender LIKE 'customer%' GROUP BY sender HAVING count(*) > 1 ORDER BY min(ticket_id)")).all()
        assert replies == [(f"customer{i}@example.hu", i + 1, i + 1, 2) for i in range(10)]
        outsiders = db.execute(sa.text("SELECT sender, ticket_id, kind FROM message WHERE sender LIKE 'someone%'"
                                       " ORDER BY ticket_id")).all()
        assert outsiders == [(f"someone{i}@example.de", i + 1, "outsider") for i in range(10)]
        assert db.execute(sa.text("SELECT count(*) FROM intake_log WHERE state = 'moved'")).scalar() == 200
    engine.dispose()


def _desk_and_batch(url: str, config_path, raws: list[bytes], **sections):  # type: ignore[no-untyped-def]
    """A desk's settings, its migrated database at `url` and storage, and `raws` read as a batch."""
    config = write_config(config_path, {"host": "127.0.0.1", "port": 1, "username": "u", "password": "p"},
                          database={"url": url}, **sections)
    settings = load_settings(config)
    db = Database(url)
    db.migrate()
    files = AttachmentStore(settings.storage.path)
    files.ensure()
    options = PrepareOptions.from_settings(settings, settings.intake_mailboxes[0])
    return settings, db, files, [(RawMail("INBOX", 1, i + 1, raw), prepare_mail(raw, options))
                                 for i, raw in enumerate(raws)]


def test_ticket_numbers_another_host_takes_meanwhile_are_not_given_twice(postgres_server, tmp_path):
    url = postgres_server.create_database("mailbridge_numbers_taken")
    settings, db, files, batch = _desk_and_batch(url, tmp_path / "mailbridge.toml", [simple_mail(i) for i in range(5)])
    other = sa.create_engine(url)
    opened_elsewhere = []

    def another_host_opens_a_ticket(_conn, _cursor, statement, *_args):
        # Just before the batch takes the numbers it was given: another host opens ticket 1.
        if "pg_sequence_last_value" in statement and "generate_series" in statement and not opened_elsewhere:
            with other.begin() as conn:
                now = datetime.now(timezone.utc)
                opened_elsewhere.append(conn.execute(sa.text(
                    "INSERT INTO ticket (subject, status, category, area, channel, language, flags, created_at,"
                    " updated_at) VALUES ('by phone', 'new', 'Egyéb', 'Egyéb', 'phone', 'hu', '', :now, :now)"
                    " RETURNING id"), {"now": now}).scalar())

    sa.event.listen(db.engine, "before_cursor_execute", another_host_opens_a_ticket)
    ctx = StoreContext(settings, files, "default", datetime.now(timezone.utc),
                       Renderer(settings.outbox.templates_path, settings.policy.timezone))
    with db.session() as session:
        outcomes = store_batch(session, ctx, batch)
    assert opened_elsewhere == [1]
    assert [o.kind for o in outcomes] == [OutcomeKind.NEW_TICKET] * 5
    assert [o.ticket_id for o in outcomes] == [2, 3, 4, 5, 6]  # after the other host's, no gap
    with other.connect() as conn:
        subjects = conn.execute(sa.text("SELECT t.id, m.subject FROM ticket t LEFT JOIN message m"
                                        " ON m.ticket_id = t.id ORDER BY t.id")).all()
    assert subjects == [(1, None), *[(i + 2, p.mail.subject) for i, (_, p) in enumerate(batch)]]
    other.dispose()
    db.engine.dispose()


def _store_into(url: str, config_path, batch_of_raws: list[bytes], now: datetime) -> dict[str, list[tuple]]:
    """The batch stored through the real store into the database at `url`: each table's rows."""
    settings, db, files, batch = _desk_and_batch(url, config_path, batch_of_raws, agents=AGENTS)
    ctx = StoreContext(settings, files, "default", now, Renderer(settings.outbox.templates_path,
                                                                  settings.policy.timezone))
    with db.session() as session:
        assert all(o.kind == OutcomeKind.NEW_TICKET for o in store_batch(session, ctx, batch))
    tables = {Ticket: ["id", "subject", "status", "category", "area", "channel", "reporter_id", "assignee",
                       "language", "flags", "created_at", "ack_deadline"],
              Message: ["id", "ticket_id", "direction", "kind", "channel", "internal", "message_id", "sender",
                        "sender_name", "to_addrs", "cc_addrs", "subject", "text", "new_text", "html", "references",
                        "raw_id", "sent_at", "created_at"],
              Reporter: ["id", "email", "name", "undeliverable"], Participant: ["ticket_id", "email", "role"],
              RawMessage: ["id", "sha256", "size", "data"],
              Attachment: ["message_pk", "filename", "size", "sha256", "inline", "rejected"],
              Event: ["ticket_id", "type", "by", "at", "detail"]}
    found = {}
    with db.engine.connect() as conn:
        for model, columns in tables.items():
            table = model.__table__
            query = sa.select(*(table.c[c] for c in columns)).order_by(*(table.c[c] for c in columns[:3]))
            if model is Message:  # the mails' rows (the agents' notices carry a random Message-ID)
                query = query.where(table.c.direction == "in")
            found[table.name] = [tuple(row) for row in conn.execute(query)]
    db.engine.dispose()
    return found


def test_a_batch_is_stored_alike_on_sqlite_and_postgresql(postgres_server, tmp_path):
    # Enough mails that PostgreSQL takes each table's rows by COPY, whose text format must
    # carry tabs, backslashes, "\N", line breaks and non-ASCII names through unchanged.
    tricky = "Tab\there, back\\slash, \\N not NULL, \\\\ two, end of line\r\nnext line, ő ű ä 漢字"
    mails = [simple_mail(i, subject=f"Hiba #{i}: {tricky[:40]}", body=f"Kedves Ügyfélszolgálat!\n\n{tricky}\n{i}")
             for i in range(12)]
    message = EmailMessage()
    message["From"] = "Kovács \"Józsi\" \\ Tab <kovacs@example.hu>"
    message["To"] = "support@crossec.com"
    message["Cc"] = "masik@example.hu"
    message["Subject"] = "Csatolmány\tés \\N"
    message.set_content("Csatoltam.\n\\N\n\t")
    message.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="octet-stream",
                           filename="adat\\N\t.bin")
    mails.append(bytes(message))
    now = datetime.now(timezone.utc).replace(microsecond=678901)  # microseconds: both keep them whole
    (tmp_path / "lite").mkdir()
    (tmp_path / "pg").mkdir()
    on_sqlite = _store_into(f"sqlite:///{tmp_path}/lite/mailbridge.db", tmp_path / "lite" / "mailbridge.toml", mails, now)
    on_postgresql = _store_into(postgres_server.create_database("mailbridge_alike"), tmp_path / "pg" / "mailbridge.toml",
                                mails, now)
    assert len(on_sqlite["ticket"]) == 13 and len(on_sqlite["attachment"]) == 1
    assert any("\\N not NULL" in row[12] and "\t" in row[12] for row in on_sqlite["message"])
    for table, rows in on_sqlite.items():
        assert on_postgresql[table] == rows, table
