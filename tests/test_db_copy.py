"""`mailbridge db copy --to URL`: a SQLite installation moves to PostgreSQL whole (#7)."""

from __future__ import annotations

import json
import sqlite3
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from conftest import Mailbridge, write_config
from factory import simple_mail
from test_workflow import AGENTS, DIVISIONS

ANNA = "anna.kovacs@example.hu"


def mail_with_file(n: int, sender: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Kovács Anna <{sender}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<copy-{n}@example.hu>"
    message.set_content("A csatolt képernyőképen látszik a hiba.")
    message.add_attachment(b"%PDF-1.4 screenshot\n" * 40, maintype="application", subtype="pdf", filename="hiba.pdf")
    return bytes(message)


def open_phone(desk: Mailbridge, subject: str) -> dict:
    return json.loads(desk("ticket", "open", "--channel", "phone", "--name", "Tóth Ákos", "--category", "Egyéb",
                           "--area", "Egyéb", "--subject", subject, "--json").stdout)


def on_postgres(desk: Mailbridge, mailbox, smtp_sink, url: str) -> Mailbridge:
    """A second config of the same installation: the same storage folder, database.url on PostgreSQL."""
    storage = {"path": str(desk.config.parent / "storage"), "max_attachment_bytes": 100000}
    config = write_config(desk.config.parent / "postgres.toml", mailbox.imap_settings(), smtp_sink,
                          agents=AGENTS, divisions=DIVISIONS, database={"url": url}, storage=storage)
    return Mailbridge(config)


def two_phone_tickets(mailbox, mailbridge_for) -> Mailbridge:
    desk = mailbridge_for(mailbox)
    open_phone(desk, "Első")
    open_phone(desk, "Második")
    return desk


def on_sqlite(desk: Mailbridge, *statements: str) -> None:
    """Writes behind mailbridge's back: states the CLI cannot reach, but a real installation may hold."""
    with sqlite3.connect(desk.config.parent / "mailbridge.db") as db:
        for statement in statements:
            db.execute(statement)


def row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = sa.inspect(connection).get_table_names()
            return {name: connection.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
                    for name in names}
    finally:
        engine.dispose()


def test_a_populated_installation_reads_the_same_on_postgresql(mailbox, smtp_sink, mailbridge_for, postgres_server):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS)
    mailbox.deliver(mail_with_file(1, ANNA, "Export hiba"))
    mailbox.deliver(simple_mail(2, subject="Hibás számla"))
    mailbox.deliver(simple_mail(3, subject="Kérdés a sablonokról"))
    desk("poll", "--once")
    desk("tick")  # acknowledgements out: outbox rows marked sent
    mailbox.deliver(simple_mail(4, sender=ANNA, subject="Re: [CRX-000001] Export hiba", body="Még mindig hibás."))
    assert "1 reply" in desk("poll", "--once").stdout
    open_phone(desk, "Telefonos bejelentés")
    desk("ticket", "log", "CRX-000002", "--channel", "phone", "--direction", "out", "--by", "kiss.anna@crossec.com",
         "--note", "Visszahívtam, a számlát újraküldjük.")
    desk("ticket", "escalate", "CRX-000003", "Fejlesztés", "--note", "Kérem nézzétek meg.")
    # An older ticket merged into a newer one: its merged_into_id points forward.
    desk("ticket", "merge", "CRX-000001", "CRX-000002")
    desk("tick")
    on_sqlite = desk.tickets()
    shown_on_sqlite = {t["id"]: desk.ticket(t["id"]) for t in on_sqlite}
    sent = len(smtp_sink.messages)

    url = postgres_server.create_database("mailbridge_copy_full")
    out = desk("db", "copy", "--to", url).stdout
    assert "ticket: 4 rows" in out and "attachment: 1 rows" in out
    assert "ticket sequence: 4 (the next ticket is CRX-000005)" in out
    assert "verified: row counts equal in both databases" in out
    assert "database.url" in out and "storage.path" in out

    pg = on_postgres(desk, mailbox, smtp_sink, url)
    assert "up to date" in pg("init").stdout  # the copy carries the alembic revision
    assert pg.tickets() == on_sqlite
    assert {t["id"]: pg.ticket(t["id"]) for t in on_sqlite} == shown_on_sqlite
    assert shown_on_sqlite["CRX-000002"]["attachments"]  # merged in with Anna's mails
    pg("tick")
    assert len(smtp_sink.messages) == sent  # what was sent from SQLite is not sent again
    # merged_into_id came along (it is no part of the JSON): mail to the merged ticket follows it.
    mailbox.deliver(simple_mail(5, sender=ANNA, subject="Re: [CRX-000001] Export hiba", body="Újra próbáltam."))
    assert "1 reply" in pg("poll", "--once").stdout
    assert pg.ticket("CRX-000002")["message_count"] == shown_on_sqlite["CRX-000002"]["message_count"] + 1
    assert open_phone(pg, "Az első PostgreSQL-en")["id"] == "CRX-000005"


