"""structlog set-up: JSON lines for journald and files, key=value on a terminal.

Events are stable dotted names (`intake.stored`, `mail.quarantined`); the
fields are IDs, counts and reasons, never bodies, addresses or secrets.

The libraries' records (alembic, APScheduler, SQLAlchemy: the standard `logging` module) go
through structlog's formatter to the same stream, so a journal holds JSON lines only.
A command on a terminal logs warnings and errors only, unless `-v` (info) or `-vv` (debug):
its output is for people. Off a terminal (a journal, a file, cron's mail) `logging.level` holds;
the daemon always logs at `logging.level`.
"""

from __future__ import annotations

import logging
import sys
import threading
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
_LEVELS = ("debug", "info", "warning", "error")


def command_level(configured: str, verbose: int, stream: TextIO) -> str:
    """The level an interactive command logs at: `-vv` debug, `-v` info (or the configured
    debug); without either, only warnings and errors on a terminal, else as configured."""
    if verbose >= 2:
        return "debug"
    if verbose == 1:
        return "debug" if configured == "debug" else "info"
    if _is_terminal(stream):
        return max(configured, "warning", key=_LEVELS.index)
    return configured


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    global _pending
    stream = stream or sys.stderr
    _pending = (level, fmt, stream)
    _route_standard_logging(level, fmt == "json" or (fmt == "auto" and not _is_terminal(stream)), stream)
    quiet_libraries()
    if "structlog" in sys.modules:  # loggers may exist already: they read the new set-up at once
        _apply_pending()


def quiet_libraries() -> None:
    """Libraries log through the standard module; keep their chatter out of our stream. Also
    for the parse workers, which start from a fresh interpreter: without it mail-parser's
    warnings ("Email content 'rfc822-headers' not handled") reached stderr as bare lines."""
    logging.getLogger("mailparser").setLevel(logging.CRITICAL)
    logging.getLogger("imapclient").setLevel(logging.WARNING)


_LINES = threading.Lock()


def write_line(stream: TextIO, text: str) -> None:
    """One record, one line, in one write: our events and the libraries' records come from
    several threads, and structlog's own print() wrote a record and its line end apart (one
    of APScheduler's records once landed between them: two records on one journal line)."""
    with _LINES:
        stream.write(text + "\n")
        stream.flush()


class _Lines:
    """structlog's logger: each rendered event through `write_line`."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def msg(self, message: str) -> None:
        write_line(self.stream, message)

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg


class _LibraryRecords(logging.Handler):
    """The root handler: a library's record rendered by structlog's formatter, as our events
    are (JSON, or key=value on a terminal). structlog is imported at the first record that
    passes the level, so a command whose libraries log nothing never pays for it."""

    def __init__(self, stream: TextIO, use_json: bool):
        super().__init__()
        self.stream, self.use_json = stream, use_json

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.formatter is None:
                self.setFormatter(_library_formatter(self.use_json, self.stream))
            write_line(self.stream, self.format(record))
        except Exception:  # noqa: BLE001 - logging's own rule: a record that cannot be written is reported, never raised
            self.handleError(record)


_library_handler: _LibraryRecords | None = None


def _route_standard_logging(level: str, use_json: bool, stream: TextIO) -> None:
    global _library_handler
    root = logging.getLogger()
    if _library_handler is not None:
        root.removeHandler(_library_handler)
    _library_handler = _LibraryRecords(stream, use_json)
    root.addHandler(_library_handler)
    # The libraries' info is chatter (APScheduler notes every run of every job) except alembic's
    # migration steps, which belong in the journal of `init`; at debug, everything.
    root.setLevel(logging.getLevelName(level.upper() if level == "debug" else max(level, "warning", key=_LEVELS.index).upper()))
    # Of alembic, the migration steps only (not its plugins' and dialect's notes).
    logging.getLogger("alembic").setLevel(logging.getLevelName(max(level, "warning", key=_LEVELS.index).upper()))
    migration = logging.getLogger("alembic.runtime.migration")
    migration.setLevel(logging.getLevelName(level.upper()))
    if not any(isinstance(f, _MigrationSteps) for f in migration.filters):
        migration.addFilter(_MigrationSteps())


class _MigrationSteps(logging.Filter):
    """Of alembic's info, the steps ("Running upgrade 0004 -> 0005"), not its notes on the
    dialect ("Context impl PostgresqlImpl.", "Will assume transactional DDL.") every run makes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.INFO or str(record.msg).startswith("Running ")


def _renderer(use_json: bool, stream: TextIO):  # type: ignore[no-untyped-def]
    import structlog

    if use_json:
        return structlog.processors.JSONRenderer(ensure_ascii=False)
    return structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))


def _exception_type(_logger, _method, event_dict):  # type: ignore[no-untyped-def]
    """A library's exception as its type: its message and frames may quote a mail or an address."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        error = exc_info[1] if isinstance(exc_info, tuple) else sys.exc_info()[1]
        if error is not None:
            event_dict["error"] = type(error).__name__
    return event_dict


def _library_formatter(use_json: bool, stream: TextIO) -> logging.Formatter:
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_personal_data,
            _exception_type,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(use_json, stream)],
    )


def _apply_pending() -> None:
    global _pending
    import structlog

    if _pending is None:
        return
    (level, fmt, stream), _pending = _pending, None
    renderer = _renderer(fmt == "json" or (fmt == "auto" and not _is_terminal(stream)), stream)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_args: _Lines(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "mailbridge"):  # type: ignore[no-untyped-def]
    import structlog

    _apply_pending()
    return structlog.get_logger(name)
