"""Big mail: attachments are decoded beside mail-parser, not through it (memory), and come
out whole; a whole poll of any mail up to the size limit keeps every process under 250 MB."""

import hashlib
import os
import subprocess
import time
import zlib
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from factory import simple_mail
from mailbridge.intake.parse import parse_mail
from test_hostile_parse import _peak_rss_of_tree, _read

PROCESSED = "mailbridge/processed"


def big_mail(*blobs: bytes, text_attachment: str = "") -> bytes:
    message = EmailMessage()
    message["From"] = "Nagy Péter <nagy.peter@example.hu>"
    message["To"] = "support@crossec.com"
    message["Subject"] = "Adatbázis-mentés"
    message["Message-ID"] = "<big@example.hu>"
    message.set_content("Csatolom a mentést.")
    for i, blob in enumerate(blobs):
        message.add_attachment(blob, maintype="application", subtype="octet-stream", filename=f"mentes-{i}.bak")
    if text_attachment:
        message.add_attachment(text_attachment, subtype="plain", filename="naplo.txt", cte="base64")
    return bytes(message)


def test_big_attachments_come_out_byte_exact():
    blobs = [os.urandom(3 * 1024 * 1024), b"kicsi", os.urandom(1536 * 1024)]
    mail = parse_mail(big_mail(*blobs, text_attachment="sor\n" * 400_000), 10 * 1024 * 1024)
    assert [p.filename for p in mail.attachments] == ["mentes-0.bak", "mentes-1.bak", "mentes-2.bak", "naplo.txt"]
    assert [p.sha256 for p in mail.attachments[:3]] == [hashlib.sha256(b).hexdigest() for b in blobs]
    assert mail.attachments[3].data == ("sor\n" * 400_000).encode()
    assert mail.text == "Csatolom a mentést."


def test_a_big_attachment_over_the_limit_is_recorded_as_rejected():
    blob = os.urandom(2 * 1024 * 1024)
    [part] = parse_mail(big_mail(blob), 1024 * 1024).attachments
    assert part.rejected and part.size == len(blob) and part.sha256 == hashlib.sha256(blob).hexdigest()
    assert part.data == b""


# --- the whole poll, in memory: every process under 250 MB for any mail up to the size limit ---------


MB = 1024 * 1024


def _html_mail(size: int) -> bytes:
    line = b"<p>Hiba&uuml;zenet a <b>napl&oacute;ban</b>, sorsz&aacute;m 0123456789</p>\r\n"
    return (b"From: Nagy P\xc3\xa9ter <nagy@example.hu>\r\nTo: support@crossec.com\r\nSubject: napl\xc3\xb3\r\n"
            b"Message-ID: <html@example.hu>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            b"<html><body>\r\n" + line * (size // len(line)) + b"</body></html>\r\n")


def _attachment_mail(blobs: list[bytes], n: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = "Nagy Péter <nagy.peter@example.hu>"
    message["To"] = "support@crossec.com"
    message["Subject"] = f"Adatbázis-mentés {n}"
    message["Message-ID"] = f"<big-{n}@example.hu>"
    message.set_content("Csatolom a mentést.")
    for i, blob in enumerate(blobs):
        message.add_attachment(blob, maintype="application", subtype="octet-stream", filename=f"mentes-{i}.bak")
    return message.as_bytes(policy=SMTP)  # CRLF, as the server keeps it


# Random bytes: base64 of them does not compress, so the raw copy is about as big as the mail.
BIG_MAILS = {
    "one 35 MB attachment (a 48 MB mail)": lambda: ([_attachment_mail([os.urandom(35 * MB)])], 1),
    "330 attachments of 100 kB (a 44 MB mail)": lambda: ([_attachment_mail([os.urandom(100 * 1024)
                                                                             for _ in range(330)])], 330),
    "a 49 MB HTML body": lambda: ([_html_mail(49 * MB)], 0),
    "two 48 MB mails in a row": lambda: ([_attachment_mail([os.urandom(35 * MB)], n) for n in (1, 2)], 1),
}


@pytest.mark.parametrize("case", list(BIG_MAILS))
def test_a_big_mail_is_taken_in_whole_with_every_process_under_250_mb(case, mailbox, mailbridge_for):
    bridge = mailbridge_for(mailbox, storage={"max_attachment_bytes": 40 * MB})
    raws, files = BIG_MAILS[case]()  # files: attachments per mail
    for raw in raws:
        assert len(raw) < 50 * MB  # imap.max_message_bytes, the default
        mailbox.deliver(raw)
    mailbox.deliver(simple_mail(2))
    poll = subprocess.Popen(bridge.command("poll", "--once"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak_kb = _peak_rss_of_tree(poll)
    output = poll.stdout.read().decode()
    assert poll.returncode == 0 and f"{len(raws) + 1} new_ticket" in output, output
    assert peak_kb < 250 * 1024  # the poller or a parse worker; a 35 MB attachment took 243 MB, two in a row 350 MB
    assert (mailbox.count("INBOX"), mailbox.count(PROCESSED)) == (0, len(raws) + 1)
    # Nothing lost: every attachment byte-exact in the store, every raw copy whole.
    storage = bridge.config.parent / "storage"
    stored = _read(bridge, "select sha256, size from attachment where rejected = 0")
    assert len(stored) == files * len(raws)
    for sha256, size in stored:
        with open(storage / "attachments" / sha256[:2] / sha256, "rb") as file:
            assert hashlib.file_digest(file, "sha256").hexdigest() == sha256
    for raw in raws:
        [(data,)] = _read(bridge, f"select data from raw_message where sha256 = '{hashlib.sha256(raw).hexdigest()}'")
        assert zlib.decompress(data) == raw
    assert list((storage / "attachments" / ".staging").iterdir()) == []


def test_files_a_killed_poller_left_staged_are_swept_on_a_later_poll(mailbox, mailbridge_for):
    bridge = mailbridge_for(mailbox)
    staging = bridge.config.parent / "storage" / "attachments" / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    left, fresh = staging / "staged-left", staging / "staged-fresh"  # a customer's file, each
    for path in (left, fresh):
        path.write_bytes(b"%PDF-1.4 szerzodes")
    two_hours_ago = time.time() - 7200
    os.utime(left, (two_hours_ago, two_hours_ago))
    mailbox.deliver(simple_mail(1))
    assert "1 new_ticket" in bridge("poll", "--once").stdout
    # The fresh one may be another poller's mail in hand.
    assert (left.exists(), fresh.exists()) == (False, True)
