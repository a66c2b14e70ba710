"""Forged headers cannot act (issue 12, "Authenticity"): end to end through Dovecot, the real
CLI and an aiosmtpd sink.

- Only the topmost Authentication-Results of a trusted authserv-id counts: the border adds its
  own on top, anything below may have been written by the sender.
- Divisions are checked like agents.
- A delivery report changes a recipient's state only when it is about a message we sent to
  that recipient.
"""

from __future__ import annotations

import json
import sqlite3
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from factory import simple_mail

AGENTS = [
    {"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Crossec Norma", "Egyéb"]},
    {"name": "Szabó Péter", "email": "szabo.peter@crossec.com", "areas": ["Egyéb", "GDPR Segédanyagok"],
     "fallback": True},
]
DIVISIONS = [{"name": "Fejlesztés", "email": "fejlesztes@crossec.com", "areas": ["Crossec Norma"]}]
CUSTOMER = "anna@example.hu"
BORDER = "mx.crossec.com"  # our receiving server's authserv-id
PASS = f"Authentication-Results: {BORDER}; dkim=pass header.d=crossec.com header.i=@crossec.com\r\n"
FAIL = f"Authentication-Results: {BORDER}; dkim=fail (bad signature) header.d=crossec.com; spf=fail smtp.mailfrom=crossec.com\r\n"
NONE = f"Authentication-Results: {BORDER}; dkim=none; spf=softfail smtp.mailfrom=crossec.com\r\n"
# What a forger sends: the topmost header is the border's verdict, the lower one the forger's.
FORGED_BELOW = FAIL + PASS
BANK_TEXT = "Kérjük, a visszatérítéshez utalja a díjat a HU12 3456 7890 1234 számlaszámra."


def staff_mail(body: str, *, sender: str, name: str, auth: str,
               subject: str = "Re: [CRX-000001] Crossec Norma export hiba") -> bytes:
    """A mail from a staff address, with the Authentication-Results lines given on top, in file order."""
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="crossec.com")
    message.set_content(body)
    return auth.encode() + bytes(message)


def to(sink, address: str) -> list:
    return [m for m in sink.messages if str(m["To"]) == address]


def logged(result, event: str) -> list[dict]:
    """The JSON log lines of one event that a CLI run wrote to stderr."""
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def event_types(desk, ticket: str = "CRX-000001") -> list[str]:
    return [e["type"] for e in desk.ticket(ticket)["events"]]


