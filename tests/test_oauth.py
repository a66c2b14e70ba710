"""OAuth2 (SASL XOAUTH2) for IMAP and SMTP, against real servers.

* IMAP: a second Dovecot whose `passdb oauth2` asks a token-introspection
  endpoint (a tiny http.server here) whether a bearer token is active and whose
  it is -- the way Dovecot checks tokens for real deployments.
* SMTP: aiosmtpd with an `auth_XOAUTH2` handler that, like Gmail, answers a bad
  token with a 334 JSON challenge before its 535.
* TokenSource: real commands (small Python scripts) and files; only the clock
  is injected.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import smtplib
import sys
import textwrap
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from mailbridge.adapters import oauth
from mailbridge.adapters.imap import ImapConnection, imap_session
from mailbridge.adapters.oauth import MARGIN, UNKNOWN_LIFETIME, TokenSource, xoauth2
from mailbridge.adapters.smtp import SmtpConnection
from mailbridge.config import ImapSettings, SmtpSettings, settings_from_dict
from mailbridge.errors import ConfigError, ImapError, MailServerError, SmtpError
from servers import HOST, Dovecot, dovecot_available, free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

USER = "alice@example.com"
IMAP_TOKEN = "ya29.imap-token-ALICE-0123456789"
SMTP_TOKEN = "EwB4A8l6BAAU.smtp-token-ALICE-9876543210"
WRONG_TOKEN = "ya29.wrong-token-MALLORY-000000000"


@pytest.fixture(autouse=True)
def _fresh_token_cache(monkeypatch):
    """Every test starts without cached tokens (the registry is process-wide)."""
    monkeypatch.setattr(oauth, "_sources", {})


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} -- CI must install it", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# Token commands: real programs
# ---------------------------------------------------------------------------

def command(tmp_path: Path, body: str, name: str = "token-helper.py") -> str:
    """A token_command running a small Python script (as ops would run oauth2.py)."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def rotating_command(tmp_path: Path, outputs: list[str], name: str = "rotating.py") -> tuple[str, Path]:
    """A token_command printing outputs[0], then outputs[1], … (the last one forever); and its run counter."""
    state = tmp_path / f"{name}.runs"
    state.write_text("0")
    body = f"""
        from pathlib import Path
        outputs = {outputs!r}
        state = Path({str(state)!r})
        runs = int(state.read_text())
        state.write_text(str(runs + 1))
        print(outputs[min(runs, len(outputs) - 1)])
    """
    return command(tmp_path, body, name), state


def runs(state: Path) -> int:
    return int(state.read_text())


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def imap_oauth(**values) -> ImapSettings:
    return ImapSettings(auth="xoauth2", username=USER, **values)


# ---------------------------------------------------------------------------
# TokenSource
# ---------------------------------------------------------------------------

def test_xoauth2_string():
    assert xoauth2("a@b.c", "T0K") == "user=a@b.c\x01auth=Bearer T0K\x01\x01"


def test_command_prints_the_token_on_its_first_line(tmp_path):
    cmd = command(tmp_path, f"print({IMAP_TOKEN!r}); print('second line is ignored')")
    source = TokenSource(imap_oauth(token_command=cmd), "imap")
    assert source.token() == IMAP_TOKEN
    assert source.expires_at is None  # a plain token says nothing about its lifetime
    assert IMAP_TOKEN not in repr(source)


def test_command_argument_with_spaces_is_one_argument_without_a_shell(tmp_path):
    cmd = command(tmp_path, "import sys; print(sys.argv[1].replace(' ', '_'))") + " 'two words' ; echo"
    # shlex.split, no shell: ';' and 'echo' are plain arguments, not a second command
    assert TokenSource(imap_oauth(token_command=cmd), "imap").token() == "two_words"


def test_json_with_expires_in_is_cached_until_five_minutes_before_expiry(tmp_path):
    outputs = [json.dumps({"access_token": f"token-{n}", "expires_in": 3600, "token_type": "Bearer"}) for n in (1, 2)]
    cmd, state = rotating_command(tmp_path, outputs)
    clock = Clock()
    source = TokenSource(imap_oauth(token_command=cmd), "imap", clock=clock)
    assert source.expires_at is None  # nothing read yet
    assert source.token() == "token-1"
    start = clock.now
    assert source.expires_at == start + 3600
    clock.now = start + 3600 - MARGIN - 1
    assert source.token() == "token-1" and runs(state) == 1  # still cached
    clock.now = start + 3600 - MARGIN
    assert source.token() == "token-2" and runs(state) == 2  # refreshed
    assert source.expires_at == clock.now + 3600


