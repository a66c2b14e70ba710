"""`mailbridge demo`: its servers (pymap, aiosmtpd) come with the `demo` extra, not with
every installation, so the command first says how to get them when they are missing."""

from __future__ import annotations

import importlib.util

from mailbridge.errors import UsageError

SERVERS = ("pymap", "aiosmtpd")  # the demo's IMAP server and SMTP sink
INSTALL = "pip install 'crossec-mailbridge[demo]'"


def require_servers() -> None:
    """One line naming the install command instead of an ImportError's traceback."""
    missing = [name for name in SERVERS if not _installed(name)]
    if missing:
        raise UsageError(f"demo: its servers are not installed ({', '.join(missing)}); "
                         f"install them with {INSTALL} (in a clone: pip install -e '.[demo]')")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a module left half-imported
        return False
