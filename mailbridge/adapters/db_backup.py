"""`mailbridge db backup PATH`: a consistent copy of a running SQLite installation.

The database goes through SQLite's online backup API in one step, that is in one
read transaction: in WAL mode a reader neither waits for a writer nor sees half
of its transaction, so `run` and `poll` go on meanwhile and the copy is the
database as of one commit. The attachment store is copied after it: its files are
written once, named by their SHA-256, and never changed, so every file the copied
database names is already there (a file erased by `gdpr erase` during the backup
is the one exception, and a wanted one).

Everything written is the owner's only (0700 folders, 0600 files): it is
customers' data, as the installation's own files are.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mailbridge.adapters.files import STAGING
from mailbridge.errors import StorageError, UsageError

BUSY_TIMEOUT_MS = 60_000  # as the application's connections wait for a lock


@dataclass(frozen=True)
class BackupReport:
    database: Path
    schema: str  # the copy's schema revision (alembic's)
    database_bytes: int
    storage: Path
    files: int
    storage_bytes: int


def check_target(target: Path) -> None:
    """A new folder, or an empty one: a backup never mixes with or overwrites another."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"backup folder {target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"backup folder {target}: exists and is not empty (give a new folder)")


def back_up(database: Path, storage: Path, target: Path) -> BackupReport:
    """Copies `database` (a SQLite file in use) and the `storage` folder into `target`."""
    check_target(target)
    try:
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(target, 0o700)
        copy = target / database.name
        schema = _copy_database(database, copy)
        files, size = _copy_storage(storage, target / "storage")
    except OSError as exc:
        raise StorageError(f"backup folder {target}: {exc.strerror or type(exc).__name__}"
                           + (f" ({exc.filename})" if exc.filename else "")) from None
    return BackupReport(copy, schema, copy.stat().st_size, target / "storage", files, size)


def _copy_database(source: Path, copy: Path) -> str:
    """Returns the copy's schema revision."""
    try:
        # Read-write: a WAL database needs its shared-memory index, which a read-only
        # connection cannot make when no other process has it open. Nothing is written.
        reading = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StorageError(f"database {source}: {exc}") from None
    try:
        found = reading.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
    except sqlite3.Error as exc:
        reading.close()
        raise StorageError(f"database {source}: {exc}") from None
    if not found:
        reading.close()
        raise StorageError(f"database {source} is not initialised: run `mailbridge init` first")
    # The copy is made owner-only before SQLite writes a byte into it.
    os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    writing = sqlite3.connect(copy)
    try:
        reading.backup(writing)  # pages=-1: every page in one step, one read transaction
        # The copy stands alone: one file, no WAL beside it, checked before we say it is good.
        writing.execute("PRAGMA journal_mode=DELETE")
        problem = writing.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise StorageError(f"backup of {source}: the copy does not check: {problem}")
        return writing.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise StorageError(f"backup of {source}: {exc}") from None
    finally:
        writing.close()
        reading.close()


def _copy_storage(storage: Path, copy: Path) -> tuple[int, int]:
    """Every file of the store but a poller's half-written ones (the staging folder)."""
    counted = [0, 0]

    def copy_file(src: str, dst: str) -> str:
        shutil.copyfile(src, dst)  # contents only: the modes are set here, not copied
        os.chmod(dst, 0o600)
        counted[0] += 1
        counted[1] += os.path.getsize(dst)
        return dst

    if not storage.is_dir():
        raise StorageError(f"storage.path {str(storage)!r}: not a folder (run `mailbridge init`)")
    shutil.copytree(storage, copy, symlinks=True, copy_function=copy_file,
                    ignore=lambda folder, names: [STAGING] if STAGING in names else [])
    for folder, names, _files in os.walk(copy):
        os.chmod(folder, 0o700)
    return counted[0], counted[1]