@pytest.fixture
def team(mailbox, smtp_sink, mailbridge_for):
    """A customer's ticket CRX-000001, acknowledged and assigned to Kiss Anna."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS,
                          security={"trusted_authserv_ids": [BORDER]})
    mailbox.deliver(simple_mail(1, sender=CUSTOMER, subject="Crossec Norma export hiba"))
    desk("poll", "--once")
    desk("tick")
    [ticket] = desk.tickets()
    assert (ticket["status"], ticket["assignee"]) == ("acknowledged", "kiss.anna@crossec.com")
    return desk


# --- agents ----------------------------------------------------------------------------------

def test_forged_agent_with_a_passing_header_below_the_borders_failing_one_changes_nothing(
        mailbox, smtp_sink, team):
    smtp_sink.clear()
    forged = staff_mail(f"#assign Szabó Péter\n{BANK_TEXT}\n", sender="kiss.anna@crossec.com", name="Kiss Anna",
                        auth=FORGED_BELOW)
    mailbox.deliver(forged)
    result = team("poll", "--once")
    team("tick")
    assert "agent_reply" not in result.stdout
    [ticket] = team.tickets()
    assert (ticket["status"], ticket["assignee"]) == ("acknowledged", "kiss.anna@crossec.com")
    assert to(smtp_sink, CUSTOMER) == []  # the forger's bank account never reaches the customer
    assert not any(BANK_TEXT in m.get_body(("plain",)).get_content() for m in to(smtp_sink, CUSTOMER))
    events = event_types(team)
    assert "mail.forged_agent" in events
    [received] = [m for m in team.ticket("CRX-000001")["messages"] if BANK_TEXT in (m["text"] or "")]
    assert received["kind"] == "outsider" and received["direction"] == "in"  # recorded, as nobody's
    [warning] = logged(result, "mail.forged_agent")
    assert warning["level"] == "warning" and "topmost of 2" in warning["reason"]
    assert "@" not in json.dumps(warning)  # no address in the log line


@pytest.mark.parametrize("auth", [
    PASS + FAIL,  # the border's pass on top; a stale or sender-written fail below is ignored
    PASS + PASS,
    "Authentication-Results: relay.example; dkim=fail header.d=crossec.com\r\n" + PASS,  # untrusted above
], ids=["pass-over-fail", "pass-over-pass", "untrusted-over-pass"])
def test_an_agent_whose_topmost_trusted_header_passes_still_works(mailbox, smtp_sink, team, auth):
    smtp_sink.clear()
    mailbox.deliver(staff_mail("Tisztelt Ügyfelünk!\n\nA 2026.3.2-es verzió javítja a hibát.\n",
                               sender="kiss.anna@crossec.com", name="Kiss Anna", auth=auth))
    assert "1 agent_reply" in team("poll", "--once").stdout
    team("tick")
    [relay] = to(smtp_sink, CUSTOMER)
    assert "2026.3.2-es verzió" in relay.get_body(("plain",)).get_content()
    assert team.tickets()[0]["status"] == "in_progress"
    assert "mail.forged_agent" not in event_types(team)


@pytest.mark.parametrize("auth", ["", FORGED_BELOW], ids=["no-header", "fail-over-forged-pass"])
def test_a_forged_agent_on_the_tickets_cc_cannot_reopen_it(mailbox, smtp_sink, mailbridge_for, auth):
    """Agents are often on a customer's Cc; a forger must not get a participant's rights from that."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS,
                          security={"trusted_authserv_ids": [BORDER]})
    first = simple_mail(1, sender=CUSTOMER, subject="Crossec Norma export hiba").replace(
        b"To: ", b"Cc: Kiss Anna <kiss.anna@crossec.com>\nTo: ", 1)
    mailbox.deliver(first)
    desk("poll", "--once")
    mailbox.deliver(staff_mail("#resolve\nMegoldottuk.\n", sender="kiss.anna@crossec.com", name="Kiss Anna",
                               auth=PASS))
    desk("poll", "--once")
    assert desk.tickets()[0]["status"] == "resolved"
    mailbox.deliver(staff_mail("Mégsem jó, nyissátok újra.", sender="kiss.anna@crossec.com", name="Kiss Anna",
                               auth=auth))
    assert "1 outsider" in desk("poll", "--once").stdout
    [ticket] = desk.tickets()
    assert ticket["status"] == "resolved"
    assert "ticket.reopened" not in event_types(desk)


# --- divisions -------------------------------------------------------------------------------

@pytest.fixture
def escalated(mailbox, smtp_sink, team):
    mailbox.deliver(staff_mail("#escalate Fejlesztés\nKérlek nézzétek meg az exportot.\n",
                               sender="kiss.anna@crossec.com", name="Kiss Anna", auth=PASS))
    assert "1 agent_escalated" in team("poll", "--once").stdout
    team("tick")
    assert team.tickets()[0]["status"] == "escalated"
    smtp_sink.clear()
    return team


@pytest.mark.parametrize("auth", ["", FAIL, NONE, FORGED_BELOW,
                                  "Authentication-Results: evil.example; dkim=pass header.d=crossec.com\r\n"],
                         ids=["no-header", "fail", "none", "fail-over-forged-pass", "untrusted-pass"])
def test_forged_division_mail_changes_nothing(mailbox, smtp_sink, escalated, auth):
    mailbox.deliver(staff_mail("Megvan a hiba, a jegy lezárható.", sender="fejlesztes@crossec.com",
                               name="Fejlesztés", auth=auth))
    result = escalated("poll", "--once")
    escalated("tick")
    assert "division_note" not in result.stdout
    assert escalated.tickets()[0]["status"] == "escalated"
    assert to(smtp_sink, CUSTOMER) == []
    events = event_types(escalated)
    assert "mail.forged_division" in events and "division.replied" not in events
    [warning] = logged(result, "mail.forged_division")
    assert warning["level"] == "warning" and "@" not in json.dumps(warning)


