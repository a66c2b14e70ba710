"""Fetch stage: what is new in the folder, in batches bounded by count and bytes.

Only UIDs above the highest one our intake log holds for this UIDVALIDITY
are asked for, so a poll costs the same however much was processed before.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailbridge.adapters.imap import ImapConnection
from mailbridge.mail import RawMail

MAX_BATCH_BYTES = 32 * 1024 * 1024


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


def fetch_new(
    imap: ImapConnection, folder: str, uidvalidity: int, uids: list[int], batch_size: int
) -> Iterator[tuple[list[int], list[RawMail]]]:
    """Yields (asked UIDs, mails the server returned) batch by batch.

    A UID asked for but not returned (the server answered without a body)
    is in the first list only: the caller records it for a retry.
    """
    sizes = imap.sizes(uids)
    # A UID without a size answer still gets asked for its body.
    for uid in uids:
        sizes.setdefault(uid, 0)
    for batch in plan_batches(sizes, batch_size):
        bodies = imap.bodies(batch)
        yield batch, [RawMail(folder, uidvalidity, uid, bodies[uid]) for uid in batch if uid in bodies]
