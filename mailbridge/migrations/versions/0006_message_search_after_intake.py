"""message search vectors made after intake (#16)

On PostgreSQL a message's full-text vector moves from an index on an expression,
which every INSERT computed inside intake's batch, to `message.search`, which
`index_messages` fills after intake; `tickets search` reads the messages that
have none yet directly. A trigger clears the vector when a message's subject or
text change (an erasure), so no word of the old text stays searchable. The
vectors of the messages already held are made here, once. SQLite: nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""
from alembic import op

from mailbridge.adapters.db import MESSAGE_SEARCH_VECTOR, text_search_config

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    vector = MESSAGE_SEARCH_VECTOR.format(config=text_search_config(bind))
    op.execute("ALTER TABLE message ADD COLUMN search tsvector")
    op.execute(f"UPDATE message SET search = {vector}")
    op.execute("DROP INDEX ix_message_search")
    op.execute("CREATE INDEX ix_message_search ON message USING gin (search)")
    # The messages search reads directly: few, found through this instead of the whole table.
    op.execute("CREATE INDEX ix_message_unindexed_search ON message (id) WHERE search IS NULL")
    op.execute("""
        CREATE FUNCTION mailbridge_message_search_stale() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.search := NULL;
            RETURN NEW;
        END $$""")
    op.execute("""
        CREATE TRIGGER message_search_stale BEFORE UPDATE OF subject, text ON message FOR EACH ROW
        WHEN (OLD.subject IS DISTINCT FROM NEW.subject OR OLD.text IS DISTINCT FROM NEW.text)
        EXECUTE FUNCTION mailbridge_message_search_stale()""")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER message_search_stale ON message")
    op.execute("DROP FUNCTION mailbridge_message_search_stale()")
    op.execute("DROP INDEX ix_message_unindexed_search")
    op.execute("DROP INDEX ix_message_search")
    op.execute("ALTER TABLE message DROP COLUMN search")
    vector = MESSAGE_SEARCH_VECTOR.format(config=text_search_config(bind))
    op.execute(f"CREATE INDEX ix_message_search ON message USING gin ({vector})")