def test_unknown_lifetime_refreshes_every_50_minutes(tmp_path):
    cmd, state = rotating_command(tmp_path, ["plain-1", "plain-2"])
    clock = Clock()
    source = TokenSource(imap_oauth(token_command=cmd), "imap", clock=clock)
    assert source.token() == "plain-1"
    clock.now += UNKNOWN_LIFETIME - 1
    assert source.token() == "plain-1" and runs(state) == 1
    clock.now += 1
    assert source.token() == "plain-2" and runs(state) == 2
    assert UNKNOWN_LIFETIME == 50 * 60


def test_invalidate_reads_a_new_token(tmp_path):
    cmd, state = rotating_command(tmp_path, ["first", "second"])
    source = TokenSource(imap_oauth(token_command=cmd), "imap")
    assert source.token() == "first"
    assert source.token() == "first" and runs(state) == 1
    source.invalidate()
    assert source.token() == "second" and runs(state) == 2


def test_failing_command_is_one_line_naming_the_key_without_the_token(tmp_path):
    cmd = command(tmp_path, f"""
        import sys
        print({IMAP_TOKEN!r})  # printed, but the exit code says it is not to be trusted
        print("refresh token revoked: AADSTS70000", file=sys.stderr)
        print("Trace ID: 1234", file=sys.stderr)
        sys.exit(1)
    """)
    with pytest.raises(MailServerError) as failed:
        TokenSource(imap_oauth(token_command=cmd), "imap").token()
    message = str(failed.value)
    assert message == "imap.token_command failed: exit 1: refresh token revoked: AADSTS70000"
    assert IMAP_TOKEN not in message


def test_a_helper_echoing_its_token_on_stderr_is_redacted(tmp_path):
    cmd = command(tmp_path, f"""
        import sys
        print({SMTP_TOKEN!r})
        print("rejected {SMTP_TOKEN}", file=sys.stderr)
        sys.exit(3)
    """)
    with pytest.raises(MailServerError) as failed:
        TokenSource(SmtpSettings(auth="xoauth2", username=USER, token_command=cmd), "smtp").token()
    assert str(failed.value) == "smtp.token_command failed: exit 3: rejected [token]"


@pytest.mark.parametrize(
    "body, detail",
    [
        ("pass", "empty output"),
        ("print('   ')", "empty output"),
        ("import time; time.sleep(5)", "timed out after 0.5 s"),
        ("print('{\"expires_in\": 60}')", "JSON without a string access_token"),
        ("print('{not json')", "not JSON"),
        ("print('Open https://microsoft.com/devicelogin and enter the code')", "not a bearer token"),
    ],
)
def test_unusable_command_output_is_an_error(tmp_path, body, detail):
    source = TokenSource(imap_oauth(token_command=command(tmp_path, body)), "imap", timeout=0.5)
    with pytest.raises(MailServerError) as failed:
        source.token()
    message = str(failed.value)
    assert message.startswith("imap.token_command failed: ") and detail in message
    assert "\n" not in message


def test_command_that_cannot_be_started(tmp_path):
    source = TokenSource(imap_oauth(token_command=str(tmp_path / "no-such-helper") + " --user x"), "imap")
    with pytest.raises(MailServerError, match=r"^imap\.token_command failed: cannot run '.*no-such-helper': "):
        source.token()


