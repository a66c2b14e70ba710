"""`mailbridge db copy`: move an installation's database to an empty PostgreSQL one (scale-out, #7).

Generic over `SQLModel.metadata`, so a table or column a later migration adds
is copied without a change here. The attachment files are not copied: rows
name them by SHA-256 inside `storage.path`, which every host shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

import mailbridge.models  # noqa: F401  (registers the tables)
from mailbridge.adapters.db import INDEX_MESSAGES_AT_ONCE, Database, _one_line, index_messages
from mailbridge.errors import StorageError, UsageError

# Rows per round trip. A table with blobs (the raw mails) goes in small chunks so
# that a multi-GB database never has to fit in memory.
CHUNK_ROWS = 2000
CHUNK_ROWS_WITH_BLOBS = 20

Progress = Callable[[str, int], None]


@dataclass
class CopyReport:
    target: str  # the URL with its password hidden
    rows: dict[str, int] = field(default_factory=dict)  # per table, in the order copied
    sequences: dict[str, int] = field(default_factory=dict)  # per table: the last ID handed out


def shown(url: str) -> str:
    """A database URL fit for a terminal or a log: never its password."""
    return sa.make_url(url).render_as_string(hide_password=True)


def copy_database(source: Database, target_url: str, progress: Progress | None = None) -> CopyReport:
    """Copies every table of `source` into the empty PostgreSQL database at `target_url`.

    One target transaction: on any failure nothing is committed and the target
    stays empty (its schema, brought up by the migrations, stays).
    """
    _check_target_url(source.url, target_url)
    target = Database(target_url)
    try:
        _refuse_rows(target)
        target.migrate()  # the same alembic schema as the source, which is at head
        report = CopyReport(shown(target_url))
        with source.engine.begin() as reading, target.engine.begin() as writing:
            # Naive times are UTC in mailbridge (SQLite keeps them without an offset).
            writing.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
            for table in SQLModel.metadata.sorted_tables:
                report.rows[table.name] = _copy_table(reading, writing, table)
                if progress:
                    progress(table.name, report.rows[table.name])
            _verify(reading, writing, report.rows)
            # Searchable at once, as on the source: the daemon's job would take a while for all of them.
            while index_messages(writing, limit=10 * INDEX_MESSAGES_AT_ONCE):
                pass
            # Last: a sequence moved by setval stays moved even if the transaction rolls back.
            report.sequences = _advance_sequences(reading, writing)
    except SQLAlchemyError as exc:
        raise StorageError(f"db copy: {_one_line(exc)}; nothing was committed to the target") from exc
    finally:
        target.engine.dispose()
    return report


def _check_target_url(source_url: str, target_url: str) -> None:
    try:
        target = sa.make_url(target_url)
    except sa.exc.ArgumentError:
        # Not echoed: a mistyped URL may still hold a password.
        raise UsageError("db copy: --to is not a database URL (e.g. postgresql+psycopg://USER@HOST/DB)") from None
    if target.get_backend_name() != "postgresql":
        raise UsageError(f"db copy: --to must be a PostgreSQL URL, not {target.get_backend_name()} "
                         "(e.g. postgresql+psycopg://USER@HOST/DB)")
    if _same_database(sa.make_url(source_url), target):
        raise UsageError("db copy: --to names the database in use (database.url); copy into another one")


def _same_database(a: sa.URL, b: sa.URL) -> bool:
    # The driver does not matter: postgresql:// and postgresql+psycopg:// reach the same database.
    def where(u: sa.URL) -> tuple:
        return u.get_backend_name(), (u.host or "localhost").lower(), u.port or 5432, u.database

    return where(a) == where(b)


def _refuse_rows(target: Database) -> None:
    """Only an empty target: copying on top of a live installation would mix two histories."""
    with target.engine.connect() as connection:
        present = set(sa.inspect(connection).get_table_names())
        held = {t.name: _count(connection, t) for t in SQLModel.metadata.sorted_tables if t.name in present}
    held = {name: n for name, n in held.items() if n}
    if held:
        what = ", ".join(f"{n} in {name}" for name, n in held.items())
        raise UsageError(f"db copy: the target database already holds rows ({what}); copy only into an empty database")


def _count(connection: sa.Connection, table: sa.Table) -> int:
    return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def _copy_table(reading: sa.Connection, writing: sa.Connection, table: sa.Table) -> int:
    # A ticket may point at a later one (merged into, linked to) and PostgreSQL checks
    # foreign keys at once: those columns go in empty and are filled in afterwards.
    later = [c for c in table.columns if any(fk.column.table is table for fk in c.foreign_keys)]
    copied = 0
    for chunk in _chunks(reading, table):
        writing.execute(sa.insert(table), [{**row, **{c.key: None for c in later}} for row in chunk])
        copied += len(chunk)
    if later:
        _fill_in(reading, writing, table, later)
    return copied


def _chunks(reading: sa.Connection, table: sa.Table) -> Iterator[list[dict]]:
    size = CHUNK_ROWS_WITH_BLOBS if any(isinstance(c.type, sa.LargeBinary) for c in table.columns) else CHUNK_ROWS
    query = sa.select(table).order_by(*table.primary_key.columns)
    result = reading.execution_options(yield_per=size).execute(query)
    for partition in result.partitions():
        yield [{c.key: value for c, value in zip(table.columns, row)} for row in partition]


def _fill_in(reading: sa.Connection, writing: sa.Connection, table: sa.Table, columns: list[sa.Column]) -> None:
    keys = list(table.primary_key.columns)
    query = (sa.select(*keys, *columns).where(sa.or_(*(c.isnot(None) for c in columns)))
             .order_by(*keys).execution_options(yield_per=CHUNK_ROWS))
    update = (sa.update(table).where(*(k == sa.bindparam(f"key_{k.key}") for k in keys))
              .values({c.key: sa.bindparam(f"value_{c.key}") for c in columns}))
    for partition in reading.execute(query).partitions():
        writing.execute(update, [
            {**{f"key_{k.key}": row[i] for i, k in enumerate(keys)},
             **{f"value_{c.key}": row[len(keys) + i] for i, c in enumerate(columns)}}
            for row in partition
        ])


def _verify(reading: sa.Connection, writing: sa.Connection, copied: dict[str, int]) -> None:
    differ = []
    for table in SQLModel.metadata.sorted_tables:
        here, there = _count(reading, table), _count(writing, table)
        if not here == there == copied[table.name]:
            differ.append(f"{table.name} {here} in the source, {there} in the target")
    if differ:
        raise StorageError(f"db copy: row counts differ ({'; '.join(differ)}); nothing was committed to the target")


def _advance_sequences(reading: sa.Connection, writing: sa.Connection) -> dict[str, int]:
    """Each ID sequence past every ID the source ever handed out, so none is handed out again.

    SQLite's AUTOINCREMENT remembers IDs of deleted rows in `sqlite_sequence`:
    the larger of that and the highest ID still present.
    """
    handed_out = _sqlite_sequence(reading)
    values = {}
    for table in SQLModel.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, sa.Integer):
            continue  # no ID sequence behind a composite or text key
        key = keys[0]
        quoted = writing.dialect.identifier_preparer.quote(table.name)
        sequence = writing.execute(sa.select(sa.func.pg_get_serial_sequence(quoted, key.name))).scalar()
        if sequence is None:
            continue
        last = max(writing.execute(sa.select(sa.func.max(key))).scalar() or 0, handed_out.get(table.name, 0))
        if last:  # an empty table's sequence starts at 1 as it is
            writing.execute(sa.select(sa.func.setval(sequence, last)))
            values[table.name] = last
    return values


def _sqlite_sequence(reading: sa.Connection) -> dict[str, int]:
    if reading.dialect.name != "sqlite" or not sa.inspect(reading).has_table("sqlite_sequence"):
        return {}
    return {name: seq for name, seq in reading.exec_driver_sql("SELECT name, seq FROM sqlite_sequence")}
