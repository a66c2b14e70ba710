"""Alembic environment: the engine comes from mailbridge, not from an ini file."""

from alembic import context
from sqlmodel import SQLModel

import mailbridge.models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=True,  # SQLite alters tables by copy; PostgreSQL ignores it
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
