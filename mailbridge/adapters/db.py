"""The database edge: engine, transactions, migrations.

SQLite runs in WAL mode with `synchronous=FULL` (a commit is on disk before
the server copy of a mail moves) and every write transaction starts with
`BEGIN IMMEDIATE`, so two pollers serialise instead of failing on upgrade.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session

from mailbridge.errors import ConfigError, StorageError
from mailbridge.logs import get_logger

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")
SCHEMA_HEAD = "0006"  # the newest revision in migrations/versions
READ_ONLY = "mailbridge_read_only"  # an execution option: this connection's transactions only read
MIGRATION_LOCK = 0x6D61696C62726467  # "mailbrdg": the advisory lock `init` holds while it migrates

# PostgreSQL full-text search: the expressions the GIN indexes are built on, and
# which `tickets search` must repeat word for word for the planner to use them.
# A message's first 100,000 characters are searched: a tsvector has a 1 MB limit.
MESSAGE_SEARCH_VECTOR = "to_tsvector('{config}'::regconfig, left(message.subject || ' ' || message.text, 100000))"
TICKET_SEARCH_VECTOR = "to_tsvector('{config}'::regconfig, left(ticket.subject, 100000))"
# A message's vector is kept in message.search, made after intake by `index_messages`
# (the daemon, every few seconds; `tick`): reading a message's words costs the server
# about 0.1 ms, which an index on the expression made every intake pay inside its batch
# (PostgreSQL intake 0.70x SQLite's, 0.89x without). Until then `tickets search` reads
# the message itself; a change of its subject or text (an erasure) clears its vector.
INDEX_MESSAGES_AT_ONCE = 2000


_search_configs: dict[str, str] = {}  # per server: asked once per process, not per search


def text_search_config(connection: sa.Connection) -> str:
    """Hungarian stemming where the server has the dictionary (standard builds do), else `simple`."""
    server = connection.engine.url.render_as_string(hide_password=True)
    if server not in _search_configs:
        found = connection.execute(sa.text("SELECT 1 FROM pg_ts_config WHERE cfgname = 'hungarian'")).first()
        _search_configs[server] = "hungarian" if found else "simple"
    return _search_configs[server]


def index_messages(connection: sa.Connection, limit: int = INDEX_MESSAGES_AT_ONCE) -> int:
    """Makes the search vector of up to `limit` messages that have none yet, oldest first;
    returns how many (0 on SQLite, which searches by substring)."""
    if connection.dialect.name != "postgresql":
        return 0
    vector = MESSAGE_SEARCH_VECTOR.format(config=text_search_config(connection))
    return connection.execute(sa.text(
        f"UPDATE message SET search = {vector} WHERE id IN"
        " (SELECT id FROM message WHERE search IS NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)"),
        {"limit": limit}).rowcount


def _sqlite_file(url: sa.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def make_engine(url: str) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"database.url: not a database URL: {url!r}") from None
    if parsed.get_backend_name() == "sqlite":
        # No folder or file is made here: only `migrate` (mailbridge init) creates the database.
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's
            # implicit BEGIN is deferred and would fail on lock upgrade).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection):  # type: ignore[no-untyped-def]
            # A writer queues here for SQLite's one write lock. A command that only reads takes a
            # plain (deferred) BEGIN: in WAL mode it reads the last commit at once, beside a
            # writer, instead of waiting behind a poll's batch.
            read_only = connection.get_execution_options().get(READ_ONLY)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    try:
        # Named after host and process, so pg_stat_activity (and pg_locks) tell ops who polls what.
        name = f"mailbridge {socket.gethostname()} pid {os.getpid()}"[:63]
        connect_args = {"application_name": name, "keepalives_idle": 10, "keepalives_interval": 5,
                        "keepalives_count": 3}
        if "options" not in parsed.query:
            # A host that dies without closing its connections (power, network) would keep
            # its mailbox lock for the kernel's two-hour keepalive; the server probes sooner.
            # No JIT: our queries are short, and compiling one costs more (~30 ms) than it runs.
            connect_args["options"] = ("-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                                       "-c tcp_keepalives_count=3 -c jit=off")
        # A batch's rows go in by psycopg's pipelined executemany: one round trip, and faster here
        # than SQLAlchemy's multi-row VALUES (psycopg splits that long query text in Python).
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(f"database.url: no driver for {parsed.drivername!r}: {exc}") from None


# SQLite allows 32766 bound parameters in a statement; an IN list stays far below.
IN_CHUNK = 500


def in_chunks(values: Sequence, size: int = IN_CHUNK) -> Iterator[Sequence]:
    """`values` in slices small enough for one `IN (…)` on any database."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


_INSERT_STATEMENTS: dict[str, sa.Insert] = {}


