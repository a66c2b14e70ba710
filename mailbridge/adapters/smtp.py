"""The SMTP edge: smtplib behind one call, errors sorted into temporary and permanent.

Internationalised addresses (RFC 6530): where the server offers SMTPUTF8 they go as
they are, envelope and headers in UTF-8. Where it does not, an internationalised
domain goes as its A-label (`user@árvíz.hu` -> `user@xn--rvz-dla6d.hu`): that is the
same domain in DNS, so the customer still gets the acknowledgement, which is what a
help desk wants; a non-ASCII local part has no ASCII form, so that one message fails
for good, saying why.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl

import idna

from mailbridge.adapters.oauth import token_source, xoauth2
from mailbridge.config import SmtpSettings
from mailbridge.errors import MailServerError, SmtpError


class PermanentSmtpError(SmtpError):
    """The server refused for good (5xx), or the message cannot be put on the wire: retrying will not help."""


class NeedsSmtputf8(PermanentSmtpError):
    """An address only SMTPUTF8 can carry, and our server does not offer it: our limit, not the recipient's."""


# What an envelope can carry: no space, control character, bracket or list separator.
_LOCAL_PART = re.compile(r"[^\s\x00-\x1f\x7f<>()\[\],;:\\\"@]{1,64}\Z")
_ASCII_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")


def address_for_server(address: str, smtputf8: bool) -> str:
    """`address` as a server takes it in the envelope and the To header (see the module's note).

    IDNA 2008 (the `idna` package), not Python's IDNA 2003 codec: that one maps `straße.de`
    to `strasse.de`, another domain, so the mail would go to someone else.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not _LOCAL_PART.match(local) or not domain or len(address) > 320:
        raise PermanentSmtpError("smtp: not a valid address for the envelope")
    if domain.isascii():
        if not _ASCII_DOMAIN.match(domain):
            raise PermanentSmtpError("smtp: not a valid address for the envelope")
    else:
        try:
            a_label = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise PermanentSmtpError("smtp: not a valid address for the envelope (domain)") from None
        domain = domain if smtputf8 else a_label
    if not smtputf8 and not local.isascii():
        raise NeedsSmtputf8("smtp: the address has a non-ASCII local part, which needs SMTPUTF8, "
                            "and the SMTP server does not offer it")
    return f"{local}@{domain}"


class SmtpConnection:
    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpConnection":
        s = self.settings
        if s.auth == "xoauth2":
            self._enter_xoauth2()
            return self
        password = s.login_password() if s.username else ""  # read now: no command before needs it
        try:
            self._connect()
            if s.username:
                self.smtp.login(s.username, password)
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

    def _reset(self) -> None:
        try:
            self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()  # the next send finds no connection and says so as a server error

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self.smtp = None

    def offers_smtputf8(self) -> bool:
        """Whether the server takes internationalised addresses as they are (RFC 6531). No
        answer counts as no: the send that follows meets the same trouble and says so."""
        assert self.smtp is not None
        try:
            self.smtp.ehlo_or_helo_if_needed()
        except (smtplib.SMTPException, OSError):
            return False
        return self.smtp.has_extn("smtputf8")

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        """Sends `raw`; with SMTPUTF8 when an address or header needs it (see `address_for_server`)."""
        assert self.smtp is not None
        end = raw.find(b"\r\n\r\n")
        head = raw if end < 0 else raw[:end]  # the headers alone: the body is ASCII (QP, base64)
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients) and head.isascii())
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        try:
            refused = self.smtp.sendmail(sender, recipients, raw, mail_options=options)
        except smtplib.SMTPNotSupportedError:
            raise NeedsSmtputf8("smtp: the message needs SMTPUTF8, and the SMTP server does not offer it") from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise _error("sending failed", exc) from None
        except Exception:
            # Not the server's answer but the message's fault (smtplib refusing what it cannot
            # encode, a line break in an address): the caller fails that message. The transaction
            # may be half open (MAIL FROM said): reset it, or the next message meets a 503.
            self._reset()
            raise
        finally:
            if self.smtp is not None:
                self.smtp.command_encoding = "ascii"  # SMTPUTF8 is per message; smtplib would keep it on
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
