"""The attachment store: each file once, named by its SHA-256, outside the database.

Files are written to a temporary name in the staging folder, fsynced and renamed,
so a crash leaves either the whole file or none; a file already present is not
written again.
Everything is created owner-only (0700 folders, 0600 files): it is customers'
data.

A parse worker writes what it read (attachments, the compressed raw copy) to
the staging folder beside them instead of sending the bytes back, so the
poller never holds them (memory). A staged file is not an attachment yet: the
poller adopts it (fsync, rename into place) where it would have written the
file itself, inside the mail's transaction, and deletes whatever it did not
adopt; leftovers of a killed poller are swept on its next poll.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from mailbridge.errors import StorageError


# Inside the attachments folder: a rename from here is never across file systems.
STAGING = ".staging"


class AttachmentStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.staging = self.root / "attachments" / STAGING

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
            # One at a time: with parents=True the missing ones are made without `mode`.
            for folder in (self.root / "attachments", self.staging):
                folder.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"storage.path {str(self.root)!r}: {exc.strerror}") from None

    def path_of(self, sha256: str) -> Path:
        return self.root / "attachments" / sha256[:2] / sha256

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Stores `data` once; returns its SHA-256."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        if self.path_of(digest).exists():
            return digest
        return self.adopt(self.stage([data]), digest)

    def stage(self, pieces: Iterable[bytes]) -> str:
        """Writes `pieces` to a new file in the staging folder; returns its path.
        Not fsynced: only what is adopted must outlive a crash."""
        if not self.staging.is_dir():
            self.ensure()
        try:
            fd, temp = tempfile.mkstemp(dir=self.staging, prefix="staged-")  # 0600
            try:
                with os.fdopen(fd, "wb") as handle:
                    for piece in pieces:
                        handle.write(piece)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise self._error("cannot write attachment", exc) from None
        return temp

    def adopt(self, staged: str, sha256: str) -> str:
        """Stores a staged file under its SHA-256 (the caller vouches for it), fsynced,
        by rename: a crash leaves the whole file or none. The staged file is gone
        afterwards; adopting it again once it is in place changes nothing."""
        target = self.path_of(sha256)
        try:
            if target.exists():
                Path(staged).unlink(missing_ok=True)
                return sha256
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(staged, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(staged, target)
        except FileNotFoundError:
            # Adopted by an earlier try of this batch, then deleted under us (an erasure), or
            # swept: the mail is not stored now, and is read again on the next poll.
            raise StorageError(f"storage.path {str(self.root)!r}: a staged attachment is gone") from None
        except OSError as exc:
            Path(staged).unlink(missing_ok=True)
            raise self._error("cannot write attachment", exc) from None
        return sha256

    def discard(self, staged: Iterable[str]) -> None:
        for path in staged:
            if path:
                Path(path).unlink(missing_ok=True)

    def sweep_staging(self, older_than: float) -> int:
        """Deletes staged files older than `older_than` seconds (a poller killed
        mid-batch left them); returns how many."""
        limit, swept = time.time() - older_than, 0
        try:
            for entry in os.scandir(self.staging):
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                    Path(entry.path).unlink(missing_ok=True)
                    swept += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error("cannot sweep the staging folder", exc) from None
        return swept

    def _error(self, what: str, exc: OSError) -> StorageError:
        detail = "storage full" if exc.errno == errno.ENOSPC else exc.strerror
        return StorageError(f"storage.path {str(self.root)!r}: {what}: {detail}")

    def get(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)
