"""Fetch stage: what is new in the folder, in batches bounded by count and bytes.

Only UIDs above the highest one our intake log holds for this UIDVALIDITY
are asked for, so a poll costs the same however much was processed before.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailbridge.adapters.imap import ImapConnection
from mailbridge.errors import ImapError
from mailbridge.logs import get_logger
from mailbridge.mail import RawMail

MAX_BATCH_BYTES = 32 * 1024 * 1024
# A mail bigger than this is fetched a few MB at a time (memory: see ImapConnection.body_in_parts).
CHUNKED_ABOVE = 8 * 1024 * 1024
log = get_logger("mailbridge.intake")


def plan_batches(sizes: dict[int, int], batch_size: int, max_bytes: int = MAX_BATCH_BYTES) -> list[list[int]]:
    """Groups UIDs in order; a message larger than `max_bytes` travels alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    weight = 0
    for uid in sorted(sizes):
        size = sizes[uid]
        if current and (len(current) >= batch_size or weight + size > max_bytes):
            batches.append(current)
            current, weight = [], 0
        current.append(uid)
        weight += size
    if current:
        batches.append(current)
    return batches


def fetch_new(imap: ImapConnection, folder: str, uidvalidity: int, uids: list[int], batch_size: int,
              max_bytes: int, received: bool = True) -> "NewMail":
    """The new mail batch by batch, each as (asked UIDs, mails the server returned
    whole, {UID: size} of those over `max_bytes`, not fetched). `received`: each
    mail's RawMail.received is asked for (INTERNALDATE: only going live needs it).

    A UID asked for but not returned whole (no body, or not the size the
    server itself announced) is in the first list only: the caller records
    it for a retry and leaves the server copy where it is.
    """
    return NewMail(imap, folder, uidvalidity, uids, batch_size, max_bytes, received)


class NewMail(Iterator[tuple[list[int], list[RawMail], dict[int, int]]]):
    """Each `next()` fetches one batch; `upcoming_bytes` tells what the next one
    weighs before it is fetched, so the caller can wait until it has room (memory)."""

    def __init__(self, imap: ImapConnection, folder: str, uidvalidity: int, uids: list[int], batch_size: int,
                 max_bytes: int, received: bool = True):
        self.imap, self.folder, self.uidvalidity, self.max_bytes = imap, folder, uidvalidity, max_bytes
        self.announced, self.received = imap.announced(uids, received)
        # A UID without a size answer still gets asked for its body.
        self.batches = plan_batches({uid: min(self.announced.get(uid, 0), max_bytes) for uid in uids}, batch_size)

    @property
    def mails(self) -> int:
        """How many mails the batches not yet fetched hold."""
        return sum(len(batch) for batch in self.batches)

    @property
    def upcoming_bytes(self) -> int | None:
        """What the server announced for the next batch's mails that will be fetched; None: no more batches."""
        if not self.batches:
            return None
        return sum(size for uid in self.batches[0] if (size := self.announced.get(uid, 0)) <= self.max_bytes)

    def __next__(self) -> tuple[list[int], list[RawMail], dict[int, int]]:
        if not self.batches:
            raise StopIteration
        return self._fetch(self.batches.pop(0))

    def _fetch(self, batch: list[int]) -> tuple[list[int], list[RawMail], dict[int, int]]:
        imap, folder, uidvalidity, announced, max_bytes = (self.imap, self.folder, self.uidvalidity, self.announced,
                                                            self.max_bytes)
        too_large = {uid: announced[uid] for uid in batch if announced.get(uid, 0) > max_bytes}
        big = [uid for uid in batch if CHUNKED_ABOVE < announced.get(uid, 0) <= max_bytes]
        small = [uid for uid in batch if uid not in too_large and uid not in big]
        bodies = _bodies(imap, folder, small) if small else {}
        for uid in big:
            body = _big_body(imap, folder, uid, announced[uid])
            if body is not None:
                bodies[uid] = body
        mails = []
        for uid in batch:
            body = bodies.get(uid)
            if body is None:
                continue
            if announced.get(uid) and len(body) != announced[uid]:
                log.warning("mail.fetch_garbled", folder=folder, uid=uid, announced=announced[uid], received=len(body))
                continue
            mails.append(RawMail(folder, uidvalidity, uid, body, self.received.get(uid)))
        return [uid for uid in batch if uid not in too_large], mails, too_large


def _bodies(imap: ImapConnection, folder: str, batch: list[int]) -> dict[int, bytes]:
    try:
        return imap.bodies(batch)
    except ImapError as exc:
        if len(batch) == 1:
            log.warning("mail.fetch_failed", folder=folder, uid=batch[0], error=str(exc))
            imap.reopen(folder)
            return {}
    # One mail's answer broke the batch's (and maybe the connection): ask for
    # each alone on a fresh connection, so only the broken one waits for a retry.
    # If the server itself is gone, reopen raises and the poll ends here.
    log.warning("mail.fetch_failed", folder=folder, count=len(batch), action="fetching one by one")
    imap.reopen(folder)
    found: dict[int, bytes] = {}
    for uid in batch:
        found.update(_bodies(imap, folder, [uid]))
    return found


def _big_body(imap: ImapConnection, folder: str, uid: int, size: int) -> bytes | bytearray | None:
    try:
        return imap.body_in_parts(uid, size)
    except ImapError as exc:
        log.warning("mail.fetch_failed", folder=folder, uid=uid, error=str(exc))
        imap.reopen(folder)
        return None