def test_an_id_handed_out_on_sqlite_is_never_handed_out_again(mailbox, mailbridge_for, postgres_server):
    desk = two_phone_tickets(mailbox, mailbridge_for)
    # As if tickets up to 41 had existed and been deleted: AUTOINCREMENT remembers them in
    # sqlite_sequence (written whole here: migration 0003 rebuilt `ticket` without AUTOINCREMENT).
    on_sqlite(desk, "DELETE FROM sqlite_sequence WHERE name = 'ticket'",
              "INSERT INTO sqlite_sequence (name, seq) VALUES ('ticket', 41)")
    url = postgres_server.create_database("mailbridge_copy_sequence")
    assert "ticket sequence: 41 (the next ticket is CRX-000042)" in desk("db", "copy", "--to", url).stdout
    pg = on_postgres(desk, mailbox, None, url)
    assert open_phone(pg, "Harmadik")["id"] == "CRX-000042"


def test_only_an_empty_target_and_never_a_password_on_screen(mailbox, mailbridge_for, postgres_server):
    desk = mailbridge_for(mailbox)
    open_phone(desk, "Első")
    plain = postgres_server.create_database("mailbridge_copy_busy")
    # The test cluster trusts every login, so any password connects; it must not be echoed.
    url = plain.replace("postgres@", "postgres:Titok-1234@")
    first = desk("db", "copy", "--to", url)
    assert "Titok-1234" not in first.stdout + first.stderr
    assert "postgres:***@" in first.stdout
    before = row_counts(plain)

    open_phone(desk, "Második")
    again = desk("db", "copy", "--to", url, check=False)
    assert again.returncode == 2
    assert again.stderr.strip() == ("mailbridge: db copy: the target database already holds rows (1 in reporter, "
                                    "1 in ticket, 2 in event, 1 in message); copy only into an empty database")
    assert "Titok-1234" not in again.stdout + again.stderr
    assert row_counts(plain) == before

    pg = on_postgres(desk, mailbox, None, plain)
    same = pg("db", "copy", "--to", url, check=False)
    assert same.returncode == 2 and "names the database in use" in same.stderr


@pytest.mark.parametrize(("url", "says"), [
    ("sqlite:////tmp/other.db", "--to must be a PostgreSQL URL, not sqlite"),
    ("not a url:secret", "--to is not a database URL"),
])
def test_a_target_that_is_not_postgresql_is_refused(mailbox, mailbridge_for, url, says):
    result = mailbridge_for(mailbox)("db", "copy", "--to", url, check=False)
    assert result.returncode == 2 and says in result.stderr
    assert "secret" not in result.stdout + result.stderr


def test_a_failed_copy_leaves_the_target_empty(mailbox, mailbridge_for, postgres_server):
    desk = two_phone_tickets(mailbox, mailbridge_for)
    # SQLite does not enforce VARCHAR lengths, PostgreSQL does: the second ticket cannot go in.
    on_sqlite(desk, "UPDATE ticket SET status = 'in_progress_for_a_long_time' WHERE id = 2")
    url = postgres_server.create_database("mailbridge_copy_failed")
    result = desk("db", "copy", "--to", url, check=False)
    assert result.returncode == 1
    # One line for the person; off a terminal the journal's JSON records (alembic's migration steps) may precede it.
    said = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(said) == 1 and said[0].startswith("mailbridge: db copy: ")
    assert "nothing was committed to the target" in said[0]
    assert {n for n in row_counts(url).values() if n} == {1}  # alembic_version alone: the schema, no rows
    on_sqlite(desk, "UPDATE ticket SET status = 'in_progress' WHERE id = 2")
    assert "verified" in desk("db", "copy", "--to", url).stdout  # and it can simply be run again
