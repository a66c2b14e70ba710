"""The SMTP edge: smtplib behind one call, errors sorted into temporary and permanent."""

from __future__ import annotations

import smtplib
import socket
import ssl

from mailbridge.adapters.oauth import token_source, xoauth2
from mailbridge.config import SmtpSettings
from mailbridge.errors import MailServerError, SmtpError


class PermanentSmtpError(SmtpError):
    """The server refused for good (5xx): retrying will not help."""


class SmtpConnection:
    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpConnection":
        s = self.settings
        if s.auth == "xoauth2":
            self._enter_xoauth2()
            return self
        try:
            self._connect()
            if s.username:
                self.smtp.login(s.username, s.password)
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            self.close()
            raise _error(f"cannot reach {s.host}:{s.port}", exc) from None
        return self

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.tls:
            self.smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=ssl.create_default_context())
        else:
            self.smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.starttls:
                self.smtp.starttls(context=ssl.create_default_context())
        return self.smtp

    def _enter_xoauth2(self) -> None:
        """AUTH XOAUTH2; a refused token is read anew and tried once more on a fresh connection."""
        s = self.settings
        tokens = token_source(s, "smtp")
        for attempt in (1, 2):
            try:
                token = tokens.token()
            except MailServerError as exc:
                raise SmtpError(str(exc)) from None
            try:
                smtp = self._connect()
                smtp.ehlo_or_helo_if_needed()  # auth(), unlike login(), does not say EHLO itself
                answer = xoauth2(s.username, token)
                # The initial response carries the token; a refused token may get a 334 challenge
                # (Google's JSON error), which an empty line answers before the final 535.
                smtp.auth("XOAUTH2", lambda challenge=None: answer if challenge is None else "")
                return
            except smtplib.SMTPAuthenticationError as exc:
                self.close()
                if attempt == 2:
                    raise _error(f"XOAUTH2 login as {s.username!r} refused by {s.host}:{s.port}", exc) from None
                tokens.invalidate()
            except (smtplib.SMTPException, OSError, socket.timeout) as exc:
                self.close()
                raise _error(f"cannot reach {s.host}:{s.port}", exc) from None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.smtp = None

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        assert self.smtp is not None
        try:
            refused = self.smtp.sendmail(sender, recipients, raw)
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise _error("sending failed", exc) from None
        if refused:
            code, text = next(iter(refused.values()))
            error = PermanentSmtpError if 500 <= code < 600 else SmtpError
            raise error(f"smtp: recipient refused: {code} {text.decode('utf-8', 'replace')}")


def _error(what: str, exc: BaseException) -> SmtpError:
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code = next(iter(exc.recipients.values()))[0]
    detail = getattr(exc, "smtp_error", None)
    detail = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else (str(exc) or type(exc).__name__)
    detail = " ".join(line.strip() for line in detail.splitlines())  # a multi-line reply (Gmail's 535) in one line
    message = f"smtp: {what}: {code or ''} {detail}".strip()
    if isinstance(code, int) and 500 <= code < 600 and not isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentSmtpError(message)
    return SmtpError(message)