def test_token_file_plain_and_json(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(IMAP_TOKEN + "\n")
    clock = Clock()
    source = TokenSource(imap_oauth(token_file=str(token_file)), "imap", clock=clock)
    assert source.token() == IMAP_TOKEN
    token_file.write_text(json.dumps({"access_token": "renewed", "expires_in": 600}))
    assert source.token() == IMAP_TOKEN  # cached: a file is not read on every login
    clock.now += UNKNOWN_LIFETIME
    assert source.token() == "renewed"
    assert source.expires_at == clock.now + 600


def test_missing_token_file_names_the_key(tmp_path):
    source = TokenSource(imap_oauth(token_file=str(tmp_path / "gone")), "imap")
    with pytest.raises(MailServerError, match=r"^imap\.token_file failed: cannot read '.*gone': No such file"):
        source.token()


def test_relative_token_file_is_read_from_credentials_directory(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp-token").write_text(json.dumps({"access_token": SMTP_TOKEN, "expires_in": 3599}))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = settings_from_dict({"smtp": {"auth": "xoauth2", "username": USER, "token_file": "smtp-token"}})
    assert settings.smtp.token_file == str(credentials / "smtp-token")
    assert TokenSource(settings.smtp, "smtp").token() == SMTP_TOKEN


def test_token_sources_are_shared_between_connections(tmp_path):
    settings = imap_oauth(token_command=command(tmp_path, "print('x')"))
    assert oauth.token_source(settings, "imap") is oauth.token_source(settings.model_copy(), "imap")
    assert oauth.token_source(settings, "imap") is not oauth.token_source(settings, "smtp")


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("section", ["imap", "smtp"])
@pytest.mark.parametrize(
    "values, message",
    [
        ({"auth": "xoauth2", "username": USER}, 'auth = "xoauth2" needs exactly one of token_command and token_file'),
        ({"auth": "xoauth2", "username": USER, "token_command": "helper", "token_file": "f"}, "exactly one of"),
        ({"auth": "xoauth2", "token_command": "helper"}, "needs username"),
        ({"token_command": "helper"}, 'token_command is used only with auth = "xoauth2"'),
        ({"token_file": "f"}, 'token_file is used only with auth = "xoauth2"'),
        ({"auth": "oauth"}, "auth: Input should be 'password' or 'xoauth2'"),
    ],
)
def test_config_errors_name_the_section(section, values, message):
    with pytest.raises(ConfigError) as failed:
        settings_from_dict({section: values}, "mailbridge.toml")
    assert str(failed.value).startswith(f"mailbridge.toml: {section}")
    assert message in str(failed.value)


def test_mailboxes_take_the_same_keys(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"mailboxes\[0\]: auth = \"xoauth2\" needs exactly one of"):
        settings_from_dict({"mailboxes": [{"name": "billing", "auth": "xoauth2", "username": USER}]})
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = settings_from_dict({"mailboxes": [{"name": "billing", "auth": "xoauth2", "username": USER,
                                                  "token_file": "billing-token"}]})
    assert settings.mailboxes[0].token_file == str(tmp_path / "billing-token")


def test_password_stays_the_default():
    settings = settings_from_dict({})
    assert settings.imap.auth == settings.smtp.auth == "password"
    assert settings.imap.token_command == settings.imap.token_file == ""


# ---------------------------------------------------------------------------
# IMAP: Dovecot with passdb oauth2 and a token-introspection endpoint
# ---------------------------------------------------------------------------

class Introspection:
    """RFC 7662 token introspection on 127.0.0.1: Dovecot POSTs `token=…` here."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens  # token -> username
        self.asked: list[str] = []
        introspection = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                token = parse_qs(self.rfile.read(length).decode()).get("token", [""])[0]
                introspection.asked.append(token)
                user = introspection.tokens.get(token)
                answer = {"active": True, "username": user} if user else {"active": False}
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.httpd.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class OAuthDovecot(Dovecot):
    """The test Dovecot plus XOAUTH2/OAUTHBEARER checked by `passdb oauth2` (password logins still work)."""

    def __init__(self, root, introspection_url: str, **kwargs):
        super().__init__(root, **kwargs)
        self.introspection_url = introspection_url

    def _prepare(self) -> None:
        super()._prepare()
        ext = self.root / "dovecot-oauth2.conf.ext"
        ext.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        text = self.conf.read_text()
        mechanisms = "auth_mechanisms = plain login\n"
        static = "passdb {\n  driver = static\n"
        assert mechanisms in text and static in text, "tests/servers.py's Dovecot config changed"
        text = text.replace(mechanisms, "auth_mechanisms = plain login xoauth2 oauthbearer\n")
        text = text.replace(static, (
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {ext}\n}}\n"
            "passdb {\n  driver = static\n  mechanisms = plain login\n"))
        self.conf.write_text(text)


@pytest.fixture(scope="module")
def introspection():
    server = Introspection({IMAP_TOKEN: USER})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_dovecot(tmp_path_factory, introspection):
    if not dovecot_available():
        _missing("dovecot-imapd not installed (apt-get install -y dovecot-imapd)")
    server = OAuthDovecot(tmp_path_factory.mktemp("oauth-dovecot"), introspection.url)
    server.start()
    yield server
    server.cleanup()


def imap_settings(server: Dovecot, **values) -> ImapSettings:
    values.setdefault("username", USER)
    return ImapSettings(host=server.host, port=server.port, tls=False, auth="xoauth2", timeout=10, **values)


def test_imap_xoauth2_login_with_a_token_command(oauth_dovecot, introspection, tmp_path):
    introspection.asked.clear()
    settings = imap_settings(oauth_dovecot, token_command=command(tmp_path, f"print({IMAP_TOKEN!r})"))
    with imap_session(settings) as imap:
        assert imap.ensure_folders(["mailbridge/processed"]) == ["mailbridge/processed"]
        state = imap.select("INBOX")
        assert state.name == "INBOX" and state.exists == 0
    assert introspection.asked == [IMAP_TOKEN]  # Dovecot really asked about our token
    assert f"user=<{USER}>, method=XOAUTH2" in oauth_dovecot.log_text()


def test_imap_xoauth2_token_file_from_credentials_directory(oauth_dovecot, tmp_path, monkeypatch):
    (tmp_path / "imap-token").write_text(json.dumps({"access_token": IMAP_TOKEN, "expires_in": 3599}))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = settings_from_dict({"imap": {"host": HOST, "port": oauth_dovecot.port, "tls": False,
                                            "auth": "xoauth2", "username": USER, "token_file": "imap-token"}}).imap
    connection = ImapConnection(settings).open()
    try:
        assert connection.select("INBOX").name == "INBOX"
    finally:
        connection.close()


def test_imap_wrong_token_is_one_line_without_the_token(oauth_dovecot, tmp_path):
    cmd, state = rotating_command(tmp_path, [WRONG_TOKEN])
    with pytest.raises(ImapError) as failed:
        ImapConnection(imap_settings(oauth_dovecot, token_command=cmd)).open()
    message = str(failed.value)
    assert message.startswith(f"imap: XOAUTH2 login as '{USER}' refused by {HOST}:{oauth_dovecot.port}: ")
    assert "AUTHENTICATIONFAILED" in message or "Authentication failed" in message
    assert "\n" not in message and WRONG_TOKEN not in message and "Bearer" not in message
    assert runs(state) == 2  # refused once, read anew, tried once more, then given up


def test_imap_token_of_another_user_is_refused(oauth_dovecot, tmp_path):
    settings = imap_settings(oauth_dovecot, username="bob@example.com",
                             token_command=command(tmp_path, f"print({IMAP_TOKEN!r})"))
    with pytest.raises(ImapError, match="refused"):
        ImapConnection(settings).open()


def test_imap_refused_token_is_refreshed_once(oauth_dovecot, tmp_path):
    # A cached token revoked or expired early: the server refuses it, the next one works.
    cmd, state = rotating_command(tmp_path, [WRONG_TOKEN, IMAP_TOKEN])
    settings = imap_settings(oauth_dovecot, token_command=cmd)
    with imap_session(settings) as imap:
        assert imap.select("INBOX").name == "INBOX"
    assert runs(state) == 2
    with imap_session(settings):  # the good token is cached now
        pass
    assert runs(state) == 2


def test_imap_failing_token_command_is_an_imap_error(oauth_dovecot, tmp_path):
    cmd = command(tmp_path, "import sys; sys.exit('no refresh token in /var/lib/mailbridge/oauth')")
    with pytest.raises(ImapError) as failed:
        ImapConnection(imap_settings(oauth_dovecot, token_command=cmd)).open()
    assert str(failed.value) == "imap.token_command failed: exit 1: no refresh token in /var/lib/mailbridge/oauth"


def test_imap_mailbox_entry_names_itself_in_token_errors(oauth_dovecot, tmp_path):
    cmd = command(tmp_path, "import sys; sys.exit('helper broke')")
    settings = settings_from_dict({"mailboxes": [{
        "name": "billing", "host": HOST, "port": oauth_dovecot.port, "tls": False,
        "auth": "xoauth2", "username": USER, "token_command": cmd}]}).mailboxes[0]
    with pytest.raises(ImapError) as failed:
        ImapConnection(settings).open()
    assert str(failed.value) == "mailboxes.billing.token_command failed: exit 1: helper broke"


def test_imap_password_login_unchanged(oauth_dovecot):
    mailbox = oauth_dovecot.new_mailbox()
    settings = ImapSettings(**mailbox.imap_settings())
    assert settings.auth == "password"
    with imap_session(settings) as imap:
        assert imap.select("INBOX").exists == 0


# ---------------------------------------------------------------------------
# SMTP: aiosmtpd with an XOAUTH2 mechanism
# ---------------------------------------------------------------------------

class XOAuth2Handler:
    """Accepts only `user=USER auth=Bearer SMTP_TOKEN`; refuses like Gmail (334 JSON, then 535)."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[str] = []
        self.initial_responses = 0

    async def auth_XOAUTH2(self, server, args):  # noqa: N802 -- aiosmtpd finds auth_<MECHANISM>
        from aiosmtpd.smtp import MISSING, AuthResult  # handled=False: aiosmtpd sends `message`

        if len(args) == 2:
            self.initial_responses += 1
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        if fields.get("user") == USER and fields.get("auth") == f"Bearer {SMTP_TOKEN}":
            self.logins.append(fields["user"])
            return AuthResult(success=True, auth_data=fields["user"])
        error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
        answer = await server.challenge_auth(error)  # the client must answer with an empty line
        if answer is MISSING or answer != b"":
            return AuthResult(success=False, handled=False, message="501 5.5.2 expected an empty response")
        return AuthResult(success=False, handled=False, message="535-5.7.8 Username and Password not accepted.\r\n"
                                                  "535 5.7.8 https://support.google.com/mail/?p=BadCredentials")

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
def xoauth2_smtp():
    from aiosmtpd.controller import Controller

    handler = XOAuth2Handler()
    controller = Controller(handler, hostname=HOST, port=free_port(), auth_require_tls=False,
                            auth_required=True, decode_data=False, ready_timeout=10)
    controller.start()
    yield controller, handler
    controller.stop()


def smtp_settings(controller, **values) -> SmtpSettings:
    return SmtpSettings(host=HOST, port=controller.port, starttls=False, tls=False, auth="xoauth2",
                        username=USER, from_address="support@example.com", timeout=10, **values)


def raw_message() -> bytes:
    message = EmailMessage()
    message["From"] = "support@example.com"
    message["To"] = "customer@example.net"
    message["Subject"] = "[CRX-000001] Re: OAuth"
    message.set_content("Sent with XOAUTH2.")
    return message.as_bytes()


def test_smtp_xoauth2_sends_mail(xoauth2_smtp, tmp_path):
    controller, handler = xoauth2_smtp
    settings = smtp_settings(controller, token_command=command(tmp_path, f"print({SMTP_TOKEN!r})"))
    with SmtpConnection(settings) as connection:
        connection.send(raw_message(), "support@example.com", ["customer@example.net"])
    assert handler.logins == [USER] and handler.initial_responses == 1  # token in the initial response
    [(sender, recipients, raw)] = handler.messages
    assert sender == "support@example.com" and recipients == ["customer@example.net"]
    assert b"Sent with XOAUTH2." in raw


def test_smtp_without_auth_is_refused_by_this_server(xoauth2_smtp):
    controller, _ = xoauth2_smtp
    with smtplib.SMTP(HOST, controller.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused):
            smtp.sendmail("support@example.com", ["customer@example.net"], raw_message())


def test_smtp_wrong_token_is_one_line_without_the_token(xoauth2_smtp, tmp_path):
    controller, handler = xoauth2_smtp
    cmd, state = rotating_command(tmp_path, [WRONG_TOKEN])
    with pytest.raises(SmtpError) as failed:
        with SmtpConnection(smtp_settings(controller, token_command=cmd)):
            pass
    message = str(failed.value)
    assert message.startswith(f"smtp: XOAUTH2 login as '{USER}' refused by {HOST}:{controller.port}: 535 ")
    assert "Username and Password not accepted" in message
    assert "\n" not in message and WRONG_TOKEN not in message and "Bearer" not in message
    assert runs(state) == 2 and handler.logins == [] and handler.messages == []


def test_smtp_refused_token_is_refreshed_once(xoauth2_smtp, tmp_path):
    controller, handler = xoauth2_smtp
    cmd, state = rotating_command(tmp_path, [json.dumps({"access_token": WRONG_TOKEN, "expires_in": 3599}),
                                             json.dumps({"access_token": SMTP_TOKEN, "expires_in": 3599})])
    settings = smtp_settings(controller, token_command=cmd)
    with SmtpConnection(settings) as connection:
        connection.send(raw_message(), "support@example.com", ["customer@example.net"])
    with SmtpConnection(settings) as connection:  # cached
        connection.send(raw_message(), "support@example.com", ["customer@example.net"])
    assert runs(state) == 2 and handler.logins == [USER, USER] and len(handler.messages) == 2


def test_smtp_failing_token_command_is_an_smtp_error(xoauth2_smtp, tmp_path):
    controller, _ = xoauth2_smtp
    cmd = command(tmp_path, "import sys; print('invalid_grant: AADSTS50173', file=sys.stderr); sys.exit(2)")
    with pytest.raises(SmtpError) as failed:
        with SmtpConnection(smtp_settings(controller, token_command=cmd)):
            pass
    assert str(failed.value) == "smtp.token_command failed: exit 2: invalid_grant: AADSTS50173"
