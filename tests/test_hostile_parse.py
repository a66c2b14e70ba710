"""Hostile mail against the parse stage: every step has a bounded cost, and the
names it gives attachments are safe on any disk (issue 12, "Trust")."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from email.message import EmailMessage

import pytest

from corpus.make_corpus import LVL_ATTACHMENT, LVL_MESSAGE, _tnef_attr, make_pdf
from factory import simple_mail
from mailbridge.intake.parse import new_text_of, parse_mail, sanitize_filename

QUARANTINE = "mailbridge/quarantine"
PROCESSED = "mailbridge/processed"


# --- attachment names -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        # Bidi overrides and other invisible format characters: the real extension shows.
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("\u2066evil\u2069\u200b.pdf", "evil.pdf"),
        ("\ufeffszámla\u200e.pdf", "számla.pdf"),
        ("a\u2028b\u2029c.pdf", "abc.pdf"),
        ("a\u00a0b\u3000c.pdf", "a b c.pdf"),
        # Windows device names, any case, with or without an extension.
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Nul.tar.gz", "_Nul.tar.gz"),
        ("aux .pdf", "_aux.pdf"),
        ("PRN.pdf", "_PRN.pdf"),
        ("COM1.pdf", "_COM1.pdf"),
        ("lpt9", "_lpt9"),
        ("COM\u00b9.txt", "_COM\u00b9.txt"),
        ("CONOUT$", "_CONOUT$"),
        ("console.pdf", "console.pdf"),
        ("com10.pdf", "com10.pdf"),
        # Trailing dots and spaces (Windows drops them: "a.pdf." would become "a.pdf" there).
        ("report.pdf.", "report.pdf"),
        ("report.pdf   ", "report.pdf"),
        ("report.pdf . .", "report.pdf"),
        ("x" * 140 + " . . . . . . . . . .pdf", "x" * 140 + ".pdf"),
        # Characters NTFS refuses (":" opens an alternate data stream).
        ("a:b.pdf", "a_b.pdf"),
        ('x<>|?*".doc', "x______.doc"),
        # Bounded in bytes too: 4-byte characters would pass a character limit at 600 bytes.
        ("ő" * 200 + ".pdf", "ő" * 118 + ".pdf"),
    ],
    ids=lambda value: ascii(value)[:40],
)
def test_attachment_names_are_safe_on_any_disk(name, expected):
    assert sanitize_filename(name, "application/pdf") == expected


@pytest.mark.parametrize("name", ["\U0001f600" * 100 + ".pdf", "é" * 1000, "a/" * 5000 + "b.pdf"],
                         ids=["emoji", "accents", "deep-path"])
def test_attachment_names_stay_within_what_file_systems_take(name):
    safe = sanitize_filename(name, "application/pdf")
    assert 0 < len(safe) <= 150 and len(safe.encode()) <= 240


# --- winmail.dat ---------------------------------------------------------------------


def _winmail(title: bytes, data: bytes) -> bytes:
    """TNEF as Outlook 2003 writes it: the attachment's only name an 8.3 title in the OEM code page."""
    out = bytearray(struct.pack("<IH", 0x223E9F78, 0x5C1D))
    out += _tnef_attr(LVL_MESSAGE, 0x9006, 0x0008, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += _tnef_attr(LVL_MESSAGE, 0x9007, 0x0006, struct.pack("<II", 1250, 0))  # attOemCodepage
    out += _tnef_attr(LVL_ATTACHMENT, 0x9002, 0x0006, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0x20, 0x20, 1))
    out += _tnef_attr(LVL_ATTACHMENT, 0x8010, 0x0001, title + b"\x00")  # attAttachTitle
    out += _tnef_attr(LVL_ATTACHMENT, 0x800F, 0x0006, data)  # attAttachData
    return bytes(out)


def _outlook_mail(winmail: bytes) -> bytes:
    message = EmailMessage()
    message["From"] = "Kovács Béla <bela@example.hu>"
    message["To"] = "support@crossec.com"
    message["Subject"] = "Árajánlat"
    message["Message-ID"] = "<tnef-cp1250@example.hu>"
    message.set_content("Csatolom az árajánlatot.")
    message.add_attachment(winmail, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return bytes(message)


def test_winmail_dat_with_a_title_in_the_outlook_code_page_is_unpacked():
    pdf = make_pdf(["Arajanlat"])
    mail = parse_mail(_outlook_mail(_winmail("ÁRAJÁNL.PDF".encode("cp1250"), pdf)), 10**6)
    assert mail.text == "Csatolom az árajánlatot."
    [part] = mail.attachments
    assert (part.filename, part.data) == ("ÁRAJÁNL.PDF", pdf)


def test_winmail_dat_that_cannot_be_unpacked_is_kept_as_it_is():
    broken = _winmail(b"a.pdf", b"x")[:-40] + b"\xff" * 7
    mail = parse_mail(_outlook_mail(broken), 10**6)
    assert mail.text == "Csatolom az árajánlatot."
    assert [(p.filename, p.data) for p in mail.attachments] == [("winmail.dat", broken)]
