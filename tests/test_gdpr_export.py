"""`gdpr export`: one ZIP of a person's own data, and nothing of anyone else (Art. 15)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from email.message import EmailMessage

import pytest

from test_workflow import AGENTS, SIGNED, TRUSTED

ANNA, ANNA_NAME = "anna.kovacs@example.hu", "Kovács Anna"
BELA, BELA_NAME = "bela.nagy@example.hu", "Nagy Béla"
SCREENSHOT = b"%PDF-1.4 Anna's screenshot of the error\n" * 30


def mail(n: int, sender: str, name: str, subject: str, body: str, files: dict[str, bytes] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<export-{n}@example.hu>"
    message.set_content(body)
    for filename, data in (files or {}).items():
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return bytes(message)


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    """Anna's ticket with her two mails and a file, our acknowledgement to her, Béla's mail on
    her ticket (he is no participant: recorded all the same), an agent's internal note and a
    logged call."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, security=TRUSTED)
    mailbox.deliver(mail(1, ANNA, ANNA_NAME, "Export hiba", "ANNA-FIRST: az export leall.", {"hiba.pdf": SCREENSHOT}))
    desk("poll", "--once")
    desk("tick")
    mailbox.deliver(mail(2, ANNA, ANNA_NAME, "Re: [CRX-000001] Export hiba", "ANNA-SECOND: most sem megy."))
    mailbox.deliver(mail(3, BELA, BELA_NAME, "Re: [CRX-000001] Export hiba", "BELA-SECRET: nalunk is, 06-1-555-0000."))
    note = mail(4, "kiss.anna@crossec.com", "Kiss Anna", "Re: [CRX-000001] Export hiba",
                "#note\nAGENT-INTERNAL: a fejlesztok tudnak rola.\n")
    mailbox.deliver(SIGNED.encode() + note)
    result = desk("poll", "--once")
    assert "1 reply" in result.stdout and "1 outsider" in result.stdout and "1 agent_note" in result.stdout
    desk("ticket", "log", "CRX-000001", "--channel", "phone", "--direction", "out", "--by", "kiss.anna@crossec.com",
         "--note", "Visszahivtam, a frissites utan ujra probalja.")
    desk("tick")
    return desk


def export(desk, email: str, out) -> tuple[dict, dict[str, bytes], str]:
    result = desk("gdpr", "export", email, "--out", str(out))
    with zipfile.ZipFile(out) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(entries["person.json"]), entries, result.stdout


def test_the_export_holds_the_persons_tickets_mails_files_raw_copies_and_calls(desk, tmp_path):
    person, entries, said = export(desk, ANNA, tmp_path / "anna.zip")
    assert "1 ticket(s), 3 message(s), 1 attachment(s), 2 raw message(s)" in said

    assert person["format"] == "mailbridge-export/1" and person["exported_at"].endswith("+00:00")
    assert person["subject"] == {"email": ANNA, "names": [ANNA_NAME]}
    [ticket] = person["tickets"]
    assert (ticket["id"], ticket["subject"], ticket["role"], ticket["assignee"]) == (
        "CRX-000001", "Export hiba", "reporter", "kiss.anna@crossec.com")
    assert set(ticket) == {"id", "subject", "status", "category", "area", "channel", "created_at", "ack_deadline",
                           "acknowledged_at", "resolved_at", "assignee", "role"}

    first, ack, second = person["messages"]
    assert (first["direction"], first["sender"], first["ticket"]) == ("in", ANNA, "CRX-000001")
    assert "ANNA-FIRST" in first["text"] and "ANNA-SECOND" in second["text"]
    # Our acknowledgement, sent to her, is hers too.
    assert (ack["direction"], ack["kind"], ack["to"]) == ("out", "ack", [ANNA])
    assert "CRX-000001" in ack["subject"]

    [file] = first["attachments"]
    digest = hashlib.sha256(SCREENSHOT).hexdigest()
    assert file == {"filename": "hiba.pdf", "size": len(SCREENSHOT), "sha256": digest,
                    "path": f"attachments/{digest}-hiba.pdf"}
    assert entries[file["path"]] == SCREENSHOT
    for message in (first, second):
        assert message["raw"].startswith("raw/") and message["raw"].endswith(".eml")
        assert b"ANNA-" in entries[message["raw"]] and b"Message-ID: <export-" in entries[message["raw"]]
    assert ack["raw"] is None

    assert person["contacts"] == [{"ticket": "CRX-000001", "channel": "phone", "direction": "out",
                                   "by": "kiss.anna@crossec.com", "at": person["contacts"][0]["at"],
                                   "note": "Visszahivtam, a frissites utan ujra probalja."}]
    types = [e["type"] for e in person["events"]]
    assert types[0] == "ticket.created" and "contact.logged" in types
    assert all(set(e) == {"type", "at", "ticket"} for e in person["events"])

    # Nothing of Béla's (a customer on the same ticket) nor the agent's internal note (Art. 15(4)).
    everything = b"".join(entries.values())
    for foreign in (b"BELA-SECRET", BELA.encode(), BELA_NAME.encode(), "Béla".encode(), b"AGENT-INTERNAL"):
        assert foreign not in everything
    assert sorted(entries) == sorted(["person.json", file["path"], first["raw"], second["raw"]])


