"""Big attachments are decoded beside mail-parser, not through it (memory), and come out whole."""

import hashlib
import os
from email.message import EmailMessage

from mailbridge.intake.parse import parse_mail


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
