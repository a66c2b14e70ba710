"""Intake stories against a real Dovecot and a real SQLite file, through the real CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from conftest import CORPUS
from factory import simple_mail

PROCESSED = "mailbridge/processed"
QUARANTINE = "mailbridge/quarantine"


def db_rows(bridge, sql: str) -> list[tuple]:
    path = bridge.config.parent / "mailbridge.db"
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def message_ids(bridge) -> list[str]:
    return [r[0] for r in db_rows(bridge, "select message_id from message where direction = 'in'")]


def test_customer_mail_becomes_a_ticket_and_leaves_the_inbox(mailbox, mailbridge):
    mailbox.deliver((CORPUS / "hu_billing_iso8859_2.eml").read_bytes())
    result = mailbridge("poll", "--once")
    assert "1 new_ticket" in result.stdout

    [ticket] = mailbridge.tickets()
    assert ticket["id"] == "CRX-000001"
    assert ticket["subject"] == "Számla hiba"
    assert ticket["status"] == "new"
    assert ticket["category"] == "Számlázással kapcsolatos kérdés"
    assert ticket["reporter_email"] == "kovacs.jozsef@example.hu"
    assert ticket["message_count"] == 1
    assert mailbox.count("INBOX") == 0
    assert mailbox.count(PROCESSED) == 1

    shown = mailbridge.ticket("crx-1")
    [message] = shown["messages"]
    assert message["direction"] == "in"
    assert "számlán" in message["text"]  # ISO-8859-2 read right
    assert [e["type"] for e in shown["events"]] == ["ticket.created"]


def test_replies_thread_by_references_then_by_subject_tag(mailbox, mailbridge):
    first = simple_mail(1, sender="anna@example.hu")
    mailbox.deliver(first)
    mailbridge("poll", "--once")
    first_id = [line.split(":", 1)[1].strip() for line in first.decode().splitlines() if line.startswith("Message-ID")][0]

    mailbox.deliver(simple_mail(2, sender="anna@example.hu", subject="Re: megint", in_reply_to=first_id))
    mailbox.deliver(simple_mail(3, sender="anna@example.hu", subject="Vá: AW: [crx-1] még egy kérdés"))
    mailbox.deliver(simple_mail(4, sender="bela@example.hu", subject="Új ügy"))
    result = mailbridge("poll", "--once")
    assert "2 reply" in result.stdout and "1 new_ticket" in result.stdout

    tickets = mailbridge.tickets()
    assert [t["message_count"] for t in tickets] == [3, 1]
    events = mailbridge.ticket("CRX-000001")["events"]
    assert [e["detail"].get("via") for e in events if e["type"] == "mail.received"] == ["references", "subject"]


def test_automatic_mail_never_opens_a_ticket(mailbox, mailbridge):
    ooo = (
        "From: Nagy Eszter <nagy.eszter@example.hu>\r\nTo: support@crossec.com\r\n"
        "Subject: Automatikus válasz: Számla hiba\r\nMessage-ID: <ooo-1@example.hu>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSzabadságon vagyok november 30-ig.\r\n"
    ).encode()
    newsletter = (
        "From: Hírlevél <news@example.com>\r\nTo: support@crossec.com\r\nSubject: Novemberi ajánlataink\r\n"
        "Precedence: bulk\r\nList-Id: <news.example.com>\r\nMessage-ID: <nl-1@example.com>\r\n\r\nAkció!\r\n"
    ).encode()
    own = simple_mail(5, sender="support@crossec.com", subject="[CRX-000099] Visszaigazolás")
    for raw in (ooo, newsletter, own):
        mailbox.deliver(raw)
    result = mailbridge("poll", "--once")
    assert mailbridge.tickets() == []
    assert "1 auto_reply" in result.stdout and "2 automatic" in result.stdout
    # Recorded all the same (P6), and gone from INBOX.
    kinds = sorted(r[0] for r in db_rows(mailbridge, "select kind from message"))
    assert kinds == ["auto_reply", "automatic", "automatic"]
    assert mailbox.count("INBOX") == 0


def test_unparseable_mail_is_quarantined_and_the_next_one_goes_on(mailbox, mailbridge):
    mailbox.deliver((CORPUS / "binary_garbage.eml").read_bytes())
    mailbox.deliver(simple_mail(1))
    result = mailbridge("poll", "--once")
    assert "1 quarantined" in result.stdout and "1 new_ticket" in result.stdout
    assert mailbox.count(QUARANTINE) == 1 and mailbox.count(PROCESSED) == 1

    tickets = {t["id"]: t for t in mailbridge.tickets()}
    assert tickets["CRX-000001"]["flags"] == ["needs_review"]
    [entry] = json.loads(mailbridge("quarantine", "list", "--json").stdout)
    assert entry["ticket"] == "CRX-000001" and entry["reason"]
    # The raw message is kept so it can be read again after a fix.
    assert db_rows(mailbridge, "select count(*) from raw_message")[0][0] == 2
    retry = mailbridge("quarantine", "retry", str(entry["id"]))
    assert "1 still unreadable" in retry.stdout


def test_poll_is_incremental_and_never_records_twice(mailbox, mailbridge):
    mailbox.deliver_many([simple_mail(i) for i in range(30)])
    mailbridge("poll", "--once")
    again = mailbridge("poll", "--once")
    assert "nothing new" in again.stdout
    mailbox.deliver(simple_mail(99))
    third = mailbridge("poll", "--once")
    assert "fetched 1:" in third.stdout
    assert len(message_ids(mailbridge)) == 31 == len(set(message_ids(mailbridge)))


def test_flags_set_by_another_client_change_nothing(mailbox, mailbridge):
    mailbox.deliver_many([simple_mail(i) for i in range(20)])
    uids = mailbox.uids()
    mailbox.set_flags(uids[::2], ["\\Seen"])
    mailbox.set_flags(uids[1:5], ["\\Deleted"])  # flagged, not expunged
    mailbridge("poll", "--once")
    assert len(set(message_ids(mailbridge))) == 20
    # We fetched with BODY.PEEK: only the 10 the other client marked are \Seen, none by us.
    processed = mailbox.flags(PROCESSED)
    assert len(processed) == 20
    assert sum(b"\\Seen" in flags for flags in processed.values()) == 10


def test_a_copy_after_uidvalidity_reset_is_not_recorded_twice(mailbox, mailbridge, dovecot_server):
    raws = [simple_mail(i) for i in range(10)]
    mailbox.deliver_many(raws)
    mailbridge("poll", "--once")
    # A restore from backup puts the same mail back, and the folder is renumbered.
    mailbox.deliver_many(raws + [simple_mail(100 + i) for i in range(5)])
    before = mailbox.uidvalidity()
    dovecot_server.reset_uidvalidity(mailbox)
    assert mailbox.uidvalidity() != before
    result = mailbridge("poll", "--once")
    assert "10 duplicate" in result.stdout and "5 new_ticket" in result.stdout
    assert len(message_ids(mailbridge)) == 15
    assert mailbox.count("INBOX") == 0


def test_different_mails_sharing_a_message_id_are_all_kept(mailbox, mailbridge):
    one = simple_mail(1).replace(b"Message-ID: <", b"Message-ID: <same-")
    other = simple_mail(2).replace(b"Message-ID: <", b"Message-ID: <same-")
    same_id = [line for line in one.split(b"\n") if line.startswith(b"Message-ID")][0]
    other = b"\n".join(same_id if line.startswith(b"Message-ID") else line for line in other.split(b"\n"))
    mailbox.deliver(one)
    mailbox.deliver(other)
    mailbox.deliver(one)  # a real copy: same bytes
    result = mailbridge("poll", "--once")
    assert "2 new_ticket" in result.stdout and "1 duplicate" in result.stdout


def test_two_pollers_at_once_record_each_mail_once(mailbox, mailbridge):
    mailbox.deliver_many([simple_mail(i) for i in range(120)])
    first, second = mailbridge.start("poll", "--once"), mailbridge.start("poll", "--once")
    for process in (first, second):
        process.communicate(timeout=300)
    mailbridge("poll", "--once")
    ids = message_ids(mailbridge)
    assert len(ids) == 120 == len(set(ids))
    assert mailbox.count("INBOX") == 0 and mailbox.count(PROCESSED) == 120


def test_server_restart_in_the_middle_of_a_poll_loses_nothing(mailbox, mailbridge, dovecot_server):
    mailbox.deliver_many([simple_mail(i, size_hint=4000) for i in range(300)])
    poller = mailbridge.start("poll", "--once")
    time.sleep(1.5)
    dovecot_server.restart()
    poller.communicate(timeout=300)  # may fail: the server went away under it
    for _ in range(3):
        if "nothing new" in mailbridge("poll", "--once").stdout:
            break
    ids = message_ids(mailbridge)
    assert len(ids) == 300 == len(set(ids))
    assert mailbox.count("INBOX") == 0


def test_sigkill_at_random_points_never_loses_or_duplicates(mailbox, mailbridge):
    total = 300
    mailbox.deliver_many([simple_mail(i) for i in range(total)])
    rnd = random.Random(7)
    kills = 0
    for _ in range(12):
        poller = mailbridge.start("poll", "--once")
        try:
            poller.wait(timeout=rnd.uniform(0.6, 2.5))
        except Exception:
            poller.send_signal(signal.SIGKILL)
            poller.wait()
            kills += 1
        if mailbox.count("INBOX") == 0 and poller.returncode == 0:
            break
    mailbridge("poll", "--once")
    assert kills >= 1
    ids = message_ids(mailbridge)
    assert len(ids) == total == len(set(ids))
    assert mailbox.count("INBOX") == 0 and mailbox.count(PROCESSED) == total
    states = {r[0] for r in db_rows(mailbridge, "select state from intake_log")}
    assert states == {"moved"}


def test_files_holding_personal_data_are_owner_only(mailbox, mailbridge):
    mailbox.deliver((CORPUS / "bug_report_pdf_png.eml").read_bytes())
    mailbridge("poll", "--once")
    root = mailbridge.config.parent
    db = root / "mailbridge.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    stored = [p for p in (root / "storage").rglob("*") if p.is_file()]
    assert stored and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)


def test_logs_carry_no_addresses_or_bodies(mailbox, mailbridge):
    mailbox.deliver((CORPUS / "hu_billing_iso8859_2.eml").read_bytes())
    mailbox.deliver((CORPUS / "binary_garbage.eml").read_bytes())
    result = mailbridge("poll", "--once")
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert {"mail.fetching", "intake.polled", "mail.quarantined"} <= {e["event"] for e in events}
    assert "kovacs.jozsef" not in result.stderr and "Számla" not in result.stderr


def test_pymap_smoke(pymap_mailbox, mailbridge_for):
    bridge = mailbridge_for(pymap_mailbox)
    pymap_mailbox.deliver(simple_mail(1))
    pymap_mailbox.deliver(simple_mail(2))
    bridge("poll", "--once")
    assert len(bridge.tickets()) == 2
    assert pymap_mailbox.count("INBOX") == 0


@pytest.mark.parametrize("mode", ["nil", "short", "desync"])
def test_a_garbled_fetch_answer_leaves_that_mail_on_the_server_and_the_rest_goes_on(
        mailbox, mailbridge_for, dovecot_server, mode):
    from servers import GarblingProxy

    proxy = GarblingProxy(dovecot_server.port, b"POISON-FETCH", mode)
    try:
        bridge = mailbridge_for(mailbox, imap={"port": proxy.port, "timeout": 3})
        mailbox.deliver_many([simple_mail(1), simple_mail(2, body="POISON-FETCH"), simple_mail(3)])
        result = bridge("poll", "--once")
        assert proxy.garbled >= 1
        assert "2 new_ticket" in result.stdout
        assert mailbox.count("INBOX") == 1 and mailbox.count(PROCESSED) == 2
        events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
        assert {"mail.fetch_garbled", "mail.fetch_failed", "mail.fetch_incomplete"} & set(events)
        assert db_rows(bridge, "select state from intake_log where state = 'retry'") == [("retry",)]

        proxy.poison = None  # the server behaves again: the mail comes in, once
        assert "1 new_ticket" in bridge("poll", "--once").stdout
        assert mailbox.count("INBOX") == 0
        assert len(set(message_ids(bridge))) == len(message_ids(bridge)) == 3
    finally:
        proxy.close()


def test_a_mail_the_server_never_gives_is_quarantined_after_five_tries(mailbox, mailbridge_for, dovecot_server):
    from servers import GarblingProxy

    proxy = GarblingProxy(dovecot_server.port, b"POISON-FETCH", "nil")
    try:
        bridge = mailbridge_for(mailbox, imap={"port": proxy.port, "timeout": 3})
        mailbox.deliver(simple_mail(2, body="POISON-FETCH"))
        for _ in range(5):
            bridge("poll", "--once")
        [entry] = json.loads(bridge("quarantine", "list", "--json").stdout)
        assert "server returned no body" in entry["reason"]
        assert mailbox.count("INBOX") == 0 and mailbox.count(QUARANTINE) == 1
        [ticket] = bridge.tickets()
        assert ticket["flags"] == ["needs_review"]
    finally:
        proxy.close()


def test_several_mailboxes_each_with_its_own_defaults(dovecot_server, mailbridge_for):
    support, billing = dovecot_server.new_mailbox(), dovecot_server.new_mailbox()

    def box(name: str, mailbox, **extra) -> dict:
        s = mailbox.imap_settings()
        return {"name": name, "host": s["host"], "port": s["port"], "tls": False, "username": s["username"],
                "password": s["password"], "poll_interval": 1, **extra}

    bridge = mailbridge_for(support, mailboxes=[
        box("support", support),
        box("billing", billing, default_category="Számlázással kapcsolatos kérdés"),
    ])
    support.deliver(simple_mail(1, subject="Kérdés a Normáról"))
    billing.deliver(simple_mail(2, subject="Kérdés"))
    result = bridge("poll", "--once")
    assert "support: fetched 1" in result.stdout and "billing: fetched 1" in result.stdout
    first, second = bridge.tickets()
    assert second["category"] == "Számlázással kapcsolatos kérdés" and first["category"] != second["category"]
    assert support.count("mailbridge/processed") == billing.count("mailbridge/processed") == 1
    assert sorted(r[0] for r in db_rows(bridge, "select mailbox from intake_log")) == ["billing", "support"]
    check = bridge("check", check=False).stdout
    assert "imap support" in check and "imap billing" in check
