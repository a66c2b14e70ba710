"""The alembic migrations and the sqlmodel tables describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from mailbridge.adapters.db import Database


def test_migrations_match_the_models(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/schema.db")
    assert db.migrate()[0] is None
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []
    assert not db.pending_migrations()
    assert db.migrate()[0] == db.migrate()[1]  # running init again is a no-op
