"""The attachment store: each file once, named by its SHA-256, outside the database.

Files are written to a temporary name, fsynced and renamed, so a crash leaves
either the whole file or none; a file already present is not written again.
Everything is created owner-only (0700 folders, 0600 files): it is customers'
data.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from mailbridge.errors import StorageError


class AttachmentStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def ensure(self) -> None:
        try:
            (self.root / "attachments").mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.root, 0o700)
        except OSError as exc:
            raise StorageError(f"storage.path {str(self.root)!r}: {exc.strerror}") from None

    def path_of(self, sha256: str) -> Path:
        return self.root / "attachments" / sha256[:2] / sha256

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Stores `data` once; returns its SHA-256."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path_of(digest)
        if target.exists():
            return digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o600)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            what = "storage full" if exc.errno == errno.ENOSPC else exc.strerror
            raise StorageError(f"storage.path {str(self.root)!r}: cannot write attachment: {what}") from None
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)