def test_the_real_division_answer_still_moves_the_ticket_on(mailbox, smtp_sink, escalated):
    mailbox.deliver(staff_mail("Megvan a hiba, holnap javítjuk.", sender="fejlesztes@crossec.com",
                               name="Fejlesztés", auth=PASS + FAIL))
    assert "1 division_note" in escalated("poll", "--once").stdout
    escalated("tick")
    assert to(smtp_sink, CUSTOMER) == []  # a division's answer is never relayed
    assert escalated.tickets()[0]["status"] == "in_progress"
    assert "division.replied" in event_types(escalated)


# --- delivery reports ------------------------------------------------------------------------

def dsn(failed: str, about: str | None, *, reporter: str = "MAILER-DAEMON@mx.crossec.com",
        action: str = "failed") -> bytes:
    """A RFC 3464 delivery report saying `failed` could not be reached; `about`: the Message-ID of
    the original it quotes (None: it quotes none)."""
    quoted = f"Message-ID: {about}\r\n" if about else ""
    return (
        f"From: Mail Delivery System <{reporter}>\r\nTo: support@crossec.com\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {make_msgid(domain='mx.example')}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\n{failed}: user unknown\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: {action}\r\nStatus: 5.1.1\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n{quoted}To: {failed}\r\nSubject: x\r\n"
        "--b--\r\n"
    ).encode()


def database(desk) -> sqlite3.Connection:
    return sqlite3.connect(desk.config.parent / "mailbridge.db")


def undeliverable(desk, address: str) -> bool:
    with database(desk) as db:
        return bool(db.execute("select undeliverable from reporter where email = ?", (address,)).fetchone()[0])


def outbox_status(desk, message_id: str) -> str:
    with database(desk) as db:
        return db.execute("select status from outbox where message_id = ?", (message_id,)).fetchone()[0]


@pytest.mark.parametrize("about", ["none", "unknown", "our mail to someone else"])
def test_a_forged_delivery_report_naming_a_customer_changes_nothing(mailbox, smtp_sink, team, about):
    # The forger writes in first, to learn one of our Message-IDs (their own acknowledgement).
    mailbox.deliver(simple_mail(7, sender="forger@evil.example", subject="Kérdés"))
    team("poll", "--once")
    team("tick")
    [ack_to_forger] = to(smtp_sink, "forger@evil.example")
    message_id = {"none": None, "unknown": "<nem.a.miénk@evil.example>",
                  "our mail to someone else": ack_to_forger["Message-ID"]}[about]
    mailbox.deliver(dsn(CUSTOMER, message_id, reporter="MAILER-DAEMON@evil.example"))
    team("poll", "--once")
    assert not undeliverable(team, CUSTOMER)
    assert outbox_status(team, ack_to_forger["Message-ID"]) == "sent"
    assert "outbox.bounced" not in event_types(team, "CRX-000002")
    notes = json.loads(team("notifications", "--json", "--all").stdout)
    assert "bounced" not in [n["kind"] for n in notes]

    # The customer's next ticket is acknowledged as usual.
    smtp_sink.clear()
    mailbox.deliver(simple_mail(3, sender=CUSTOMER, subject="Új kérdés"))
    team("poll", "--once")
    assert "1 acknowledged" in team("tick").stdout
    [ack] = to(smtp_sink, CUSTOMER)
    assert "[CRX-000003]" in ack["Subject"]


def test_a_real_delivery_report_for_our_acknowledgement_still_counts(mailbox, smtp_sink, team):
    mailbox.deliver(simple_mail(2, sender="nincs.ilyen@example.hu", subject="Kérdés"))
    team("poll", "--once")
    team("tick")
    [ack] = to(smtp_sink, "nincs.ilyen@example.hu")
    mailbox.deliver(dsn("Nincs.Ilyen@Example.HU", ack["Message-ID"]))  # MTAs may change the case
    assert "1 bounce" in team("poll", "--once").stdout
    assert outbox_status(team, ack["Message-ID"]) == "bounced"
    assert undeliverable(team, "nincs.ilyen@example.hu")
    assert "outbox.bounced" in event_types(team, "CRX-000002")
    notes = json.loads(team("notifications", "--json", "--all").stdout)
    assert [n["kind"] for n in notes].count("bounced") == 1
    # The next mail from that address is recorded, but no acknowledgement goes to it.
    mailbox.deliver(simple_mail(3, sender="nincs.ilyen@example.hu", subject="Még egy"))
    team("poll", "--once")
    team("tick")
    assert len(to(smtp_sink, "nincs.ilyen@example.hu")) == 1


