"""What counts as one e-mail address where a person types it (a form's E-mail field, `gdpr`). Pure."""

from __future__ import annotations

import re

# One `@`; a local part without spaces, brackets or list separators; a domain of letter
# and digit labels in any script (`árvíz.hu` is one) ending in a top-level name of letters.
ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.[^\W\d_]{2,}\Z")
MAX_LENGTH = 320  # RFC 5321's 64 + 1 + 255, and the width of our address columns


def normalise_address(text: str) -> str | None:
    """`text` stripped and lower-cased when it is one address; None otherwise."""
    address = text.strip().lower()
    if len(address) > MAX_LENGTH or not ADDRESS.match(address):
        return None
    return address
