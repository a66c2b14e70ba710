"""`gdpr erase`: no trace of the person in the database, the storage or the IMAP folders (Art. 17)."""

from __future__ import annotations

import random
import signal
from email.message import EmailMessage
from pathlib import Path

import pytest

from test_workflow import AGENTS

ANNA, ANNA_NAME = "anna.kovacs@example.hu", "Kovács Anna"
SHARED = b"%PDF-1.4 the price list everyone sends\n" * 50


def mail(n: int, sender: str, name: str, subject: str, body: str, files: dict[str, bytes] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<gdpr-{n}@example.hu>"
    message.set_content(body)
    for filename, data in (files or {}).items():
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return bytes(message)


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(mail(1, ANNA, ANNA_NAME, "Számla hiba", "Üdvözlettel: Kovács Anna, 06-30-123-4567",
                         {"anna-szerzodes.pdf": b"%PDF-1.4 Anna's own contract\n" * 40, "arlista.pdf": SHARED}))
    mailbox.deliver(mail(2, "bela@example.hu", "Nagy Béla", "Árlista kérdés", "Csatolom az árlistát.",
                         {"arlista.pdf": SHARED}))
    desk("poll", "--once")
    desk("tick")  # acknowledgements to both: outbox rows and out messages with their addresses
    desk("ticket", "log", "CRX-000001", "--channel", "phone", "--direction", "out", "--by", "kiss.anna@crossec.com",
         "--note", f"Felhívtam {ANNA_NAME}-t ({ANNA}), a számlát javítjuk.")
    return desk


def traces(root: Path, mailbox) -> list[str]:
    """Where the address or the name can still be read: database files, storage, IMAP folders."""
    found = []
    needles = [ANNA.encode(), ANNA_NAME.encode(), b"Anna's own contract"]
    for path in list(root.glob("mailbridge.db*")) + [p for p in (root / "storage").rglob("*") if p.is_file()]:
        data = path.read_bytes()
        found += [f"{path.name}: {n!r}" for n in needles if n in data]
    for folder in ("INBOX", "mailbridge/processed", "mailbridge/quarantine"):
        for raw in mailbox.messages(folder):
            found += [f"{folder}: {n!r}" for n in needles if n in raw]
    return found


def test_after_erase_no_trace_is_left_and_the_tickets_still_count(mailbox, desk):
    root = desk.config.parent
    assert traces(root, mailbox)  # the test can see them before
    result = desk("gdpr", "erase", ANNA, "--yes")
    assert "erased as erased-" in result.stdout and "NOT finished" not in result.stdout
    assert traces(root, mailbox) == []

    tickets = desk.tickets()
    assert len(tickets) == 2
    anna = tickets[0]
    assert anna["reporter_email"].startswith("erased-") and anna["reporter_email"].endswith("@erased.invalid")
    # The other reporter's copy of the shared file stays; Anna's own file is gone.
    assert [a["filename"] for a in tickets[1]["attachments"]] == ["arlista.pdf"]
    shown = desk.ticket("CRX-000001")
    assert [e for e in shown["events"] if e["type"] == "erasure"] == [
        {"type": "erasure", "at": shown["events"][-1]["at"], "by": "system", "detail": {}}]
    assert "Nagy Béla" in desk.ticket("CRX-000002")["reporter_name"]


def test_erase_asks_first_and_is_idempotent(desk):
    asked = desk("gdpr", "erase", ANNA, check=False, subprocess_=True)
    assert asked.returncode == 1 and "will pseudonymise" in asked.stdout  # no --yes and no terminal: aborted
    assert desk.tickets()[0]["reporter_email"] == ANNA
    desk("gdpr", "erase", ANNA, "--yes")
    again = desk("gdpr", "erase", ANNA, "--yes", check=False)  # nothing left: said so, nothing written
    assert again.returncode == 2 and f"nothing held about {ANNA}" in again.stderr
    assert "nothing held" in desk("gdpr", "erase", "senki@example.hu", "--yes", check=False).stderr


def test_an_imap_outage_leaves_the_erasure_pending_until_run_again(mailbox, desk, dovecot_server):
    root = desk.config.parent
    dovecot_server.kill()
    try:
        first = desk("gdpr", "erase", ANNA, "--yes")
        assert "NOT finished" in first.stdout
    finally:
        dovecot_server.start()
    second = desk("gdpr", "erase", ANNA, "--yes")
    assert second.returncode == 0 and "NOT finished" not in second.stdout
    assert traces(root, mailbox) == []


def test_erase_killed_half_way_is_completed_by_the_next_run(mailbox, desk):
    rnd = random.Random(3)
    for _ in range(4):
        process = desk.start("gdpr", "erase", ANNA, "--yes")
        try:
            process.wait(timeout=rnd.uniform(0.5, 1.6))
        except Exception:
            process.send_signal(signal.SIGKILL)
            process.wait()
    final = desk("gdpr", "erase", ANNA, "--yes", subprocess_=True, check=False)
    # Either it finishes what a killed run left, or an earlier run had finished it all.
    finished = final.returncode == 0 and "erased as erased-" in final.stdout and "NOT finished" not in final.stdout
    assert finished or (final.returncode == 2 and "nothing held" in final.stderr), final
    assert traces(desk.config.parent, mailbox) == []
    assert len(desk.tickets()) == 2
