"""The same `database.url` and migrations serve PostgreSQL (the first step of scaling out, #7)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from factory import simple_mail


def test_init_intake_workflow_and_erasure_on_postgresql(mailbox, smtp_sink, mailbridge_for, postgres_server):
    url = postgres_server.create_database("mailbridge_smoke")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url},
                          agents=[{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Egyéb"],
                                   "fallback": True}])
    assert "up to date" in desk("init").stdout  # a second init migrates nothing
    mailbox.deliver_many([simple_mail(i) for i in range(5)])
    assert "5 new_ticket" in desk("poll", "--once").stdout
    assert "5 acknowledged" in desk("tick").stdout
    assert len(smtp_sink.messages) == 10  # five acknowledgements and five notices to the agent
    desk("ticket", "open", "--channel", "phone", "--name", "Tóth Ákos", "--category", "Egyéb", "--area", "Egyéb",
         "--subject", "Telefonos bejelentés")
    tickets = desk.tickets()
    assert [t["id"] for t in tickets] == [f"CRX-00000{i}" for i in range(1, 7)]
    assert [t["id"] for t in json.loads(desk("tickets", "search", "számla", "--json").stdout)] == ["CRX-000001"]
    # Full-text with the Hungarian dictionary: another form of the word finds it too.
    assert [t["id"] for t in json.loads(desk("tickets", "search", "számlát", "--json").stdout)] == ["CRX-000001"]
    assert "erased as erased-" in desk("gdpr", "erase", "customer1@example.hu", "--yes").stdout
    assert len(desk.tickets()) == 6


def test_every_other_command_on_postgresql(mailbox, smtp_sink, mailbridge_for, postgres_server, tmp_path):
    import zipfile

    url = postgres_server.create_database("mailbridge_commands")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url}, retention={"closed_ticket_days": 30},
                          agents=[{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Egyéb"],
                                   "fallback": True}])
    mailbox.deliver_many([simple_mail(i) for i in range(3)] + [b"\xff\xfe not a mail at all"])
    desk("poll", "--once")
    desk("tick")
    assert "CRX-000001" in desk("tickets", "show", "CRX-000001").stdout
    desk("ticket", "assign", "CRX-000002", "kiss.anna@crossec.com")
    desk("ticket", "status", "CRX-000002", "in_progress")
    desk("ticket", "resolve", "CRX-000002", "--outcome", "A számlát javítottuk.")
    assert json.loads(desk("notifications", "--json").stdout)
    assert json.loads(desk("tickets", "list", "--status", "open", "--json").stdout)
    desk("quarantine", "list")
    desk("gdpr", "export", "customer0@example.hu", "--out", str(tmp_path / "export.zip"))
    assert zipfile.ZipFile(tmp_path / "export.zip").namelist()
    desk("ticket", "status", "CRX-000002", "closed")
    # Two months on (closed_ticket_days is 30), dated from today, when it was closed.
    later = datetime.now(timezone.utc) + timedelta(days=60)
    assert "CRX-000002" in desk("gdpr", "retention", "--at", later.isoformat()).stdout
    assert "ok   database" in desk("check", check=False).stdout


def test_migrations_match_the_models_on_postgresql(postgres_server):
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from mailbridge.adapters.db import Database

    db = Database(postgres_server.create_database("mailbridge_schema"))
    db.migrate()
    with db.engine.connect() as connection, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alembic warns about reflecting expression indexes
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        search = connection.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE indexname IN ('ix_message_search', 'ix_ticket_search',"
            " 'ix_message_unindexed_search')").all()
    # Full-text search lives in the migrations alone (its expression depends on the server's dictionaries):
    # the indexes, and the messages' vectors (message.search, made after intake).
    assert [d for d in diff if not (d[0] == "remove_index" and d[1].name.endswith("_search"))
            and not (d[0] == "remove_column" and d[2] == "message" and d[3].name == "search")] == []
    assert len(search) == 3
    db.engine.dispose()


def test_a_message_is_found_before_and_after_its_search_vector_is_made(mailbox, smtp_sink, mailbridge_for,
                                                                        postgres_server):
    import sqlalchemy as sa

    url = postgres_server.create_database("mailbridge_search_later")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url})
    mailbox.deliver_many([simple_mail(1, subject="Nyomtató", body="A nyomtatóm papírelakadást jelez.\n"),
                          simple_mail(2, subject="Jelszó", body="Nem tudok belépni a portálra.\n")])
    desk("poll", "--once")
    engine = sa.create_engine(url)

    def waiting() -> int:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SELECT count(*) FROM message WHERE search IS NULL").scalar()

    def found(words: str) -> list[str]:
        return [t["id"] for t in json.loads(desk("tickets", "search", words, "--json").stdout)]

    # Taken in, its vector not made yet (intake does not wait for it): found by reading it.
    assert waiting() == 2 and found("papírelakadást") == ["CRX-000001"] and found("portálra") == ["CRX-000002"]
    assert "4 messages indexed" in desk("tick").stdout  # and the two acknowledgements the tick queued first
    assert waiting() == 0 and found("papírelakadást") == ["CRX-000001"] and found("portál") == ["CRX-000002"]
    # A changed text (an erasure writes one) loses its vector at once: its old words are not found.
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE message SET text = 'Másik szöveg.' WHERE subject = 'Nyomtató'")
    assert waiting() == 1 and found("papírelakadást") == [] and found("szöveg") == ["CRX-000001"]
    assert "1 messages indexed" in desk("tick").stdout and found("szöveg") == ["CRX-000001"]
    engine.dispose()
