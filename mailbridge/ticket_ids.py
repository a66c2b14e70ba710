"""Ticket IDs: `CRX-000042` written, and read back from a subject tag or the command line."""

from __future__ import annotations

import re
from functools import lru_cache

# The ticket.id column is a 32-bit INTEGER on PostgreSQL: a bigger number names no ticket,
# and asking the database for it would fail instead of finding nothing.
MAX_TICKET_NUMBER = 2**31 - 1


@lru_cache(maxsize=8)
def tag_pattern(prefix: str) -> re.Pattern[str]:
    """`[CRX-000042]`, any case, with or without leading zeros, anywhere in the subject."""
    # [0-9], not \d: \d and int() take Arabic-Indic or full-width digits, which no tag of ours has.
    return re.compile(rf"\[\s*{re.escape(prefix)}\s*-\s*0*([0-9]{{1,12}})\s*\]", re.IGNORECASE)


def _ticket_number(digits: str) -> int | None:
    number = int(digits)
    return number if number <= MAX_TICKET_NUMBER else None


def find_tag(subject: str, prefix: str) -> int | None:
    found = tag_pattern(prefix).search(subject or "")
    return _ticket_number(found.group(1)) if found else None


def format_ticket_id(number: int, prefix: str) -> str:
    return f"{prefix}-{number:06d}"


def parse_ticket_id(text: str, prefix: str) -> int | None:
    """`CRX-000042`, `crx-42`, `[CRX-42]` or `42` -> 42; None for anything else, or beyond any ticket."""
    found = re.fullmatch(rf"\[?\s*(?:{re.escape(prefix)}\s*-\s*)?0*([0-9]{{1,12}})\s*\]?", text.strip(), re.IGNORECASE)
    return _ticket_number(found.group(1)) if found else None
