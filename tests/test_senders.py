"""Senders that real software writes, and headers read right (issue 15).

Through the real intake (Dovecot, `poll --once`, `tick`, an aiosmtpd sink): a From without
angle brackets still gets its ticket and its acknowledgement; where From has no address,
Reply-To names the reporter and the ticket says so; a fallback address never makes a mail
an agent's. Then what parse alone shows: the header block of a mail that was quarantined as
having none, true quarantine reasons, encoded words (RFC 2047) and crafted From fields.
The corpus (tests/corpus/cases.toml) holds the rest.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from factory import simple_mail
from mailbridge.errors import UnparseableMail
from mailbridge.intake.headers import decode_words, mended_head
from mailbridge.intake.parse import parse_mail

CORPUS = Path(__file__).parent / "corpus"
AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Crossec Norma", "Egyéb"],
           "fallback": True}]
BORDER = "mx.crossec.com"
PASS = f"Authentication-Results: {BORDER}; dkim=pass header.d=crossec.com header.i=@crossec.com\r\n"


def to(sink, address: str) -> list:
    return [m for m in sink.messages if str(m["To"]).lower().endswith(address)]


def event_types(desk, ticket: str) -> list[str]:
    return [e["type"] for e in desk.ticket(ticket)["events"]]


# --- through the real intake -------------------------------------------------------------------

@pytest.mark.parametrize("file, reporter, name", [
    ("from_bare_address_bare_msgid.eml", "nagy.peter@example.hu", ""),
    ("win1250_no_brackets_mbox_line.eml", "kovacs.jozsef@example.hu", "Kovács József"),
], ids=["bare-address", "windows-1250-mbox-line"])
def test_a_from_without_angle_brackets_gets_a_ticket_a_reporter_and_an_acknowledgement(
        mailbox, smtp_sink, mailbridge_for, file, reporter, name):
    desk = mailbridge_for(mailbox, smtp_sink)
    raw = (CORPUS / file).read_bytes()
    mailbox.deliver(raw)
    assert "1 new_ticket" in desk("poll", "--once").stdout
    desk("tick")
    [ticket] = desk.tickets()
    assert (ticket["reporter_email"], ticket["reporter_name"]) == (reporter, name)
    assert "no_sender" not in ticket["flags"]
    assert desk("quarantine", "list", "--json").stdout.strip() in ("[]", "")
    [ack] = to(smtp_sink, reporter)
    assert ticket["id"] in str(ack["Subject"])
    # The bare Message-Id got its brackets: the acknowledgement answers the customer's mail.
    [customer] = [m for m in desk.ticket(ticket["id"])["messages"] if m["direction"] == "in"]
    assert str(ack["In-Reply-To"]) == customer["message_id"]
    assert customer["message_id"].startswith("<") and customer["message_id"].endswith(">")


def test_from_without_an_address_and_reply_to_the_reporter_comes_from_reply_to_and_the_ticket_says_so(
        mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink)
    mailbox.deliver((CORPUS / "from_no_address_reply_to.eml").read_bytes())
    assert "1 new_ticket" in desk("poll", "--once").stdout
    desk("tick")
    [ticket] = desk.tickets()
    assert (ticket["reporter_email"], ticket["reporter_name"]) == ("molnar.kata@example.hu", "Molnár Kata")
    shown = desk.ticket(ticket["id"])
    [source] = [e for e in shown["events"] if e["type"] == "ticket.reporter_from"]
    assert source["detail"] == {"field": "reply-to"}
    assert [m["sender"] for m in shown["messages"] if m["direction"] == "in"] == ["molnar.kata@example.hu"]
    [ack] = to(smtp_sink, "molnar.kata@example.hu")
    assert ticket["id"] in str(ack["Subject"])


def test_a_from_with_an_address_leaves_the_ticket_without_a_reporter_source_event(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink)
    mailbox.deliver(simple_mail(1, sender="toth.gabor@example.com").replace(
        b"To: ", b"Reply-To: other@example.com\nTo: ", 1))
    desk("poll", "--once")
    [ticket] = desk.tickets()
    assert ticket["reporter_email"] == "toth.gabor@example.com"  # From decides, Reply-To does not
    assert "ticket.reporter_from" not in event_types(desk, ticket["id"])


def _nameless(body: str, reply_to: str, subject: str, auth: str = PASS) -> bytes:
    """A mail whose From names an agent but holds no address; Reply-To is the agent's."""
    message = EmailMessage()
    message["From"] = '"Kiss Anna"'
    message["Reply-To"] = f"Kiss Anna <{reply_to}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="x.example")
    message.set_content(body)
    return auth.encode() + bytes(message)


