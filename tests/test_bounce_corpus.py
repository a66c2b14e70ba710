"""Bounces and gateway notices without DSN structure (tests/corpus/bounces/): recorded, never a ticket.

Each case of the manifest runs through `parse_mail` and `loops.screen`; the people
who only talk about bounces stay people. Then a few of them go through the real
intake (Dovecot in, aiosmtpd out) beside a customer's mail.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import tomllib
from pathlib import Path

import pytest

from factory import simple_mail
from mailbridge.intake.parse import parse_mail
from mailbridge.mail import Address
from mailbridge.policy import bounce_phrases, loops

BOUNCES = Path(__file__).parent / "corpus" / "bounces"
MANIFEST = tomllib.loads((BOUNCES / "cases.toml").read_text(encoding="utf-8"))
CASES = MANIFEST["case"]
OWN = frozenset({"support@crossec.com"})
LIMIT = 100_000


def corpus_score() -> dict[str, tuple[int, int]]:
    """For the bench: {"notices": (recognised, all), "people": (kept as people, all)}."""
    right = {"notices": [0, 0], "people": [0, 0]}
    for case in CASES:
        verdict = loops.screen(parse_mail((BOUNCES / case["file"]).read_bytes(), LIMIT), OWN)
        tally = right["people" if case["verdict"] == "person" else "notices"]
        tally[0] += verdict.kind == case["verdict"]
        tally[1] += 1
    return {key: (hits, total) for key, (hits, total) in right.items()}


def test_the_manifest_lists_every_mail_and_enough_of_each():
    files = sorted(p.name for p in BOUNCES.glob("*.eml"))
    assert sorted(c["file"] for c in CASES) == files
    verdicts = [c["verdict"] for c in CASES]
    assert set(verdicts) == {"bounce", "automatic", "person"}
    assert len(verdicts) - verdicts.count("person") >= 35
    assert verdicts.count("person") >= 10
    for case in CASES:
        assert case["about"].strip()


@pytest.mark.parametrize("case", [pytest.param(c, id=c["file"]) for c in CASES])
def test_bounce_corpus_case(case):
    mail = parse_mail((BOUNCES / case["file"]).read_bytes(), LIMIT)
    verdict = loops.screen(mail, OWN)
    assert verdict.kind == case["verdict"], (verdict.reason, bounce_phrases.read_notice(
        mail.subject, mail.sender, mail.text, mail.attachments).signals)
    if case["verdict"] == "person":
        assert mail.report is None  # nothing of hers is read as a report
        return
    if "failed_recipients" in case:
        assert mail.report is not None and list(mail.report.recipients) == case["failed_recipients"]
    if "bounced_message_id" in case:
        assert mail.report is not None and case["bounced_message_id"] in mail.report.message_ids


def test_the_bench_figure_counts_every_case():
    people = sum(c["verdict"] == "person" for c in CASES)
    notices = len(CASES) - people
    assert corpus_score() == {"notices": (notices, notices), "people": (people, people)}


def _notice(subject: str, text: str, sender=Address("mailer@mx.example.com", "Mail Delivery System")):
    return bounce_phrases.read_notice(subject, sender, text)


EXIM = ("This message was created automatically by mail delivery software.\n\n"
        "The following address(es) failed:\n\n  jdoe@example.com\n    550 5.1.1 User unknown\n")


@pytest.mark.parametrize(("subject", "sender", "text", "kind"), [
    # A bounce's subject and text, from an address that says nothing: still a bounce.
    ("Mail delivery failed: returning message to sender", Address("admin@host.example.net"), EXIM, "bounce"),
    # ... but one signal alone is never enough.
    ("Mail delivery failed: returning message to sender", Address("admin@host.example.net"), "Hello", ""),
    ("Hi", Address("anna@example.hu"), EXIM, ""),
    # A person's reply or forward prefix, or her greeting, outweighs what she quotes.
    ("Fwd: Mail delivery failed: returning message to sender", Address("anna@example.hu"), EXIM, ""),
    ("Mail delivery failed", Address("anna@example.hu"), "Hello Support,\n\n" + EXIM, ""),
    # A machine greets roles, not people.
    ("Kézbesítési hiba", Address("info@tarhely.example.hu"), "Tisztelt Feladó!\n\n" + EXIM, "bounce"),
    # Gateways holding mail are automatic, not bounces.
    ("Spam Quarantine Summary", Address("quarantine@gw.example.com"), "3 messages have been quarantined", "automatic"),
])
def test_the_decision_needs_independent_signals(subject, sender, text, kind):
    assert _notice(subject, text, sender).kind == kind


def test_only_the_first_part_of_a_text_is_read():
    filler = "x" * bounce_phrases.SCAN_CHARS + "\n"
    assert _notice("Undeliverable: x", EXIM).kind == "bounce"
    assert _notice("Undeliverable: x", filler + EXIM).signals == ("sender", "subject")  # nothing below is read
    assert bounce_phrases.failed_recipients(filler + EXIM) == ()


def test_a_megabyte_of_near_misses_costs_a_bounded_read():
    # Crafted to tease every pattern: unfinished phrases, runs of blanks and line breaks,
    # address-like junk at line starts, codes that stop short. A guard, not a stopwatch:
    # the alarm is generous, and what is asserted is what was read.
    lines = [
        "the following addresses had permanent fatal error", " " * 300, "\n" * 50, "<a@" * 200,
        "550 5.1." * 100, "message-id: <" + "x" * 400, "this is the mail system at hos",
        "\t" * 500 + "undeliverable", "a@" * 300 + "b", "-" * 400 + " forwarded messag",
    ]
    body = ("\n".join(lines) + "\n") * (1024 * 1024 // sum(len(line) + 1 for line in lines) + 1)
    raw = ("From: Mail Delivery System <mailer@mx.example.com>\r\nTo: support@crossec.com\r\n"
           "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <near-miss@mx.example.com>\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body).encode()
    assert len(raw) > 1024 * 1024
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("crafted body")))
    signal.alarm(60)
    try:
        mail = parse_mail(raw, LIMIT)
        verdict = loops.screen(mail, OWN)
        recipients = bounce_phrases.failed_recipients(mail.text)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert len(bounce_phrases._window(mail.text)) <= bounce_phrases.SCAN_CHARS
    assert verdict.kind in ("bounce", "automatic")  # sender and subject agree; it never becomes a ticket
    assert recipients == ()


# --- through the real intake --------------------------------------------------------------------
AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Egyéb"], "fallback": True}]
HEADERLESS = ("exim_backscatter_plain_sender.eml", "hu_visszakuldott_level_utf8_b64.eml",
              "sophos_blocked_tagged_subject.eml", "barracuda_quarantine_summary.eml")


def _rows(bridge, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(bridge.config.parent / "mailbridge.db") as connection:
        return connection.execute(sql, args).fetchall()


def test_headerless_bounces_are_recorded_and_only_the_customer_is_answered(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(simple_mail(1, sender="nincs.ilyen@example.hu"))
    for name in HEADERLESS:
        mailbox.deliver((BOUNCES / name).read_bytes())
    result = desk("poll", "--once")
    # Reports about no mail we sent change nothing: recorded as automatic mail (P6), no ticket.
    assert "1 new_ticket" in result.stdout and "4 automatic" in result.stdout
    desk("tick")
    [ticket] = desk.tickets()
    assert ticket["reporter_email"] == "nincs.ilyen@example.hu"
    recipients = {str(m["To"]) for m in smtp_sink.messages}
    assert recipients == {"nincs.ilyen@example.hu", "kiss.anna@crossec.com"}
    kinds = sorted(_rows(desk, "select kind from message where direction = 'in'"))
    assert kinds == [("automatic",)] * 4 + [("customer",)]
    reasons = [r for (r,) in _rows(desk, "select detail from event where type like 'mail.%'")]
    assert sum("bounce-text" in r for r in reasons) == 3 and sum("gateway-notice" in r for r in reasons) == 1

    # Our acknowledgement bounces, told in a hosting provider's words from a plain address,
    # with no DSN part, no Return-Path and no Auto-Submitted: the outbox row says so.
    [ack] = [m for m in smtp_sink.messages if str(m["To"]) == "nincs.ilyen@example.hu"]
    notice = (
        "From: info@tarhely.example.hu\r\nTo: support@crossec.com\r\n"
        "Subject: =?utf-8?q?K=C3=A9zbes=C3=ADt=C3=A9si_hiba?=\r\nMessage-ID: <kh-1@tarhely.example.hu>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "Az Ön által küldött levelet nem sikerült kézbesíteni a következő címzett(ek)nek:\r\n\r\n"
        "<nincs.ilyen@example.hu>: 550 5.1.1 ismeretlen címzett\r\n\r\n"
        "------ Az eredeti üzenet fejlécei ------\r\n"
        f"Message-ID: {ack['Message-ID']}\r\nTo: nincs.ilyen@example.hu\r\n"
    ).encode()
    before = len(smtp_sink.messages)
    mailbox.deliver(notice)
    assert "1 bounce" in desk("poll", "--once").stdout
    desk("tick")
    assert len(desk.tickets()) == 1
    assert "outbox.bounced" in [e["type"] for e in desk.ticket("CRX-000001")["events"]]
    assert _rows(desk, "select status from outbox where message_id = ?", ack["Message-ID"]) == [("bounced",)]
    assert "info@tarhely.example.hu" not in {str(m["To"]) for m in smtp_sink.messages[before:]}
    notes = json.loads(desk("notifications", "--json", "--all").stdout)
    assert [n["kind"] for n in notes].count("bounced") == 1
