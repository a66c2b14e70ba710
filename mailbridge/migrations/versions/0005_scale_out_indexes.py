"""indexes for a large database, several hosts (#7)

Open tickets by ID (the queue `tickets list --status open` reads), the
assignee with the time of the last assignment (the assigner asks per agent),
acknowledgements per address (the loop guard counts them per intake), and on
PostgreSQL full-text indexes for `tickets search`, with the Hungarian
dictionary where the server has it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

from mailbridge.adapters.db import MESSAGE_SEARCH_VECTOR, TICKET_SEARCH_VECTOR, text_search_config

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

OPEN = "status IN ('new', 'acknowledged', 'in_progress', 'escalated')"  # as in models.OPEN_SQL, frozen here


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # On SQLite the table is rebuilt with AUTOINCREMENT, which 0003's rebuild lost: without it
    # the ID of the newest ticket, once deleted, would be handed out again.
    with op.batch_alter_table('ticket', schema=None, recreate="always" if sqlite else "auto",
                              table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_index('ix_ticket_assignee')
        batch_op.create_index('ix_ticket_assignee_assigned', ['assignee', 'assigned_at'], unique=False)
        batch_op.create_index('ix_ticket_open', ['id'], unique=False,
                              sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_recipients_created', ['recipients', 'created_at'], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        config = text_search_config(bind)
        op.execute(f"CREATE INDEX ix_message_search ON message USING gin ({MESSAGE_SEARCH_VECTOR.format(config=config)})")
        op.execute(f"CREATE INDEX ix_ticket_search ON ticket USING gin ({TICKET_SEARCH_VECTOR.format(config=config)})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_ticket_search")
        op.execute("DROP INDEX ix_message_search")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_recipients_created')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_open')
        batch_op.drop_index('ix_ticket_assignee_assigned')
        batch_op.create_index('ix_ticket_assignee', ['assignee'], unique=False)