def insert_statement(table: sa.Table) -> sa.Insert:
    """One INSERT per table, built once: rows go in as parameters (a statement built per
    row, with .values(), costs about 4x in compilation)."""
    if table.name not in _INSERT_STATEMENTS:
        _INSERT_STATEMENTS[table.name] = sa.insert(table)
    return _INSERT_STATEMENTS[table.name]


# Fewer rows than this go in by INSERT: a COPY costs a round trip of its own to start.
COPY_FROM_ROWS = 8


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Rows with the same columns into `table`. On PostgreSQL by COPY: an INSERT per row
    (psycopg's pipelined executemany) cost a statement each on both ends, and a multi-row
    VALUES more in psycopg's parsing of it. Elsewhere, or where a column the rows leave
    out has a default SQLAlchemy would fill in, one executemany."""
    columns = list(rows[0]) if rows else []
    if (conn.dialect.name != "postgresql" or len(rows) < COPY_FROM_ROWS
            or any(column.default is not None and column.name not in rows[0] for column in table.columns)):
        conn.execute(insert_statement(table), rows)
        return
    processors = [table.c[name].type._cached_bind_processor(conn.dialect) for name in columns]
    quote = conn.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in columns)}) FROM STDIN"
    cursor = conn.connection.driver_connection.cursor()
    conn.dispatch.before_cursor_execute(conn, cursor, statement, rows, None, True)  # counted as one statement
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([process(row[name]) if process else row[name] for name, process in zip(columns, processors)])


class KeysTaken(Exception):
    """Ticket numbers handed out ahead were taken by another writer meanwhile (PostgreSQL):
    the batch is written again from its start (nothing of it was kept)."""


class RowKeys:
    """Primary keys handed out before their rows are written, so a batch's rows can go in
    one statement per table and still refer to each other.

    SQLite: the next ID of each table is read once (every write transaction holds the
    write lock from its BEGIN IMMEDIATE, so nobody else takes it); they are the IDs SQLite
    would have given, AUTOINCREMENT's remembered ones included. `forget` after rows went in
    some other way.

    PostgreSQL: from the tables' sequences, as a column default takes them: messages',
    raw copies' and reporters' `BLOCK` at a time (a spare one is a number nobody sees),
    a quarantine entry's (ops see them, and there are few) one at a time. Ticket numbers
    are seen, and a spare one would be a gap: they are predicted from the sequence's last
    value and taken when their rows are written (`claim`), all in one statement and only
    if nobody took one meanwhile, else KeysTaken. With `predict` off, one `nextval` a ticket."""

    BLOCK = 100
    PREDICTED = "ticket"
    ONE_AT_A_TIME = frozenset({"ticket", "quarantine"})

    def __init__(self, conn: sa.Connection, tables: Sequence[sa.Table], predict: bool = True):
        self.conn = conn
        self.tables = [t.name for t in tables]
        self.sqlite = conn.dialect.name == "sqlite"
        self.predict = predict
        self._next: dict[str, int] = {}
        self._spare: dict[str, list[int]] = {}

    def next(self, table: sa.Table) -> int:
        name = table.name
        if self.sqlite or (name == self.PREDICTED and self.predict):
            if name not in self._next:
                self._read_next(name)
            key = self._next[name]
            self._next[name] = key + 1
            return key
        spare = self._spare.setdefault(name, [])
        if not spare:
            count = 1 if name in self.ONE_AT_A_TIME else self.BLOCK
            spare.extend(reversed(self.conn.execute(_NEXTVAL, {"table": name, "count": count}).scalars().all()))
        return spare.pop()

    def claim(self, table: sa.Table, keys: Sequence[int]) -> None:
        """Takes predicted keys from the sequence before their rows go in (PostgreSQL)."""
        if self.sqlite or table.name != self.PREDICTED or not self.predict or not keys:
            return
        taken = self.conn.execute(_CLAIM, {"table": table.name, "count": len(keys),
                                           "last": keys[0] - 1 if keys[0] > 1 else None}).scalars().all()
        if taken != list(keys):
            self._next.pop(table.name, None)
            raise KeysTaken(f"{table.name} IDs {keys[0]}-{keys[-1]} were taken meanwhile")

    def forget(self) -> None:
        """Rows went in without a key from here: read the next ones again when asked."""
        self._next.clear()

    def _read_next(self, name: str) -> None:
        if not self.sqlite:
            self._next[name] = (self.conn.execute(_LAST_VALUE, {"table": name}).scalar() or 0) + 1
            return
        # One statement for every table: the largest ID, and what AUTOINCREMENT remembers
        # (sqlite_sequence exists: the ticket table is AUTOINCREMENT).
        columns = ", ".join(f"(SELECT max(id) FROM {name}), (SELECT seq FROM sqlite_sequence WHERE name = '{name}')"
                            for name in self.tables)
        row = self.conn.execute(sa.text(f"SELECT {columns}")).one()
        for i, name in enumerate(self.tables):
            self._next[name] = max(row[2 * i] or 0, row[2 * i + 1] or 0) + 1


# The sequence a SERIAL column's default takes from, asked by name (PostgreSQL).
_NEXTVAL = sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)")
# Its last value (NULL before the first nextval), and the next :count values if that is still :last
# (checked once, before any is taken: a writer in between leaves no gap, one at that instant a small one).
_LAST_VALUE = sa.text("SELECT pg_sequence_last_value(pg_get_serial_sequence(:table, 'id')::regclass)")
_CLAIM = sa.text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count) "
    "WHERE (SELECT pg_sequence_last_value(pg_get_serial_sequence(:table, 'id')::regclass)) "
    "IS NOT DISTINCT FROM CAST(:last AS bigint)")


def coordinated(engine: sa.Engine) -> bool:
    """Several hosts may share this database (PostgreSQL): claim rows and locks before acting."""
    return engine.dialect.name == "postgresql"


def claim_in_transaction(conn: sa.Connection, name: str) -> bool:
    """A claim on `name` until the transaction ends, never waiting: False when another process
    holds it now (PostgreSQL, a transaction advisory lock). On SQLite every write transaction
    begins IMMEDIATE, which already serialises processes: always granted."""
    if not coordinated(conn.engine):
        return True
    key = int.from_bytes(hashlib.sha256(f"mailbridge claim {name}".encode()).digest()[:8], "big", signed=True)
    return bool(conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}).scalar())


class PollerLock:
    """One poller per mailbox across every host: a PostgreSQL session advisory lock.

    Held on a connection of its own for as long as the loop polls; when the
    holder dies its session ends and the lock is free at once, so a standby
    process takes over at its next try. SQLite is one host, where `BEGIN
    IMMEDIATE` already serialises pollers: there the lock is always granted.
    """

    def __init__(self, engine: sa.Engine, name: str):
        self.engine = engine
        self.name = name
        # Advisory locks take a bigint: the first 8 bytes of a hash of the mailbox's identity.
        self.key = int.from_bytes(hashlib.sha256(f"mailbridge intake {name}".encode()).digest()[:8], "big", signed=True)
        self.connection: sa.Connection | None = None

    @property
    def coordinated(self) -> bool:
        return coordinated(self.engine)

    def acquire(self) -> bool:
        """True when this process may poll the mailbox now; never waits."""
        if not self.coordinated:
            return True
        if self.connection is not None:
            return self.held()
        try:
            connection = self.engine.connect()
            granted = connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
            connection.commit()  # the lock is the session's, not the transaction's
        except SQLAlchemyError as exc:
            raise StorageError(f"database: {_one_line(exc)}") from exc
        if granted:
            self.connection = connection
        else:
            connection.close()
        return bool(granted)

    def held(self) -> bool:
        """Still ours? False when the lock's connection is gone (the server restarted, the network broke)."""
        if not self.coordinated:
            return True
        if self.connection is None:
            return False
        try:
            self.connection.execute(sa.text("SELECT 1")).scalar()
            self.connection.commit()
            return True
        except SQLAlchemyError:
            self.release()
            return False

    def holder(self) -> str | None:
        """Who polls the mailbox now (the holder's application_name), for `check`; None: nobody, or SQLite."""
        if not self.coordinated:
            return None
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF  # pg_locks splits a bigint key into two oids
        with self.engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid)"),
                {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}).scalar()

    def release(self) -> None:
        if self.connection is None:
            return
        try:
            self.connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self.connection.commit()
        except SQLAlchemyError:
            pass  # the session is gone, and the lock with it
        finally:
            self.connection.invalidate()  # never back to the pool holding a lock
            self.connection.close()
            self.connection = None


