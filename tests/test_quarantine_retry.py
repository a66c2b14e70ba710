"""`quarantine retry` reads a quarantined mail as a first read would: the same parse
workers (time and size budget), the same store, the same acting on it.

A mail is quarantined here as ops see it happen: it took longer to read than
`imap.parse_timeout` allowed (a big scan attached). The fix is theirs too: a
longer budget in the config, then `quarantine retry`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from email.message import EmailMessage

from factory import simple_mail
from test_workflow import AGENTS, DIVISIONS, SIGNED, TRUSTED, by_recipient

QUARANTINE = "mailbridge/quarantine"
# Far below what staging a few MB of scan takes (its compressed raw copy alone takes longer).
TOO_SHORT = 0.01
BIG_FILES = {"max_attachment_bytes": 10_000_000}


def _desk(mailbridge_for, mailbox, smtp_sink, **imap):
    return mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS, security=TRUSTED, imap=imap,
                          storage=BIG_FILES)


def _with_scan(sender: str, subject: str, body: str, message_id: str, signed: bool = False) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(body)
    message.add_attachment(os.urandom(2 * 1024 * 1024), maintype="application", subtype="pdf", filename="scan.pdf")
    raw = bytes(message)
    return SIGNED.encode() + raw if signed else raw


def _rows(bridge, sql: str) -> list[tuple]:
    with sqlite3.connect(bridge.config.parent / "mailbridge.db") as connection:
        return connection.execute(sql).fetchall()


def _quarantine_on_the_next_poll(bridge_for, mailbox, smtp_sink, *mails: bytes):
    slow = _desk(bridge_for, mailbox, smtp_sink, parse_timeout=TOO_SHORT)
    for raw in mails:
        mailbox.deliver(raw)
    assert f"{len(mails)} quarantined" in slow("poll", "--once").stdout
    assert mailbox.count(QUARANTINE) == len(mails)
    return _desk(bridge_for, mailbox, smtp_sink)  # ops' fix: the default budget again


def test_a_retried_agent_mail_runs_its_note_and_its_relay(mailbox, smtp_sink, mailbridge_for):
    desk = _desk(mailbridge_for, mailbox, smtp_sink)
    mailbox.deliver(simple_mail(1, sender="anna@example.hu", subject="Crossec Norma export hiba"))
    desk("poll", "--once")
    desk("tick")
    smtp_sink.clear()
    subject = "Re: [CRX-000001] Crossec Norma export hiba"
    note = _with_scan("Kiss Anna <kiss.anna@crossec.com>", subject, "#note\nBelső: a szkennelt levél csatolva.\n",
                      "<note-1@crossec.com>", signed=True)
    relay = _with_scan("Kiss Anna <kiss.anna@crossec.com>", subject,
                       "Tisztelt Ügyfelünk!\n\nA hibát a 2026.3.2-es verzió javítja.\n", "<relay-1@crossec.com>",
                       signed=True)
    desk = _quarantine_on_the_next_poll(mailbridge_for, mailbox, smtp_sink, note, relay)
    desk("tick")  # the placeholders' assignees are told of them
    smtp_sink.clear()
    placeholders = {t["id"] for t in desk.tickets()} - {"CRX-000001"}
    assert len(placeholders) == 2  # P6: each unreadable mail became a ticket for a person to look at

    result = desk("quarantine", "retry")
    assert "retried 2: 2 read now, 0 still unreadable" in result.stdout
    desk("tick")
    # The relay reached the customer, the note did not; neither went anywhere else.
    [relayed] = by_recipient(smtp_sink)["anna@example.hu"]
    assert "2026.3.2-es verzió" in relayed.get_body(("plain",)).get_content()
    assert "[CRX-000001]" in relayed["Subject"]
    assert [p.get_filename() for p in relayed.iter_attachments()] == ["scan.pdf"]
    assert "kiss.anna@crossec.com" not in by_recipient(smtp_sink)  # no acknowledgement to the agent

    shown = desk.ticket("CRX-000001")
    agent_messages = [(m["message_id"], m["internal"]) for m in shown["messages"] if m["kind"] == "agent"]
    assert agent_messages == [("<note-1@crossec.com>", True), ("<relay-1@crossec.com>", False)]
    events = [e["type"] for e in shown["events"]]
    assert "note.added" in events and "reply.relayed" in events
    assert shown["status"] == "in_progress"
    # The placeholders lead to the ticket the mails belong to: closed, merged into it, nothing to review.
    for placeholder in placeholders:
        ticket = desk.ticket(placeholder)
        assert (ticket["status"], ticket["flags"], ticket["messages"]) == ("closed", [], [])
        assert ticket["reporter_email"] is None
    merged = _rows(desk, "select merged_into_id from ticket where id != 1")
    assert merged == [(1,), (1,)]
    # Recorded once: no second message row, no second raw copy.
    assert _rows(desk, "select count(*) from message where direction = 'in'") == [(3,)]
    assert _rows(desk, "select count(*) from raw_message") == [(3,)]
    statuses = [e["status"] for e in json.loads(desk("quarantine", "list", "--json").stdout)]
    assert statuses == ["retried", "retried"]


def test_a_retried_customer_mail_keeps_its_ticket_id_and_is_acknowledged_and_assigned(mailbox, smtp_sink,
                                                                                        mailbridge_for):
    customer = _with_scan("Nagy Eszter <nagy.eszter@example.hu>", "GDPR segédanyag kérdés",
                          "Frissültek a GDPR sablonok? A szkennelt levelet csatolom.", "<gdpr-1@example.hu>")
    desk = _quarantine_on_the_next_poll(mailbridge_for, mailbox, smtp_sink, customer)
    [placeholder] = desk.tickets()
    assert (placeholder["id"], placeholder["flags"], placeholder["reporter_email"]) == (
        "CRX-000001", ["needs_review"], None)
    desk("tick")
    smtp_sink.clear()

    assert "retried 1: 1 read now, 0 still unreadable" in desk("quarantine", "retry").stdout
    desk("tick")
    [ticket] = desk.tickets()
    assert ticket["id"] == "CRX-000001"  # the ID anyone may already know
    assert (ticket["subject"], ticket["reporter_email"], ticket["area"], ticket["flags"]) == (
        "GDPR segédanyag kérdés", "nagy.eszter@example.hu", "GDPR Segédanyagok", [])
    assert ticket["status"] == "acknowledged"
    [ack] = by_recipient(smtp_sink)["nagy.eszter@example.hu"]
    assert "[CRX-000001]" in ack["Subject"]
    # Assigned as any new mail about GDPR would be: to the agent covering that area, who is told.
    assert ticket["assignee"] == "szabo.peter@crossec.com"
    [notice] = by_recipient(smtp_sink)["szabo.peter@crossec.com"]
    assert "Frissültek a GDPR sablonok" in notice.get_body(("plain",)).get_content()
    assert [a["filename"] for a in ticket["attachments"]] == ["scan.pdf"]
    assert _rows(desk, "select count(*) from message where direction = 'in'") == [(1,)]

    # Once read, an entry is not read again.
    assert "retried 0: 0 read now, 0 still unreadable" in desk("quarantine", "retry").stdout


def test_a_retry_within_the_same_short_budget_fails_again_and_changes_nothing(mailbox, smtp_sink, mailbridge_for):
    customer = _with_scan("Nagy Eszter <nagy.eszter@example.hu>", "GDPR segédanyag kérdés", "Csatolom.",
                          "<gdpr-2@example.hu>")
    _quarantine_on_the_next_poll(mailbridge_for, mailbox, smtp_sink, customer)
    slow = _desk(mailbridge_for, mailbox, smtp_sink, parse_timeout=TOO_SHORT)
    assert "retried 1: 0 read now, 1 still unreadable" in slow("quarantine", "retry").stdout
    [entry] = json.loads(slow("quarantine", "list", "--json").stdout)
    assert entry["status"] == "failed_again"
    assert entry["reason"].endswith(f"retry: parse took longer than {TOO_SHORT:g} s")
    [ticket] = slow.tickets()
    assert (ticket["flags"], ticket["reporter_email"]) == (["needs_review"], None)
    assert "quarantine.retry_failed" in [e["type"] for e in slow.ticket("CRX-000001")["events"]]
