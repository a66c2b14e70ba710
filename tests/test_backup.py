"""`mailbridge db backup PATH` (issue 17): a running SQLite installation copied whole
(database and storage), restored into a fresh folder and read there.

Real parts: Dovecot, SQLite files, the CLI as its own process; the backup is taken
while another connection holds a write transaction open and `poll` waits on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import stat
import subprocess
from email.message import EmailMessage
from pathlib import Path

from conftest import Mailbridge, write_config
from factory import simple_mail
from test_hostile_cli import one_line

SCREENSHOT = b"%PDF-1.4 backup screenshot\n" * 64


def mail_with_file() -> bytes:
    message = EmailMessage()
    message["From"] = "Kovács Anna <anna.kovacs@example.hu>"
    message["To"] = "support@crossec.com"
    message["Subject"] = "Nem nyílik meg a számla"
    message["Message-ID"] = "<backup-1@example.hu>"
    message.set_content("A csatolt képernyőképen látszik a hiba.")
    message.add_attachment(SCREENSHOT, maintype="application", subtype="pdf", filename="hiba.pdf")
    return bytes(message)


def modes(folder: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [folder, *folder.rglob("*")]}


def test_a_backup_taken_while_the_desk_writes_restores_into_a_fresh_folder(mailbox, mailbridge_for, tmp_path):
    desk = mailbridge_for(mailbox)
    mailbox.deliver(mail_with_file())
    mailbox.deliver(simple_mail(2, subject="Jelszó", sender="toth.akos@example.hu"))
    desk("poll", "--once")
    listed, shown = desk("tickets", "list", "--json").stdout, desk("tickets", "show", "CRX-000001", "--json").stdout
    assert len(json.loads(listed)) == 2

    # Mid-flight: a writer holds its transaction open, and a poll with new mail waits on it.
    for n in range(3, 13):
        mailbox.deliver(simple_mail(n))
    writer = sqlite3.connect(tmp_path / "mailbridge.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE ticket SET subject = 'half-written' WHERE id = 1")
    poll = desk.start("poll", "--once")
    try:
        backup = tmp_path / "backups" / "2026-12-05"
        done = desk("db", "backup", str(backup), subprocess_=True, timeout=120)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        out, err = poll.communicate(timeout=120)
    assert poll.returncode == 0, err
    assert "fetched 10" in out  # the poll went on once the writer let go
    assert f"database: {backup}/mailbridge.db" in done.stdout and f"storage: {backup}/storage" in done.stdout
    assert sorted(p.name for p in backup.iterdir()) == ["mailbridge.db", "storage"]  # no WAL beside the copy
    assert modes(backup) <= {("dir", 0o700), ("file", 0o600)}

    # Restore: the copy's database and storage at a fresh config's paths.
    fresh = tmp_path / "restored"
    fresh.mkdir()
    shutil.copy(backup / "mailbridge.db", fresh / "mailbridge.db")
    shutil.copytree(backup / "storage", fresh / "storage")
    restored = Mailbridge(write_config(fresh / "mailbridge.toml", mailbox.imap_settings()))
    assert restored("tickets", "list", "--json", subprocess_=True).stdout == listed  # the 10 new ones are not in it
    assert restored("tickets", "show", "CRX-000001", "--json", subprocess_=True).stdout == shown
    attachment = json.loads(shown)["attachments"][0]
    digest = hashlib.sha256(SCREENSHOT).hexdigest()
    assert (attachment["filename"], attachment["sha256"]) == ("hiba.pdf", digest)
    copied = fresh / "storage" / "attachments" / digest[:2] / digest
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == digest
    assert len(desk.tickets()) == 12  # the live desk has them


def test_a_backup_never_writes_into_a_folder_that_holds_something(mailbridge, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    result = mailbridge("db", "backup", str(taken), check=False, subprocess_=True)
    assert result.returncode == 2
    assert one_line(result) == f"mailbridge: backup folder {taken}: exists and is not empty (give a new folder)"
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "database: " in mailbridge("db", "backup", str(empty)).stdout  # an empty folder is a new one


def test_on_postgresql_backup_names_the_standard_tools(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[database]\nurl = 'postgresql+psycopg://mailbridge@db.example/mailbridge'\n"
                      f"[storage]\npath = '{tmp_path}/storage'\n")
    result = subprocess.run(Mailbridge(config).command("db", "backup", str(tmp_path / "b")),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    line = one_line(result)
    assert "pg_dump" in line and f"copy {tmp_path}/storage" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