class Database:
    """A thin holder of the engine; sessions are short and explicit."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        # The same pool, for transactions that only read (see make_engine's BEGIN).
        self.reader = self.engine.execution_options(**{READ_ONLY: True})
        # Statements sent to the database so far (an executemany counts once): the poll logs it.
        self.statements = 0
        event.listen(self.engine, "before_cursor_execute", self._count)

    def _count(self, *_args: object) -> None:
        self.statements += 1

    def poller_lock(self, identity: str) -> PollerLock:
        return PollerLock(self.engine, identity)

    @property
    def coordinated(self) -> bool:
        return coordinated(self.engine)

    @contextmanager
    def session(self, read_only: bool = False) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on any error. `read_only`: it only
        reads, does not wait for SQLite's write lock, and keeps nothing (rolled back)."""
        with Session(self.reader if read_only else self.engine, expire_on_commit=False) as session:
            try:
                yield session
                if read_only:
                    session.rollback()
                else:
                    session.commit()
            except OperationalError as exc:
                session.rollback()
                raise StorageError(f"database: {_one_line(exc)}") from exc
            except BaseException:
                session.rollback()
                raise

    def reading(self) -> AbstractContextManager[Session]:
        """`session()` for a command that only reads."""
        return self.session(read_only=True)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """`session()` for code that speaks SQLAlchemy Core."""
        with self.session() as session:
            yield session.connection()

    def _alembic(self, connection: sa.Connection):  # type: ignore[no-untyped-def]
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", MIGRATIONS)
        cfg.attributes["connection"] = connection
        return cfg

    @property
    def where(self) -> str:
        """The database for people: the SQLite file (absolute: SQLite takes a relative one from the
        working folder, which is a surprise worth naming), or the URL without its password."""
        path = _sqlite_file(self.engine.url)
        return str(path.absolute()) if path is not None else self.engine.url.render_as_string(hide_password=True)

    def missing(self) -> bool:
        """A SQLite file `init` has not made yet (a server's database is never missing here)."""
        path = _sqlite_file(self.engine.url)
        return path is not None and not path.exists()

    def _create_file(self) -> None:
        """The SQLite file and its folder, owner only; a path that cannot be one names itself."""
        path = _sqlite_file(self.engine.url)
        if path is None or path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.touch(mode=0o600)  # an empty file is an empty SQLite database
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):  # the path is right, the disk is not
                raise StorageError(f"database {path}: cannot create it: {exc.strerror}") from None
            raise ConfigError(f"database.url: cannot create {path}: {exc.strerror}") from None

    def migrate(self) -> tuple[str | None, str]:
        """Brings the schema to the newest revision, creating the database first; returns (before, after)."""
        # alembic (and the SQL dialects it loads) only here: every other command reads the
        # revision itself (`pending_migrations`), and would pay ~100 ms to import it.
        from alembic import command

        sqlite = self.engine.dialect.name == "sqlite"
        self._create_file()
        try:
            with self.engine.connect() as connection:
                if sqlite:
                    # SQLite alters a table by rebuilding it; with foreign keys on, dropping the old
                    # copy fails while other rows point at it. Off for the migration (it can only be
                    # switched outside a transaction), checked before the commit, on again after.
                    connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
                try:
                    with connection.begin():
                        if self.coordinated:  # hosts starting together: one migrates, the others wait, then find it done
                            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                        before = _schema_revision(connection)
                        command.upgrade(self._alembic(connection), "head")
                        after = _schema_revision(connection)
                        if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                            raise StorageError("database: migration failed: a foreign key no longer matches")
                finally:
                    if sqlite:
                        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
        except SQLAlchemyError as exc:
            raise StorageError(f"database: migration failed: {_one_line(exc)}") from exc
        self._restrict_file()
        return before, after or ""

    def pending_migrations(self) -> bool:
        """True until `init` has brought the schema to the head. Never creates a SQLite file:
        no command that only reads may leave an empty database behind."""
        path = _sqlite_file(self.engine.url)
        if path is not None and not path.exists():
            return True
        try:
            with self.reader.connect() as connection:
                current = _schema_revision(connection)
        except SQLAlchemyError as exc:  # unreachable server, full disk, unreadable file
            raise StorageError(f"database {self.where}: {_one_line(exc)}") from exc
        # Every command asks: a constant, not alembic reading each migration file (tens of ms).
        return current != SCHEMA_HEAD

    def leave_no_copy(self, vacuum: bool = False) -> None:
        """After deleting personal data (SQLite): empty the WAL, and with `vacuum` rewrite the
        file so no free page keeps an old copy (secure_delete zeroes what it frees already)."""
        if _sqlite_file(self.engine.url) is None:
            return
        raw = self.engine.raw_connection()
        try:
            if vacuum:
                raw.driver_connection.execute("VACUUM")
            for _ in range(60):
                busy, _log, _done = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(0.2)  # a reader holds an old snapshot; it lets go soon
            # Still held after 12 s: say so (the next erasure or retention run empties it).
            get_logger("mailbridge.db").warning("db.wal_not_emptied")
        finally:
            raw.close()

    def _restrict_file(self) -> None:
        path = _sqlite_file(self.engine.url)
        if path is None:
            return
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if candidate.exists():
                os.chmod(candidate, 0o600)


def _schema_revision(connection: sa.Connection) -> str | None:
    """The revision `init` left in alembic's version table; None before the first `init`."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__
