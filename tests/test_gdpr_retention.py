"""`gdpr retention`: old closed tickets and raw copies go; statistics and open work stay (Art. 5(1)(e))."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import CORPUS
from test_gdpr_export import mail
from test_workflow import AGENTS

ANNA, ANNA_NAME = "anna.kovacs@example.hu", "Kovács Anna"
BELA, BELA_NAME = "bela.nagy@example.hu", "Nagy Béla"
SHARED = b"%PDF-1.4 the price list everyone sends\n" * 50
OWN = b"%PDF-1.4 Anna's own contract\n" * 40


def at(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def rows(desk, sql: str) -> list[tuple]:
    with sqlite3.connect(desk.config.parent / "mailbridge.db") as db:
        return db.execute(sql).fetchall()


def stored(desk, data: bytes) -> bool:
    digest = hashlib.sha256(data).hexdigest()
    return (desk.config.parent / "storage" / "attachments" / digest[:2] / digest).exists()


def database_bytes(desk) -> bytes:
    return b"".join(p.read_bytes() for p in Path(desk.config.parent).glob("mailbridge.db*"))


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    """Anna's ticket (closed) and Béla's (open), both with the same price list attached."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, retention={"closed_ticket_days": 30})
    mailbox.deliver(mail(1, ANNA, ANNA_NAME, "Szerződés kérdés", "ANNA-TEXT: a szerződésemről",
                         {"szerzodes.pdf": OWN, "arlista.pdf": SHARED}))
    mailbox.deliver(mail(2, BELA, BELA_NAME, "Árlista kérdés", "BELA-TEXT: csatolom az árlistát",
                         {"arlista.pdf": SHARED}))
    desk("poll", "--once")
    desk("tick")
    desk("ticket", "status", "CRX-000001", "closed")
    return desk


def test_an_old_closed_ticket_is_purged_and_the_open_one_is_untouched(desk):
    before = {t["id"]: t for t in desk.tickets()}
    bela_before = desk.ticket("CRX-000002")
    assert ANNA.encode() in database_bytes(desk)

    assert "closed tickets purged: none" in desk("gdpr", "retention", "--at", at(29)).stdout  # not old enough
    result = desk("gdpr", "retention", "--at", at(31))
    assert "closed tickets purged: CRX-000001" in result.stdout
    assert ANNA not in result.stdout and ANNA_NAME not in result.stdout

    after = {t["id"]: t for t in desk.tickets()}
    assert list(after) == ["CRX-000001", "CRX-000002"]  # still counted
    anna = after["CRX-000001"]
    assert (anna["subject"], anna["status"], anna["reporter_email"], anna["attachments"]) == ("(purged)", "closed", None, [])
    for key in ("category", "area", "channel", "created_at", "updated_at", "ack_deadline", "acknowledged_at",
                "assignee", "message_count"):
        assert anna[key] == before["CRX-000001"][key], key
    assert after["CRX-000002"] == before["CRX-000002"] and desk.ticket("CRX-000002") == bela_before

    shown = desk.ticket("CRX-000001")
    assert all(m["text"] == m["subject"] == m["sender"] == m["to"] == "" for m in shown["messages"])
    [purged] = [e for e in shown["events"] if e["type"] == "retention.purged"]
    assert purged["by"] == "system" and purged["detail"] == {"rule": "closed_ticket_days", "days": 30, "was": "closed"}
    assert all(ANNA not in str(e) for e in shown["events"])

    # The shared file stays for Béla's ticket; Anna's own file is gone, as are her raw copy and reporter row.
    assert stored(desk, SHARED) and not stored(desk, OWN)
    assert rows(desk, "select count(*) from raw_message")[0][0] == 1
    assert rows(desk, "select email from reporter") == [(BELA,)]
    # Nothing readable lingers in the database file or its WAL.
    leftovers = database_bytes(desk)
    assert b"ANNA-TEXT" not in leftovers and ANNA.encode() not in leftovers and b"BELA-TEXT" in leftovers

    again = desk("gdpr", "retention", "--at", at(60))
    assert "closed tickets purged: none" in again.stdout and "raw copies dropped: 0" in again.stdout
    assert desk.ticket("CRX-000001")["events"] == shown["events"]