def test_a_delay_report_changes_nothing(mailbox, smtp_sink, team):
    [ack] = to(smtp_sink, CUSTOMER)
    mailbox.deliver(dsn(CUSTOMER, ack["Message-ID"], action="delayed"))
    team("poll", "--once")
    assert outbox_status(team, ack["Message-ID"]) == "sent"
    assert not undeliverable(team, CUSTOMER)


# --- the delivery-report rule, as a table ----------------------------------------------------

from mailbridge.mail import DeliveryReport  # noqa: E402
from mailbridge.policy.bounces import SentMail, judge_report, quoted_ids, recipients_of  # noqa: E402

ACK = SentMail(1, 10, "<ack.1@crossec.com>", ("anna@example.hu",), "sent")
NOTICE = SentMail(2, 10, "<relay.1@crossec.com>", ("anna@example.hu", "kolléga@example.hu"), "sent")


@pytest.mark.parametrize("failed, quoted, permanent, bounced, undeliverable, reason", [
    (("anna@example.hu",), (ACK,), True, (1,), ("anna@example.hu",), ""),
    (("ANNA@Example.HU",), (ACK,), True, (1,), ("anna@example.hu",), ""),  # MTAs change the case
    (("kolléga@example.hu",), (ACK, NOTICE), True, (2,), ("kolléga@example.hu",), ""),
    (("anna@example.hu",), (), True, (), (), "quotes no message we sent"),
    (("johanna@example.hu",), (ACK,), True, (), (), "names no recipient of the message it quotes"),
    (("nna@example.hu",), (ACK,), True, (), (), "names no recipient of the message it quotes"),  # never a substring
    ((), (ACK,), True, (), (), "names no failed recipient"),
    (("anna@example.hu",), (SentMail(1, 10, "<ack.1@crossec.com>", ("anna@example.hu",), "queued"),), True, (), (),
     "quotes no message we sent"),  # still in the outbox: no report can be about it
    (("anna@example.hu",), (SentMail(1, 10, "<a@c>", ("anna@example.hu",), "failed"),), True, (), (),
     "quotes no message we sent"),
    (("anna@example.hu",), (ACK,), False, (), (), "delivery only delayed"),
])
def test_judge_report(failed, quoted, permanent, bounced, undeliverable, reason):
    verdict = judge_report(DeliveryReport(failed, ("<ack.1@crossec.com>",), permanent), quoted)
    assert [m.outbox_id for m in verdict.bounced] == list(bounced)
    assert verdict.undeliverable == undeliverable
    assert verdict.reason == reason and verdict.counts is (not reason)
    assert verdict.ticket_id == (10 if quoted and quoted[0].status == "sent" else None)


def test_what_a_report_is_looked_up_by():
    report = DeliveryReport(("a@x.hu",), ("<ack.1@crossec.com>", " <ack.1@crossec.com> "), True)
    assert quoted_ids(report, ("<ref@x>", "", "<ack.1@crossec.com>")) == ("<ack.1@crossec.com>", "<ref@x>")
    assert quoted_ids(None, ()) == ()
    assert recipients_of("Anna@Example.hu, <b@x.hu>,") == ("anna@example.hu", "b@x.hu")


@pytest.mark.parametrize("role, authentic, acts_as", [
    ("agent", True, "agent"), ("division", True, "division"),
    ("agent", False, "outsider"), ("division", False, "outsider"),  # not the reporter's or a Cc's rights either
    ("reporter", False, "reporter"), ("participant", False, "participant"),
])
def test_proven_role(role, authentic, acts_as):
    from mailbridge.policy.senders import proven_role

    assert proven_role(role, authentic) == acts_as