def test_a_fallback_address_never_makes_a_mail_the_agents(mailbox, smtp_sink, mailbridge_for):
    """From without an address + Reply-To: an agent's address (even with the border's pass for
    crossec.com): not her reply, not her desk command, not a ticket in her name."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, security={"trusted_authserv_ids": [BORDER]})
    mailbox.deliver(simple_mail(1, sender="anna@example.hu", subject="Crossec Norma export hiba"))
    desk("poll", "--once")
    desk("tick")
    [customers] = desk.tickets()
    status = customers["status"]
    smtp_sink.clear()

    mailbox.deliver(_nameless("#resolve\nMegoldottuk.\n", "kiss.anna@crossec.com",
                              f"Re: [{customers['id']}] Crossec Norma export hiba"))
    reply = desk("poll", "--once").stdout
    assert "1 outsider" in reply and "agent_" not in reply  # on her ticket: recorded as nobody's
    assert desk.tickets()[0]["status"] == status
    assert "ticket.resolved" not in event_types(desk, customers["id"])

    mailbox.deliver(_nameless("#open anna@example.hu\nTelefonon jelezte, hogy nem megy az export.\n",
                              "kiss.anna@crossec.com", "Telefonos bejelentés"))
    command = desk("poll", "--once").stdout
    assert "1 refused" in command and "agent_" not in command  # a desk command only from From, authenticated
    assert len(desk.tickets()) == 1

    mailbox.deliver(_nameless("Kérem, hívjanak vissza.\n", "kiss.anna@crossec.com", "Visszahívás"))
    assert "1 new_ticket" in desk("poll", "--once").stdout
    desk("tick")
    [opened] = [t for t in desk.tickets() if t["id"] != customers["id"]]
    assert opened["reporter_email"] is None and "no_sender" in opened["flags"]  # not opened in her name
    shown = desk.ticket(opened["id"])["messages"]
    assert [m["sender"] for m in shown if m["direction"] == "in"] == [""]  # nor shown as hers
    events = event_types(desk, opened["id"])
    assert "ticket.reporter_from" not in events
    assert not {"ack.queued", "ack.sent"} & set(events)  # nobody acknowledged "her"
    assert to(smtp_sink, "anna@example.hu") == []  # the customer heard of no #resolve


# --- the header block: never "no header fields" for a mail that has them ----------------------

WIN1250 = ("From: Kovács József kovacs.jozsef@example.hu\nTo: support@crossec.com\nSubject: Számla hibás\n"
           "Date: Mon, 30 Nov 2026 09:14:02 +0100\nMessage-ID: <x1.20261130@example.hu>\nMIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=windows-1250\nContent-Transfer-Encoding: 8bit\n\n"
           "Tisztelt Ügyfélszolgálat!\nA számla bruttó összege hibás, kérem javítsák.\n").encode("cp1250")


def _crlf(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("raw", [
    WIN1250,
    _crlf(WIN1250),
    b"From kovacs.jozsef@example.hu Mon Nov 30 09:14:02 2026\n" + WIN1250,  # an mbox line: Python skips it
    b">From kovacs.jozsef@example.hu Mon Nov 30 09:14:02 2026\n" + WIN1250,  # escaped: no colon
    _crlf(b">From kovacs.jozsef@example.hu Mon Nov 30 09:14:02 2026\n" + WIN1250),
    b"\xef\xbb\xbf" + WIN1250,  # a UTF-8 byte order mark from an editor
    b"\n" + WIN1250,
    b"\r\n" + _crlf(WIN1250),
    b"Microsoft Mail Internet Headers Version 2.0\r\n" + _crlf(WIN1250),  # Outlook's saved headers
    b"  " + WIN1250,  # the first field indented
    WIN1250.replace(b"To: ", "Kedves Ügyfélszolgálat\nTo: ".encode("cp1250")),  # a stray line between fields
    WIN1250.replace(b"MIME-Version: ", b"X-Mailer : Foo 1.0\nMIME-Version: "),  # "Name :"
    b"X-Spam-Flag : NO\n" + WIN1250,
    WIN1250.replace(b"\n", b"\r"),  # old Mac line ends
    WIN1250.replace(b"\n", b"\r\r\n"),  # CRLF converted twice
], ids=["lf", "crlf", "mbox-from", "mbox-escaped-from", "mbox-escaped-from-crlf", "bom", "blank-first",
        "crlf-blank-first", "outlook-title-line", "indented-first", "line-without-colon", "name-space-colon",
        "first-name-space-colon", "cr-only", "cr-cr-lf"])
def test_a_mail_with_header_fields_is_read_with_them(raw):
    mail = parse_mail(raw, 100000)
    assert (mail.sender.email, mail.sender.name) == ("kovacs.jozsef@example.hu", "Kovács József")
    assert mail.subject == "Számla hibás"
    assert mail.message_id == "<x1.20261130@example.hu>"
    assert "A számla bruttó összege hibás" in mail.text
    assert "Content-Type" not in mail.text  # the fields did not fall into the body


def test_an_ordinary_mail_is_not_mended():
    assert mended_head(WIN1250) is None
    assert mended_head(_crlf(WIN1250)) is None


@pytest.mark.parametrize("raw, reason", [
    (b"", "empty message (0 bytes)"),
    (b"   \r\n\r\n  \t\r\n", "empty message: only white space in its first 12 bytes"),
    (b"Dear support,\nmy invoice is wrong.\nThanks\n", "no header fields"),
    (b"\n\n\n\n\n" + WIN1250, "no header fields"),  # more stray lines than a mail has before its fields
    (b"X-Foo: 1\nX-Bar: 2\n\nhello\n", "2 header field(s), but none a mail has"),
], ids=["empty", "white-space", "plain-text", "too-many-leading-lines", "no-mail-fields"])
def test_a_quarantine_reason_says_what_is_true(raw, reason):
    with pytest.raises(UnparseableMail) as refused:
        parse_mail(raw, 100000)
    assert str(refused.value).startswith(reason)


# --- From: what is an address, and what never is --------------------------------------------------

def _from(value: bytes, *extra: bytes) -> bytes:
    return (b"From: " + value + b"\r\n" + b"".join(e + b"\r\n" for e in extra)
            + b"To: support@crossec.com\r\nSubject: x\r\nMessage-ID: <f1@x.example>\r\n\r\nhello\r\n")


@pytest.mark.parametrize("value, email, name", [
    (b"Kiss Anna kiss.anna@example.hu", "kiss.anna@example.hu", "Kiss Anna"),
    (b"kiss.anna@example.hu", "kiss.anna@example.hu", ""),
    (b"kiss.anna@example.hu (Kiss Anna)", "kiss.anna@example.hu", "Kiss Anna"),
    (b'"Kiss Anna <kiss.anna@example.hu>', "kiss.anna@example.hu", "Kiss Anna"),
    (b'"kiss.anna@example.hu', "kiss.anna@example.hu", ""),
    (b'"kiss.anna"@example.hu', "kiss.anna@example.hu", ""),
    (b'kiss."anna"@example.hu', "kiss.anna@example.hu", ""),
    (b"Anna <kiss.anna@example.hu>, Bela <bela@example.hu>", "kiss.anna@example.hu", "Anna"),
    (b"kiss.anna@example.hu bela@example.hu", "kiss.anna@example.hu", ""),
    (b"=?utf-8?q?Kiss_Anna?= kiss.anna@example.hu", "kiss.anna@example.hu", "Kiss Anna"),
    (b"Kiss Anna <kiss.anna@\xc3\xa1rv\xc3\xadz.hu>", "kiss.anna@árvíz.hu", "Kiss Anna"),  # SMTPUTF8: UTF-8 as sent
    (b"Kov\xe1cs J\xf3zsef <kj@example.hu>", "kj@example.hu", "Kovács József"),  # Latin-1 bytes, nothing declared
], ids=["name-no-brackets", "bare", "comment", "unclosed-quote", "unclosed-quote-bare", "quoted-local",
        "obsolete-quoted-local", "two-mailboxes", "two-bare", "encoded-name-no-brackets", "idn-utf8",
        "8bit-name-undeclared"])
def test_every_recoverable_from_address_is_found(value, email, name):
    mail = parse_mail(_from(value), 100000)
    assert (mail.sender.email, mail.sender.name, mail.sender_source) == (email, name, "from")


@pytest.mark.parametrize("value", [
    b"=?utf-8?q?kiss.anna=40crossec.com?=",
    b"Kiss Anna <=?utf-8?q?kiss.anna=40crossec.com?=>",
    b"=?utf-8?b?a2lzcy5hbm5hQGNyb3NzZWMuY29t?=",
    b"Kiss Anna <kiss.anna=40crossec.com>",
], ids=["q-word", "q-word-in-brackets", "b-word", "qp-escape-unencoded"])
def test_an_encoded_word_in_the_address_stays_literal(value):
    mail = parse_mail(_from(value, b"Return-Path: <bulk@mailer.example.net>"), 100000)
    assert mail.sender.email == ""  # From holds no address: never kiss.anna@crossec.com
    assert "crossec.com" not in mail.reporter.email
    assert (mail.sender_source, mail.reporter.email) == ("return-path", "bulk@mailer.example.net")


def test_an_encoded_word_as_the_local_part_stays_literal():
    mail = parse_mail(_from(b"=?utf-8?q?kiss.anna?=@crossec.com"), 100000)
    assert mail.sender.email != "kiss.anna@crossec.com"


@pytest.mark.parametrize("extra, source, reporter, name", [
    ((b"Reply-To: R <r@example.hu>", b"Sender: S <s@example.hu>", b"Return-Path: <p@example.hu>"),
     "reply-to", "r@example.hu", "R"),
    ((b"Sender: S <s@example.hu>", b"Return-Path: <p@example.hu>"), "sender", "s@example.hu", "S"),
    ((b"Return-Path: <p@example.hu>",), "return-path", "p@example.hu", "Kiss Anna"),  # From's name goes with it
    ((b"Reply-To: r@example.hu",), "reply-to", "r@example.hu", "Kiss Anna"),
    ((b"Reply-To: nobody", b"Sender: undisclosed:;", b"Return-Path: <p@example.hu>"), "return-path", "p@example.hu",
     "Kiss Anna"),
    ((b"Return-Path: <>",), "from", "", "Kiss Anna"),  # the null sender names nobody: automatic mail stays so
    ((), "from", "", "Kiss Anna"),
], ids=["reply-to-first", "then-sender", "then-return-path", "nameless-reply-to", "skips-fields-without-an-address",
        "null-return-path", "nothing"])
def test_where_from_has_no_address_reply_to_sender_or_return_path_decides(extra, source, reporter, name):
    mail = parse_mail(_from(b'"Kiss Anna"', *extra), 100000)
    assert mail.sender.email == "" and mail.sender.name == "Kiss Anna"
    assert (mail.sender_source, mail.reporter.email, mail.reporter.name) == (source, reporter, name)


def test_a_crafted_from_field_is_read_in_bounded_time():
    crafted = [
        b"a" * 200_000,
        b"<" * 100_000 + b"a@b.example",
        (b"x@" * 50_000) + b"example.hu",
        (b'"' + b"a " * 50_000),
        b"=?utf-8?q?" * 20_000,
        (b"a." * 60_000) + b"@example.hu",
        b"\xe1\xe9" * 100_000,  # 8-bit, no charset declared: the detector reads a bounded prefix
        b"Name " * 400 + b"kiss.anna@example.hungary.example",  # past the scanned prefix: no address made up
    ]
    started = time.monotonic()
    for value in crafted:
        mail = parse_mail(_from(value, b"Subject2: " + value), 100000)
        assert len(mail.sender.email) <= 320
        assert mail.sender.email in ("", "a@b.example", "kiss.anna@example.hungary.example")
    assert time.monotonic() - started < 20  # linear: each takes milliseconds; a quadratic pass takes minutes


# --- encoded words: decoded, spaces kept ------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("=?utf-8?q?r=C3=B6gz=C3=ADtett=C3=BCk:?= Nem", "rögzítettük: Nem"),  # word, then plain text: kept
    ("Re: =?utf-8?q?r=C3=B6gz?= =?utf-8?q?=C3=ADtett?= ok", "Re: rögzített ok"),  # between words: dropped
    ("=?utf-8?b?5YWz?=\t =?utf-8?b?5LqO?=", "关于"),
    ("=?utf-8?q?=C3?= =?utf-8?q?=A1?=", "á"),  # one character split over two words
    ("=?iso-8859-2?q?Ny=EDri?= =?utf-8?q?_G=C3=A9za?=", "Nyíri Géza"),
    ("=?utf8mb4?q?K=C3=B6sz=C3=B6n=C3=B6m?=", "Köszönöm"),
    ("=?x-unknown?q?K=C3=A9rd=C3=A9s?=", "Kérdés"),
    ("=?UTF-8*hu?Q?=C3=9Cdv?=", "Üdv"),  # RFC 2231 language tag
    ("=?utf-8?b?!!!?= plain", "=?utf-8?b?!!!?= plain"),  # not decodable: left as it was
    ("a=?utf-8?q?b?=c", "abc"),
    ("no words here", "no words here"),
], ids=["word-then-text", "between-words", "b-words", "split-character", "two-charsets", "utf8mb4",
        "x-unknown", "language-tag", "broken-word", "no-spaces", "plain"])
def test_encoded_words_are_decoded_with_spaces_kept(text, expected):
    assert decode_words(text) == expected
