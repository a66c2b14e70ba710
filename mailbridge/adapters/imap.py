"""The IMAP edge: IMAPClient behind the few calls intake needs.

Every library or socket error becomes ImapError with one readable line.
Bodies are fetched with BODY.PEEK[] so no flag another client sees changes.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from mailbridge.adapters.oauth import token_source
from mailbridge.config import ImapSettings
from mailbridge.errors import ImapError, MailServerError

_FAILURES = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)


@dataclass(frozen=True)
class FolderState:
    name: str
    uidvalidity: int
    uidnext: int
    exists: int


def _fail(what: str, exc: BaseException) -> ImapError:
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(detail, bytes):  # pragma: no cover
        detail = detail.decode("utf-8", "replace")
    return ImapError(f"imap: {what}: {detail.splitlines()[0] if detail else type(exc).__name__}")


class ImapConnection:
    def __init__(self, settings: ImapSettings):
        self.settings = settings
        self.client: imapclient.IMAPClient | None = None
        self._caps: frozenset[str] | None = None

    def open(self) -> "ImapConnection":
        s = self.settings
        password = s.login_password() if s.auth == "password" else ""  # read now: no command before needs it
        self._connect()
        if s.auth == "xoauth2":
            self._login_xoauth2()
            return self
        try:
            self.client.login(s.username, password)
        except _FAILURES as exc:
            self.close()
            raise _fail(f"login as {s.username!r} refused by {s.host}:{s.port}", exc) from None
        return self

    def _connect(self) -> None:
        s = self.settings
        try:
            context = ssl.create_default_context() if s.tls else None
            self.client = imapclient.IMAPClient(s.host, port=s.port, ssl=s.tls, ssl_context=context, timeout=s.timeout)
        except _FAILURES as exc:
            raise _fail(f"cannot connect to {s.host}:{s.port}", exc) from None

    def _login_xoauth2(self) -> None:
        """AUTHENTICATE XOAUTH2; a refused token is read anew and tried once more on a fresh connection."""
        s = self.settings
        name = getattr(s, "name", None)  # a [[mailboxes]] entry names itself in errors
        tokens = token_source(s, f"mailboxes.{name}" if name and name != "default" else "imap")
        for attempt in (1, 2):
            try:
                token = tokens.token()
            except MailServerError as exc:
                self.close()
                raise ImapError(str(exc)) from None
            try:
                self._c.oauth2_login(s.username, token)
                return
            except LoginError as exc:
                self.close()
                if attempt == 2:
                    raise _fail(f"XOAUTH2 login as {s.username!r} refused by {s.host}:{s.port}", exc) from None
                tokens.invalidate()
                self._connect()
            except _FAILURES as exc:
                self.close()
                raise _fail(f"XOAUTH2 login as {s.username!r} failed at {s.host}:{s.port}", exc) from None

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.logout()
        except Exception:  # the server may be gone already; nothing to save
            try:
                self.client.shutdown()
            except Exception:
                pass
        self.client = None
        self._caps = None

    def reopen(self, folder: str) -> FolderState:
        """A fresh connection on the same folder, after an answer that may have left this one out of step."""
        self.close()
        self.open()
        return self.select(folder)

    @property
    def _c(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise ImapError("imap: not connected")
        return self.client

    def capabilities(self) -> frozenset[str]:
        if self._caps is None:
            try:
                self._caps = frozenset(c.decode() if isinstance(c, bytes) else c for c in self._c.capabilities())
            except _FAILURES as exc:
                raise _fail("CAPABILITY failed", exc) from None
        return self._caps

    def ensure_folders(self, names: Iterable[str]) -> list[str]:
        created = []
        try:
            for name in names:
                if not self._c.folder_exists(name):
                    try:
                        self._c.create_folder(name)
                    except _FAILURES:
                        if not self._c.folder_exists(name):
                            raise
                        continue  # another host's `init` made it just now
                    created.append(name)
        except _FAILURES as exc:
            raise _fail("cannot create folder", exc) from None
        return created

    def select(self, folder: str) -> FolderState:
        try:
            info = self._c.select_folder(folder)
        except _FAILURES as exc:
            raise _fail(f"cannot select {folder!r}", exc) from None
        return FolderState(
            folder,
            int(info.get(b"UIDVALIDITY", 0)),
            int(info.get(b"UIDNEXT", 0) or 0),
            int(info.get(b"EXISTS", 0) or 0),
        )

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above `last_uid`: `UID n:*` also answers the highest UID, so filter."""
        try:
            found = self._c.search(["UID", f"{last_uid + 1}:*"])
        except _FAILURES as exc:
            raise _fail("UID SEARCH failed", exc) from None
        return sorted(uid for uid in found if uid > last_uid)

    def announced(self, uids: list[int], received: bool = True) -> tuple[dict[int, int], dict[int, datetime]]:
        """What the server says of each mail before its body is fetched, in one FETCH: its size
        (RFC822.SIZE) and, if `received`, when the server received it (INTERNALDATE, aware;
        absent if not given). IMAPClient reads a date at 30 µs: twice the size's cost."""
        if not uids:
            return {}, {}
        items = ["RFC822.SIZE", "INTERNALDATE"] if received else ["RFC822.SIZE"]
        try:
            answer = self._c.fetch(uids, items)
        except _FAILURES as exc:
            raise _fail(f"FETCH {' '.join(items)} failed", exc) from None
        sizes, received = {}, {}
        for uid, data in answer.items():
            sizes[uid] = int(data.get(b"RFC822.SIZE", 0))
            when = data.get(b"INTERNALDATE")
            if isinstance(when, datetime):
                # IMAPClient gives it in this host's local time, naive: astimezone reads it so.
                received[uid] = when.astimezone(timezone.utc)
        return sizes, received

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        """Raw messages by UID; a UID the server answered without a body is absent."""
        if not uids:
            return {}
        try:
            answer = self._c.fetch(uids, ["BODY.PEEK[]"])
        except _FAILURES as exc:
            raise _fail("FETCH BODY.PEEK[] failed", exc) from None
        found = {}
        for uid, data in answer.items():
            body = data.get(b"BODY[]")
            if isinstance(body, bytes):
                found[uid] = body
        return found

    def body_in_parts(self, uid: int, size: int, part: int = 4 * 1024 * 1024) -> bytearray | None:
        """A big raw message, `part` bytes per FETCH (BODY.PEEK[]<offset.length>): one FETCH
        of a 45 MB mail peaked at four copies of it in imaplib's buffers.

        Filled into one buffer of the announced size and returned as it is: growing it
        left slack, and bytes(buffer) was a second whole copy at once (memory)."""
        body = bytearray(size)
        filled = 0
        for offset in range(0, size, part):
            try:
                answer = self._c.fetch([uid], [f"BODY.PEEK[]<{offset}.{part}>"])
            except _FAILURES as exc:
                raise _fail("FETCH BODY.PEEK[]<…> failed", exc) from None
            chunk = answer.get(uid, {}).get(f"BODY[]<{offset}>".encode())
            if not isinstance(chunk, bytes):
                return None
            # In place; past the announced size (a server that miscounts) the buffer grows,
            # and the caller finds the size wrong.
            body[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            del answer, chunk
        del body[filled:]
        return body

    def move(self, uids: list[int], folder: str) -> None:
        """MOVE, else COPY + \\Deleted + UID EXPUNGE of exactly these UIDs."""
        if not uids:
            return
        try:
            caps = self.capabilities()
            if "MOVE" in caps:
                self._c.move(uids, folder)
                return
            self._c.copy(uids, folder)
            self._c.add_flags(uids, [imapclient.DELETED], silent=True)
            if "UIDPLUS" in caps:
                self._c.uid_expunge(uids)
            else:
                self._c.expunge()
        except _FAILURES as exc:
            raise _fail(f"cannot move {len(uids)} message(s) to {folder!r}", exc) from None

    def wait_for_news(self, seconds: float) -> bool:
        """IDLE (RFC 2177) until the server says something changed, or `seconds` pass.

        Returns True when new mail may be there. Without IDLE it only sleeps.
        """
        if "IDLE" not in self.capabilities():
            time.sleep(seconds)
            return True
        try:
            self._c.idle()
            try:
                responses = self._c.idle_check(timeout=seconds)
            finally:
                self._c.idle_done()
        except _FAILURES as exc:
            raise _fail("IDLE failed", exc) from None
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

    def delete_by_message_id(self, folder: str, message_ids: list[str]) -> int:
        """Expunges the copies in `folder` whose Message-ID is one of these; returns how many."""
        try:
            if not self._c.folder_exists(folder):
                return 0
            self._c.select_folder(folder)
            uids: set[int] = set()
            for message_id in message_ids:
                uids.update(self._c.search(["HEADER", "Message-ID", message_id]))
            if not uids:
                return 0
            found = sorted(uids)
            self._c.add_flags(found, [imapclient.DELETED], silent=True)
            if "UIDPLUS" in self.capabilities():
                self._c.uid_expunge(found)
            else:
                self._c.expunge()
            return len(found)
        except _FAILURES as exc:
            raise _fail(f"cannot delete copies in {folder!r}", exc) from None

    def append(self, folder: str, raw: bytes) -> None:
        try:
            self._c.append(folder, raw)
        except _FAILURES as exc:
            raise _fail(f"APPEND to {folder!r} failed", exc) from None


@contextmanager
def imap_session(settings: ImapSettings) -> Iterator[ImapConnection]:
    connection = ImapConnection(settings).open()
    try:
        yield connection
    finally:
        connection.close()