def test_the_other_customer_gets_his_own_mail_and_not_hers(desk, tmp_path):
    person, entries, _ = export(desk, BELA, tmp_path / "bela.zip")
    assert person["subject"] == {"email": BELA, "names": [BELA_NAME]}
    [ticket] = person["tickets"]
    assert (ticket["id"], ticket["role"]) == ("CRX-000001", "correspondent")
    [message] = person["messages"]
    assert message["sender"] == BELA and "BELA-SECRET" in message["text"] and message["attachments"] == []
    assert b"BELA-SECRET" in entries[message["raw"]]
    assert person["contacts"] == []  # the call was with Anna
    assert [e["type"] for e in person["events"]] == ["mail.outsider"]  # his own doing on her ticket
    everything = b"".join(entries.values())
    for foreign in (b"ANNA-FIRST", b"ANNA-SECOND", ANNA.encode(), SCREENSHOT[:20], b"Visszahivtam"):
        assert foreign not in everything


def test_the_zip_is_readable_by_the_owner_only_and_replaced_whole(desk, tmp_path):
    out = tmp_path / "anna.zip"
    out.write_bytes(b"an older export")
    os.chmod(out, 0o644)
    export(desk, ANNA, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".anna.zip")] == []  # no temporary left


def test_a_person_we_know_nothing_about_gets_a_valid_empty_export(desk, tmp_path):
    person, entries, said = export(desk, "Senki.Sem@Example.hu", tmp_path / "nobody.zip")
    assert "0 ticket(s), 0 message(s), 0 attachment(s), 0 raw message(s)" in said
    assert list(entries) == ["person.json"]
    assert person["subject"] == {"email": "senki.sem@example.hu", "names": []}
    assert [person[k] for k in ("tickets", "messages", "contacts", "events")] == [[], [], [], []]


def test_a_phone_reporter_without_mail_is_exported_too(desk, tmp_path):
    desk("ticket", "open", "--channel", "phone", "--name", "Tóth Ákos", "--email", "akos@example.hu",
         "--category", "Egyéb", "--area", "Egyéb", "--subject", "Telefonos kérdés", "--body", "AKOS-SAID: hív")
    person, _, _ = export(desk, "akos@example.hu", tmp_path / "akos.zip")
    assert person["subject"]["names"] == ["Tóth Ákos"]
    assert [(t["id"], t["channel"], t["role"]) for t in person["tickets"]] == [("CRX-000002", "phone", "reporter")]
    said = [m for m in person["messages"] if m["direction"] == "in"]
    assert [(m["channel"], m["raw"]) for m in said] == [("phone", None)] and "AKOS-SAID" in said[0]["text"]


def test_an_export_into_a_missing_folder_fails_in_one_line(desk, tmp_path):
    result = desk("gdpr", "export", ANNA, "--out", str(tmp_path / "nincs" / "anna.zip"), check=False)
    assert result.returncode == 1 and "cannot write the export" in result.stderr


def test_a_web_form_submission_is_the_reporters_own_message(mailbox, smtp_sink, mailbridge_for, tmp_path):
    from pathlib import Path

    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, forms={"senders": ["wordpress@crossec.com"]})
    mailbox.deliver((Path(__file__).parent / "forms" / "01-cf7-plain.eml").read_bytes())
    desk("poll", "--once")
    person, entries, _ = export(desk, "szoke.ors@example.hu", tmp_path / "ors.zip")
    assert [(t["channel"], t["role"]) for t in person["tickets"]] == [("form", "reporter")]
    [form] = person["messages"]
    assert form["sender"] == "wordpress@crossec.com" and "Norma" in form["text"]
    assert b"cf7.a81b2c3d4e5f60718293a4b5c6d7e8f9@crossec.com" in entries[form["raw"]]
    # The web server's address is nobody's person: it gets nothing of the customer's.
    nobody, _, _ = export(desk, "wordpress@crossec.com", tmp_path / "wp.zip")
    assert nobody["tickets"] == []