def test_a_dry_run_lists_and_changes_nothing(desk):
    before = [desk.ticket(t) for t in ("CRX-000001", "CRX-000002")]
    result = desk("gdpr", "retention", "--dry-run", "--at", at(31))
    assert result.stdout.splitlines() == [
        "retention (dry run: nothing changed)",
        "closed tickets to purge: CRX-000001",
        "raw copies to drop: 1 (retention.raw_message_days = 0)",
        "attachment files to delete: 1",
    ]
    assert [desk.ticket(t) for t in ("CRX-000001", "CRX-000002")] == before
    assert stored(desk, OWN) and rows(desk, "select count(*) from raw_message")[0][0] == 2


def test_a_resolved_ticket_counts_as_closed_once_it_can_no_longer_reopen(desk):
    desk("ticket", "status", "CRX-000002", "resolved")  # reopen_days: 14 by default
    assert "CRX-000002" not in desk("gdpr", "retention", "--at", at(40)).stdout
    assert "closed tickets purged: CRX-000002" in desk("gdpr", "retention", "--at", at(45)).stdout
    assert [t["status"] for t in desk.tickets()] == ["closed", "closed"]
    # Now nothing references the shared file any more.
    assert not stored(desk, SHARED)


def test_without_a_rule_nothing_goes(mailbox, mailbridge_for):
    desk = mailbridge_for(mailbox)
    mailbox.deliver(mail(1, ANNA, ANNA_NAME, "Kérdés", "ANNA-TEXT"))
    desk("poll", "--once")
    desk("ticket", "status", "CRX-000001", "closed")
    result = desk("gdpr", "retention", "--at", at(3650))
    assert "closed tickets: kept (retention.closed_ticket_days = 0)" in result.stdout
    assert desk.tickets()[0]["subject"] == "Kérdés"


def test_old_raw_copies_go_except_a_quarantined_mail_waiting_for_a_retry(mailbox, mailbridge_for):
    desk = mailbridge_for(mailbox, retention={"raw_message_days": 10})
    mailbox.deliver((CORPUS / "binary_garbage.eml").read_bytes())
    mailbox.deliver(mail(1, ANNA, ANNA_NAME, "Kérdés", "ANNA-TEXT"))
    desk("poll", "--once")
    assert rows(desk, "select count(*) from raw_message")[0][0] == 2
    assert "raw copies dropped: 0" in desk("gdpr", "retention", "--at", at(9)).stdout
    assert "raw copies to drop: 1" in desk("gdpr", "retention", "--dry-run", "--at", at(11)).stdout
    assert "raw copies dropped: 1" in desk("gdpr", "retention", "--at", at(11)).stdout
    kept = rows(desk, "select m.kind, q.status from message m join raw_message r on r.id = m.raw_id "
                      "left join quarantine q on q.message_pk = m.id")
    assert kept == [("unparseable", "waiting")]
    # The ticket itself is untouched: only the copy as received went.
    assert "ANNA-TEXT" in desk.ticket("CRX-000002")["messages"][0]["text"]
    assert "raw copies dropped: 0" in desk("gdpr", "retention", "--at", at(400)).stdout


def test_the_daily_job_is_the_same_as_the_command(desk):
    from mailbridge.adapters.db import Database
    from mailbridge.config import load_settings
    from mailbridge.gdpr.retention import retention_job

    settings = load_settings(desk.config)
    report = retention_job(Database(settings.database.url), settings, datetime.now(timezone.utc) + timedelta(days=31))
    assert report.purged == ["CRX-000001"] and not report.dry_run
    assert desk.tickets()[0]["subject"] == "(purged)"


def test_retention_expunges_the_server_copies_of_purged_tickets(mailbox, smtp_sink, mailbridge_for):
    from factory import simple_mail

    desk = mailbridge_for(mailbox, smtp_sink, retention={"closed_ticket_days": 30})
    mailbox.deliver(simple_mail(1, sender="anna@example.hu"))
    mailbox.deliver(simple_mail(2, sender="bela@example.hu"))
    desk("poll", "--once")
    desk("ticket", "status", "CRX-000001", "closed")
    assert mailbox.count("mailbridge/processed") == 2
    result = desk("tick", "--at", (datetime.now(timezone.utc) + timedelta(days=365)).isoformat())
    assert "1 purged" in result.stdout
    assert mailbox.count("mailbridge/processed") == 1  # only the open ticket's copy is left
