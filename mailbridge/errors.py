"""The few error types that cross module boundaries.

Adapters turn library errors (imapclient, smtplib, OSError, SQLAlchemy) into
these; only the job loop and the CLI catch broadly.
"""


class MailbridgeError(Exception):
    """Base of every error mailbridge raises on purpose."""


class ConfigError(MailbridgeError):
    """The configuration is wrong; the message names the key and the file."""


class UsageError(MailbridgeError):
    """A command-line value is unknown (ticket ID, status, …); exit 2."""


class MailServerError(MailbridgeError):
    """A mail server could not be reached or refused; retried with back-off."""


class ImapError(MailServerError):
    pass


class SmtpError(MailServerError):
    pass


class StorageError(MailbridgeError):
    """The database or the attachment store failed (locked, disk full, …)."""


class UnparseableMail(MailbridgeError):
    """A message no sensible ticket can be read from; it is quarantined."""


def error_fields(exc: BaseException) -> dict[str, str]:
    """What a log line may say about `exc`: the message of our own errors (written to be
    logged), only the type and the raising line of anything else (a library's message may
    quote an address or a line of a customer's mail)."""
    if isinstance(exc, MailbridgeError):
        return {"error_type": type(exc).__name__, "error": str(exc)[:300]}
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename.rpartition('/')[2]}:{frame.tb_lineno}" if frame else ""
    return {"error_type": type(exc).__name__, "raised_at": where}
