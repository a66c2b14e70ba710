"""The alembic migrations and the sqlmodel tables describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from mailbridge.adapters.db import MIGRATIONS, SCHEMA_HEAD, Database


def test_migrations_match_the_models(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/schema.db")
    assert db.migrate()[0] is None
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []
    assert not db.pending_migrations()
    # bump SCHEMA_HEAD with every new migration
    assert ScriptDirectory(MIGRATIONS).get_current_head() == SCHEMA_HEAD
    assert db.migrate()[0] == db.migrate()[1]  # running init again is a no-op


def test_ticket_ids_are_never_handed_out_twice_on_sqlite(tmp_path):
    import sqlalchemy as sa

    db = Database(f"sqlite:///{tmp_path}/ids.db")
    db.migrate()
    with db.engine.begin() as connection:
        insert = sa.text("INSERT INTO ticket (subject, status, category, area, channel, language, flags, created_at,"
                         " updated_at) VALUES ('x', 'new', 'Egyéb', 'Egyéb', 'phone', 'hu', '', :t, :t)")
        first = connection.execute(insert, {"t": "2026-11-26 10:00:00"}).lastrowid
        connection.execute(sa.text("DELETE FROM ticket WHERE id = :id"), {"id": first})
        second = connection.execute(insert, {"t": "2026-11-26 10:01:00"}).lastrowid
    assert second == first + 1


def test_a_populated_database_of_an_early_version_migrates(tmp_path):
    """SQLite rebuilds a table to alter it: that must work while other rows point at it."""
    import sqlalchemy as sa
    from alembic import command

    db = Database(f"sqlite:///{tmp_path}/old.db")
    with db.engine.begin() as connection:
        command.upgrade(db._alembic(connection), "0002")
        connection.execute(sa.text(
            "INSERT INTO ticket (subject, status, category, area, channel, language, flags, created_at, updated_at)"
            " VALUES ('Számla', 'new', 'Egyéb', 'Egyéb', 'email', 'hu', '', '2026-01-05', '2026-01-05')"))
        connection.execute(sa.text(
            "INSERT INTO message (ticket_id, direction, kind, internal, message_id, sender, sender_name, to_addrs,"
            " cc_addrs, subject, text, new_text, html, \"references\", reason, raw_sha256, created_at)"
            " VALUES (1, 'in', 'customer', 0, '<a@example.hu>', '', '', '', '', 'Számla', 'szöveg', 'szöveg', '',"
            " '', '', '', '2026-01-05')"))
    assert db.migrate()[0] == "0002" and not db.pending_migrations()
    with db.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT ticket_id FROM message")).scalar() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
