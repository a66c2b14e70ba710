"""The prefixes mail clients put before a subject they reply to or forward. Pure data.

"Re:", "Fwd:" and their sisters, as Outlook, Gmail, Thunderbird and Apple Mail write
them in our languages, with Outlook's counted form ("RE[2]:"). One list: the bounce
rules read a prefix as a person's doing, an agent's #open takes them off a subject.
"""

from __future__ import annotations

import re

REPLY_PREFIXES = (
    "re", "fw", "fwd", "aw", "wg", "vs", "vb", "sv", "vá", "továbbítás", "továbbítva", "továbbított",
    "tr", "réf", "rv", "rif", "i", "r", "res", "enc", "odp", "pd", "př", "antw", "doorst", "vl",
)

# One prefix at the start of a subject.
REPLY_PREFIX = re.compile(r"^[ \t]*(?:" + "|".join(re.escape(p) for p in dict.fromkeys(REPLY_PREFIXES))
                          + r")(?:\[\d{1,3}\])?[ \t]{0,3}:", re.IGNORECASE)


def strip_reply_prefixes(subject: str) -> str:
    """The subject without the reply and forward prefixes in front of it (bounded: 20 at most)."""
    for _ in range(20):
        found = REPLY_PREFIX.match(subject)
        if not found:
            break
        subject = subject[found.end():]
    return subject.strip()
