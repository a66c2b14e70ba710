"""The pure rules: plain calls and tables, no servers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailbridge.intake.parse import parse_mail, sanitize_filename
from mailbridge.intake.thread import NEW, match_ticket
from mailbridge.ticket_ids import find_tag, format_ticket_id, parse_ticket_id
from mailbridge.policy import loops, senders
from mailbridge.policy.classify import classify

OWN = frozenset({"support@crossec.com"})


@pytest.mark.parametrize(
    "subject, number",
    [
        ("[CRX-000042] Számla", 42),
        ("Re: AW: Fwd: Vá: Fw: [crx-42] x", 42),
        ("Re: [CRX-0000042]", 42),
        ("kérdés [ CRX - 7 ] a végén", 7),
        ("CRX-000042 without brackets", None),
        ("[ABC-000042]", None),
        ("", None),
    ],
)
def test_subject_tag(subject, number):
    assert find_tag(subject, "CRX") == number


def test_ticket_ids_round_trip():
    assert format_ticket_id(42, "CRX") == "CRX-000042"
    assert format_ticket_id(1234567, "CRX") == "CRX-1234567"
    assert [parse_ticket_id(t, "CRX") for t in ("CRX-000042", "crx-42", "[CRX-42]", "42", "XYZ-1")] == [42, 42, 42, 42, None]


def mail(headers: str, body: str = "Szia!") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


BASE = "From: Kovács Anna <anna@example.hu>\nTo: support@crossec.com\nMessage-ID: <x@example.hu>\n"


@pytest.mark.parametrize(
    "extra, kind, reason",
    [
        ("Subject: Számla", loops.VerdictKind.PERSON, ""),
        ("Subject: Számla\nAuto-Submitted: no", loops.VerdictKind.PERSON, ""),
        ("Subject: Re: Számla\nAuto-Submitted: auto-replied", loops.VerdictKind.AUTO_REPLY, "auto-submitted"),
        ("Subject: Riasztás\nAuto-Submitted: auto-generated", loops.VerdictKind.AUTOMATIC, "auto-submitted"),
        ("Subject: Hírlevél\nPrecedence: bulk", loops.VerdictKind.AUTOMATIC, "precedence"),
        ("Subject: x\nPrecedence: junk", loops.VerdictKind.AUTOMATIC, "precedence"),
        ("Subject: x\nList-Id: <news.example.com>", loops.VerdictKind.AUTOMATIC, "list-id"),
        ("Subject: Out of office\nX-Autoreply: yes", loops.VerdictKind.AUTO_REPLY, "x-autoreply"),
        ("Subject: x\nX-Autorespond: yes", loops.VerdictKind.AUTO_REPLY, "x-autorespond"),
        ("Subject: Automatikus válasz: Számla", loops.VerdictKind.AUTO_REPLY, "ooo-subject"),
        ("Subject: Házon kívül", loops.VerdictKind.AUTO_REPLY, "ooo-subject"),
        ("Subject: Automatische Antwort: Rechnung", loops.VerdictKind.AUTO_REPLY, "ooo-subject"),
        ("Subject: Out of Office: Invoice", loops.VerdictKind.AUTO_REPLY, "ooo-subject"),
        ("Subject: Re: out of office hours support?", loops.VerdictKind.PERSON, ""),
        ("Subject: x\nReturn-Path: <>", loops.VerdictKind.AUTOMATIC, "null-sender"),
    ],
)
def test_screen_table(extra, kind, reason):
    verdict = loops.screen(parse_mail(mail(BASE + extra), 0), OWN)
    assert (verdict.kind, verdict.reason) == (kind, reason)


def test_our_own_mail_is_never_a_customer():
    own = mail("From: support@crossec.com\nTo: anna@example.hu\nSubject: [CRX-000001] Visszaigazolás")
    assert loops.screen(parse_mail(own, 0), OWN) == loops.Verdict.automatic("own-mail")
    tagged = mail(BASE + "Subject: x\nX-Mailbridge-Ticket: CRX-000001")
    assert loops.screen(parse_mail(tagged, 0), OWN).reason == "own-mail"


def test_mailer_daemon_bounce_in_free_text():
    raw = mail(
        "From: MAILER-DAEMON@mx.example.hu\nTo: support@crossec.com\nSubject: Undelivered Mail Returned to Sender\nReturn-Path: <>",
        "This is the mail system.\r\n\r\n<nobody@example.hu>: user unknown\r\n\r\n--- original ---\r\n"
        "Message-ID: <ack.CRX-000003@crossec.com>\r\nSubject: [CRX-000003] Visszaigazolás\r\n",
    )
    parsed = parse_mail(raw, 0)
    assert loops.screen(parsed, OWN).kind == loops.VerdictKind.BOUNCE
    assert "<ack.CRX-000003@crossec.com>" in parsed.report.message_ids


WHO = senders.Participants("anna@example.hu", frozenset({"bela@example.hu"}), frozenset({"agent@crossec.com"}),
                           frozenset({"dev@crossec.com"}))


@pytest.mark.parametrize(
    "sender, role",
    [("anna@example.hu", senders.REPORTER), ("ANNA@example.hu", senders.REPORTER), ("bela@example.hu", senders.PARTICIPANT),
     ("agent@crossec.com", senders.AGENT), ("dev@crossec.com", senders.DIVISION), ("mallory@example.com", senders.OUTSIDER),
     ("", senders.OUTSIDER)],
)
def test_sender_roles(sender, role):
    assert senders.sender_role(sender, WHO) == role


NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "role, status, resolved_days_ago, effect",
    [
        (senders.REPORTER, "in_progress", None, senders.APPEND),
        (senders.REPORTER, "resolved", 3, senders.REOPEN),
        (senders.REPORTER, "resolved", 15, senders.FOLLOW_UP),
        (senders.REPORTER, "closed", 1, senders.FOLLOW_UP),
        (senders.OUTSIDER, "resolved", 3, senders.RECORD_ONLY),
        (senders.OUTSIDER, "new", None, senders.RECORD_ONLY),
        (senders.AGENT, "closed", 1, senders.APPEND),
    ],
)
def test_reply_effects(role, status, resolved_days_ago, effect):
    resolved_at = NOW - timedelta(days=resolved_days_ago) if resolved_days_ago is not None else None
    assert senders.reply_effect(role, status, resolved_at, NOW, 14) == effect


@pytest.mark.parametrize(
    "subject, category, area",
    [
        ("Számla hiba", "Számlázással kapcsolatos kérdés", "Egyéb"),
        ("Hibas szamla - kerem javitsak", "Számlázással kapcsolatos kérdés", "Egyéb"),
        ("Crossec Norma nem működik", "Hibabejelentés", "Crossec Norma"),
        ("Cannot download invoice PDF", "Számlázással kapcsolatos kérdés", "Egyéb"),
        ("GDPR sablonok frissítése - kérdés", "Általános kérdés", "GDPR Segédanyagok"),
        ("Árajánlat üzleti tanácsadásra", "Érdeklődés", "Üzleti tanácsadás"),
        ("Szia", "Egyéb", "Egyéb"),
    ],
)
def test_classification(subject, category, area):
    found = classify(subject, "")
    assert (found.category, found.area) == (category, area)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system32\\evil.exe", "evil.exe"),
        ("..\\..\\x.txt", "x.txt"),
        ("a\x00b\x1fc.pdf", "abc.pdf"),
        ("számla másolat.pdf", "számla másolat.pdf"),
        ("..", "attachment.pdf"),
        ("", "attachment.pdf"),
        ("x" * 300 + ".pdf", "x" * 146 + ".pdf"),
    ],
)
def test_attachment_names_are_sanitised(name, expected):
    assert sanitize_filename(name, "application/pdf") == expected


class _Index:
    def __init__(self, by_id=None, numbers=()):
        self.ids, self.numbers = by_id or {}, set(numbers)

    def by_message_id(self, message_id):
        return self.ids.get(message_id)

    def by_number(self, number):
        return number if number in self.numbers else None


def test_references_beat_the_subject_tag():
    parsed = parse_mail(mail(BASE + "Subject: Re: [CRX-000002] x\nIn-Reply-To: <ack.1@crossec.com>"), 0)
    assert match_ticket(parsed, _Index({"<ack.1@crossec.com>": 1}, {2}), "CRX").ticket_id == 1
    assert match_ticket(parsed, _Index({}, {2}), "CRX").ticket_id == 2
    assert match_ticket(parsed, _Index({}, {}), "CRX") == NEW


from mailbridge.policy.assignment import AgentLoad, choose_agent  # noqa: E402

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)


def load(email, areas=("Egyéb",), open_tickets=0, last=None, active=True, fallback=False):
    return AgentLoad(email, frozenset(areas), active, fallback, open_tickets, last)


@pytest.mark.parametrize(
    "agents, area, chosen",
    [
        ([load("a", open_tickets=2), load("b", open_tickets=1)], "Egyéb", "b"),
        ([load("a", open_tickets=1, last=T0), load("b", open_tickets=1, last=T0 - timedelta(days=1))], "Egyéb", "b"),
        ([load("a", open_tickets=1, last=T0), load("b", open_tickets=1)], "Egyéb", "b"),  # never assigned: longest ago
        ([load("a"), load("b")], "Egyéb", "a"),  # a full tie goes to the first in the config
        ([load("a", open_tickets=0, active=False), load("b", open_tickets=9)], "Egyéb", "b"),
        ([load("a", areas=("Crossec Norma",)), load("b", areas=("Egyéb",), fallback=True)], "GDPR Segédanyagok", "b"),
        ([load("a", areas=("Crossec Norma",))], "GDPR Segédanyagok", None),
        ([load("a", areas=("Crossec Norma",)), load("f", areas=(), fallback=True, active=False)], "Egyéb", None),
    ],
)
def test_assignment(agents, area, chosen):
    assert choose_agent(area, agents) == chosen
