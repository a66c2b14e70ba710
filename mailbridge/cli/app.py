"""What every command shares: the App (config and database, loaded on first use) and how
arguments become our values (ticket IDs, row numbers, times).

Light on purpose: every command, `--help` too, imports this module, so the config model
(pydantic), the database and logging libraries are imported where they are first used.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from mailbridge.errors import MailbridgeError, UsageError
from mailbridge.ticket_ids import MAX_TICKET_NUMBER

if TYPE_CHECKING:
    from mailbridge.config import Settings

# Row IDs and counts given on the command line: the tables' IDs are 32-bit on PostgreSQL,
# and a bigger number (or 10**20, which no database takes) can name nothing.
ROW_NUMBER = click.IntRange(1, MAX_TICKET_NUMBER)
# Times given on the command line: far enough either way for any real case, and far from
# datetime's edges (years 1 and 9999), where a deadline or retention window would overflow.
EARLIEST_YEAR, LATEST_YEAR = 1900, 9000


class App:
    """What every command needs, loaded on first use (so `--help` needs no config)."""

    def __init__(self, config: str | None, verbose: int = 0):
        self.config = config
        self.verbose = verbose  # -v, -vv: a command's info or debug logs on a terminal too
        self._settings: Settings | None = None
        self._db = None

    @property
    def config_file(self) -> Path:
        """The config file this command reads (`--config`, $MAILBRIDGE_CONFIG or the default)."""
        from mailbridge.config import config_path

        return config_path(self.config)

    def read_settings(self) -> Settings:
        """The config file read and checked now (the daemon's reload reads it again)."""
        from mailbridge.config import load_settings

        return load_settings(self.config_file)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from mailbridge.logs import command_level, configure_logging

            self._settings = self.read_settings()
            level = command_level(self._settings.logging.level, self.verbose, sys.stderr)
            configure_logging(level, self._settings.logging.format)
        return self._settings

    @property
    def db(self):  # type: ignore[no-untyped-def]
        from mailbridge.adapters.db import Database

        if self._db is None:
            self._db = Database(self.settings.database.url)
        return self._db

    def existing_db(self):  # type: ignore[no-untyped-def]
        """The database, refusing a SQLite file that `init` has not made (and making none)."""
        db = self.db
        if db.missing():
            relative = "" if (db.engine.url.database or "").startswith("/") else (
                " (database.url gives a path relative to the working folder; an absolute one takes four "
                "slashes: sqlite:////var/lib/mailbridge/mailbridge.db)")
            raise MailbridgeError(f"database {db.where} does not exist yet: run `mailbridge init` first{relative}")
        return db

    def ready_db(self):  # type: ignore[no-untyped-def]
        """The database, refusing to run on a schema `init` has not brought up to date."""
        db = self.existing_db()
        if db.pending_migrations():
            raise MailbridgeError(f"database {db.where} is not initialised or not up to date: "
                                  "run `mailbridge init` first")
        return db

    def ticket_number(self, text: str) -> int:
        from mailbridge.ticket_ids import parse_ticket_id

        number = parse_ticket_id(text, self.settings.tickets.id_prefix)
        if number is None:
            raise UsageError(f"not a ticket ID: {text!r} (expected like {self.settings.tickets.id_prefix}-000042)")
        return number


pass_app = click.make_pass_decorator(App)


def clock_at(at: str | None, zone: str = "Europe/Budapest") -> datetime:
    """`--at ISO-TIME` of a job-running command, else now; in UTC, as every stored time is
    (SQLite keeps a time's digits and drops its offset)."""
    return parse_time(at, zone).astimezone(timezone.utc) if at else datetime.now(timezone.utc)


def parse_time(text: str, zone: str = "Europe/Budapest") -> datetime:
    """ISO-8601; without an offset it is local time in `zone`."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not an ISO-8601 time: {text!r} (e.g. 2024-08-01T10:00:00+02:00)") from None
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise UsageError(f"time out of range: {text!r} (years {EARLIEST_YEAR} to {LATEST_YEAR})")
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))
