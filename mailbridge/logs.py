"""structlog set-up: JSON lines for journald and files, key=value on a terminal.

Events are stable dotted names (`intake.stored`, `mail.quarantined`); the
fields are IDs, counts and reasons, never bodies, addresses or secrets.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

_FORBIDDEN = {"password", "token", "body", "text", "html", "raw", "sender", "email", "address", "subject"}


def _drop_personal_data(_logger, _method, event_dict):  # type: ignore[no-untyped-def]
    """A last guard: keys that could carry personal data or secrets never leave."""
    for key in list(event_dict):
        if key in _FORBIDDEN:
            event_dict[key] = "[withheld]"
    return event_dict


# Asked for before structlog was imported: applied when the first logger is (a command that
# logs nothing, such as `tickets list`, never pays structlog's import).
_pending: tuple[str, str, TextIO] | None = None


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    global _pending
    _pending = (level, fmt, stream or sys.stderr)
    # Libraries log through the standard module; keep their chatter out of our stream.
    logging.getLogger("mailparser").setLevel(logging.CRITICAL)
    logging.getLogger("imapclient").setLevel(logging.WARNING)
    if "structlog" in sys.modules:  # loggers may exist already: they read the new set-up at once
        _apply_pending()


def _apply_pending() -> None:
    global _pending
    import structlog

    if _pending is None:
        return
    (level, fmt, stream), _pending = _pending, None
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer = structlog.processors.JSONRenderer(ensure_ascii=False) if use_json else structlog.dev.ConsoleRenderer(
        colors=stream.isatty()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "mailbridge"):  # type: ignore[no-untyped-def]
    import structlog

    _apply_pending()
    return structlog.get_logger(name)
