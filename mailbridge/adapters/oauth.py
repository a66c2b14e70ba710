"""OAuth2 access tokens for SASL XOAUTH2 (Microsoft 365, Gmail).

mailbridge does not talk to an identity provider itself: ops give it either

* `token_command`, run without a shell (`shlex.split`, 30 s timeout) like mutt's
  and aerc's `passwordeval` helpers (`oauth2.py`, `mutt_oauth2.py`, …): the first
  line of its stdout is the access token, or stdout is a JSON object
  `{"access_token": "…", "expires_in": 3599}`; or
* `token_file`, kept fresh by something else (a systemd timer, a sidecar): the
  token, or the same JSON.

A token is cached and read again when it is older than its `expires_in` minus
five minutes (every 50 minutes when the lifetime is unknown), and when a server
refused it: the adapters call `invalidate()` and retry once.

The token is a password: no error message, log line or repr carries it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mailbridge.errors import MailServerError

COMMAND_TIMEOUT = 30.0  # seconds a token_command may take
MARGIN = 5 * 60  # refresh this long before the token's known expiry
UNKNOWN_LIFETIME = 50 * 60  # refresh this often when the lifetime is unknown


class OAuthSettings(Protocol):
    """What TokenSource reads from ImapSettings or SmtpSettings."""

    token_command: str
    token_file: str


def xoauth2(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it."""
    return "user=" + user + "\x01auth=Bearer " + token + "\x01\x01"


class TokenSource:
    """One section's access token (`imap` or `smtp`), cached until it is due."""

    def __init__(self, settings: OAuthSettings, section: str, *,
                 clock: Callable[[], float] = time.time, timeout: float = COMMAND_TIMEOUT):
        self.section = section
        self.command = settings.token_command
        self.file = settings.token_file
        if bool(self.command) == bool(self.file):
            raise MailServerError(f"{section}: xoauth2 needs exactly one of token_command and token_file")
        self.key = f"{section}.token_command" if self.command else f"{section}.token_file"
        self.clock = clock
        self.timeout = timeout
        self._token: str | None = None
        self._fetched_at = 0.0
        self._expires_in: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        state = "cached" if self._token else "empty"
        return f"<TokenSource {self.key} {state}>"

    @property
    def expires_at(self) -> float | None:
        """When the cached token expires (clock time), if its source said so; else None."""
        if self._token is None or self._expires_in is None:
            return None
        return self._fetched_at + self._expires_in

    @property
    def refresh_at(self) -> float | None:
        """When the cached token is read again unasked; None before the first read."""
        if self._token is None:
            return None
        if self._expires_in is None:
            return self._fetched_at + UNKNOWN_LIFETIME
        return self._fetched_at + max(self._expires_in - MARGIN, 0)

    def token(self) -> str:
        """The access token: the cached one while it is fresh, else a new one."""
        with self._lock:
            due = self.refresh_at
            if due is None or self.clock() >= due:
                fetched_at = self.clock()
                token, expires_in = self._parse(self._read())
                self._token, self._expires_in, self._fetched_at = token, expires_in, fetched_at
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (a server refused it): the next token() reads a new one."""
        with self._lock:
            self._token = None
            self._expires_in = None

    # -- reading ---------------------------------------------------------------

    def _read(self) -> str:
        return self._run() if self.command else self._read_file()

    def _run(self) -> str:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise self._error(f"cannot parse: {exc}") from None
        if not argv:
            raise self._error("empty command")
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise self._error(f"timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise self._error(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            why = f"exit {done.returncode}" if done.returncode > 0 else f"killed by signal {-done.returncode}"
            stderr = _first_line(done.stderr.decode("utf-8", "replace"))
            leaked = _first_line(done.stdout.decode("utf-8", "replace"))
            if len(leaked) >= 8 and leaked in stderr:  # a helper that echoes what it printed
                stderr = stderr.replace(leaked, "[token]")
            raise self._error(f"{why}: {stderr}" if stderr else why)
        return done.stdout.decode("utf-8", "replace")

    def _read_file(self) -> str:
        try:
            return Path(self.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise self._error(f"cannot read {self.file!r}: {exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise self._error(f"{self.file!r} is not UTF-8 text") from None

    def _parse(self, output: str) -> tuple[str, float | None]:
        """(token, expires_in) from plain text (first line) or a JSON object."""
        text = output.strip()
        if not text:
            raise self._error("empty output" if self.command else f"{self.file!r} is empty")
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                raise self._error("output starts with '{' but is not JSON") from None
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token.strip():
                raise self._error("JSON without a string access_token")
            expires_in = data.get("expires_in")
            try:
                lifetime = float(expires_in) if expires_in is not None else None
            except (TypeError, ValueError):
                raise self._error("JSON expires_in is not a number of seconds") from None
            return self._checked(token.strip()), lifetime
        return self._checked(text.splitlines()[0].strip()), None

    def _checked(self, token: str) -> str:
        # A bearer token is printable ASCII without spaces (RFC 6750 b64token); anything
        # else would break the SASL string or is a helper's message, not a token.
        if not token or not all(33 <= ord(c) < 127 for c in token):
            raise self._error("output is not a bearer token (expected one line of printable ASCII)")
        return token

    def _error(self, detail: str) -> MailServerError:
        return MailServerError(f"{self.key} failed: {detail}")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


# One source per section and setting, shared by every connection: the adapters open
# a connection per poll or outbox round, the token outlives them.
_sources: dict[tuple[str, str, str], TokenSource] = {}
_sources_lock = threading.Lock()


def token_source(settings: OAuthSettings, section: str) -> TokenSource:
    key = (section, settings.token_command, settings.token_file)
    with _sources_lock:
        source = _sources.get(key)
        if source is None:
            source = _sources[key] = TokenSource(settings, section)
        return source
