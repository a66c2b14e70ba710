"""What an agent's copy of a customer's mail carries (SPEC "The agent's day by mail"). Pure.

Files go along as attachments, in the order the mail had them, while they fit in
`desk.forward_attachment_bytes` all together; the rest are listed with their sizes,
so one huge file neither stops the mail nor pushes the small ones out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def share_files(files: Iterable[Mapping[str, Any]], cap: int) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(attached, listed): each file ({"size": …, …}) attached while the running total stays
    within `cap` bytes, else listed. A file too big on its own is listed; a smaller one after
    it may still be attached."""
    attached: list[dict] = []
    listed: list[dict] = []
    total = 0
    for f in files:
        size = max(0, int(f.get("size", 0)))
        if total + size <= cap:
            attached.append(dict(f))
            total += size
        else:
            listed.append(dict(f))
    return tuple(attached), tuple(listed)
