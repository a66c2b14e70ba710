"""Personal data (GDPR Art. 5, 15, 17): export, erasure, retention."""

from __future__ import annotations

from mailbridge.errors import UsageError
from mailbridge.policy.addresses import normalise_address


def person_address(text: str) -> str:
    """The person a `gdpr` command is about: one address, normalised; a usage error otherwise
    (an empty or a pattern-like argument must never stand for everyone)."""
    address = normalise_address(text)
    if address is None:
        shown = text if len(text) <= 80 else text[:80] + "…"
        raise UsageError(f"not an e-mail address: {shown!r}")
    return address
