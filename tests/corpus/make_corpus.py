#!/usr/bin/env python3
"""(Re)create the corpus files that are impractical to write by hand.

Deterministic: same bytes on every run, on every Python >= 3.9, because no
clock, no random module and no zlib compression level is involved (the PNG
encoder below writes *stored* deflate blocks, whose layout is fixed).

Files written next to this script:

  zero_byte.eml            0 bytes
  binary_garbage.eml       4 KiB of pseudo-random bytes (SHA-256 counter stream)
  huge_header.eml          ~210 KB header block: a mail-loop pile of 1000
                           Received lines + one 20 KB unfolded X- header
  attach_oversize.eml      a ~150 KB PNG (over max_attachment_bytes = 100000)
                           next to a small PDF that is within the limit
  winmail_dat.eml          Outlook "rich text" mail whose application/ms-tnef
                           winmail.dat (built per MS-OXTNEF) carries a PDF and
                           a text file

Run:  python3 tests/corpus/make_corpus.py          (writes the files)
      python3 tests/corpus/make_corpus.py --check  (also re-reads winmail.dat
                                                    with tnefparse, if installed)

The helpers make_pdf() and make_png() are also the source of the small PDF /
PNG attachments embedded (base64) in the hand-written .eml files.
"""
from __future__ import annotations

import base64
import hashlib
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------
# deterministic byte sources
# --------------------------------------------------------------------------
def prng_bytes(seed: bytes, n: int) -> bytes:
    """n pseudo-random bytes: SHA-256(seed || counter) blocks."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------
# tiny but valid PDF
# --------------------------------------------------------------------------
def make_pdf(lines: list[str]) -> bytes:
    """A one-page PDF 1.4 (Helvetica, ASCII text) with a correct xref table."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    text = ["BT", "/F1 12 Tf", "14 TL", "50 780 Td"]
    for ln in lines:
        text.append(f"({esc(ln)}) Tj T*")
    text.append("ET")
    stream = ("\n".join(text) + "\n").encode("ascii")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for num, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objs) + 1)
    out += b"0000000000 65535 f \n"
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1, xref)
    return bytes(out)


# --------------------------------------------------------------------------
# PNG with stored (uncompressed) deflate blocks -> byte-for-byte reproducible
# --------------------------------------------------------------------------
def _zlib_stored(data: bytes) -> bytes:
    out = bytearray(b"\x78\x01")
    pos = 0
    while True:
        block = data[pos:pos + 65535]
        pos += len(block)
        final = 1 if pos >= len(data) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
        if final:
            break
    out += struct.pack(">I", zlib.adler32(data) & 0xFFFFFFFF)
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def make_png(width: int, height: int, pixel) -> bytes:
    """RGB8 PNG; pixel(x, y) -> (r, g, b), or a bytes object of w*h*3 bytes."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type 0 (None)
        if isinstance(pixel, (bytes, bytearray)):
            raw += pixel[y * width * 3:(y + 1) * width * 3]
        else:
            for x in range(width):
                raw += bytes(pixel(x, y))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", _zlib_stored(bytes(raw)))
            + _png_chunk(b"IEND", b""))


# Assets shared with the hand-written files --------------------------------
def asset_invoice_pdf() -> bytes:
    return make_pdf(["Crossec Solutions Kft.", "Szamla / Invoice 2024/0815",
                     "Osszeg: 127 000 Ft + AFA"])


def asset_bugreport_pdf() -> bytes:
    return make_pdf(["CrossecDesk 4.2 - hibajelentes", "Lepesek: 1. Belepes",
                     "2. Riportok > Export", "Eredmeny: HTTP 500"])


def asset_screenshot_png() -> bytes:
    def px(x, y):
        if y < 4:
            return (0x2B, 0x57, 0x9A)          # title bar
        if 8 <= y <= 11 and 4 <= x <= 27:
            return (0xD0, 0x21, 0x21)          # red error banner
        return (0xF0, 0xF0, 0xF0)
    return make_png(32, 20, px)


def asset_logo_png() -> bytes:
    return make_png(16, 16, lambda x, y: (0x00, 0x66 + 8 * x, 0x99 + 6 * y))


def asset_icon_png() -> bytes:
    return make_png(8, 8, lambda x, y: (255, 255, 255) if (x + y) % 2 else (0x33, 0x33, 0x33))


def b64lines(data: bytes, width: int = 76, nl: str = "\n") -> str:
    s = base64.b64encode(data).decode("ascii")
    return nl.join(s[i:i + width] for i in range(0, len(s), width))


# --------------------------------------------------------------------------
# TNEF (MS-OXTNEF) writer
# --------------------------------------------------------------------------
LVL_MESSAGE, LVL_ATTACHMENT = 1, 2
PT_LONG, PT_STRING8, PT_UNICODE, PT_BINARY = 0x0003, 0x001E, 0x001F, 0x0102


def _tnef_attr(level: int, attr_id: int, attr_type: int, data: bytes) -> bytes:
    # level (1) | AttributeID = id (low word) + type (high word) (4) | length (4)
    # | data | checksum = sum of data bytes mod 65536 (2)
    return (struct.pack("<BHHI", level, attr_id, attr_type, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _mapi_props(props: list[tuple[int, int, object]]) -> bytes:
    out = bytearray(struct.pack("<I", len(props)))
    for ptype, pid, value in props:
        out += struct.pack("<HH", ptype, pid)
        if ptype == PT_LONG:
            out += struct.pack("<I", value)
        elif ptype in (PT_UNICODE, PT_STRING8, PT_BINARY):
            if ptype == PT_UNICODE:
                raw = (value + "\x00").encode("utf-16-le")
            elif ptype == PT_STRING8:
                raw = value.encode("ascii") + b"\x00"
            else:
                raw = value
            out += struct.pack("<II", 1, len(raw)) + _pad4(raw)
        else:
            raise ValueError(ptype)
    return bytes(out)


def make_tnef(subject: str, files: list[tuple[str, str, str, bytes]]) -> bytes:
    """files: (long unicode name, 8.3 ASCII name, mime type, data)."""
    out = bytearray(struct.pack("<IH", 0x223E9F78, 0x5C1D))
    out += _tnef_attr(LVL_MESSAGE, 0x9006, 0x0008, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += _tnef_attr(LVL_MESSAGE, 0x9007, 0x0006, struct.pack("<II", 1250, 0))   # attOemCodepage
    out += _tnef_attr(LVL_MESSAGE, 0x8008, 0x0007, b"IPM.Microsoft Mail.Note\x00")  # attMessageClass
    out += _tnef_attr(LVL_MESSAGE, 0x9003, 0x0006, _mapi_props([                 # attMsgProps
        (PT_UNICODE, 0x0037, subject),          # PidTagSubject
        (PT_LONG, 0x3FDE, 1250),                # PidTagInternetCodepage
    ]))
    date = struct.pack("<7H", 2024, 8, 1, 10, 12, 0, 4)
    for long_name, short_name, mime, data in files:
        out += _tnef_attr(LVL_ATTACHMENT, 0x9002, 0x0006,                          # attAttachRendData
                          struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0x20, 0x20, 1))
        out += _tnef_attr(LVL_ATTACHMENT, 0x8010, 0x0001, short_name.encode("ascii") + b"\x00")
        out += _tnef_attr(LVL_ATTACHMENT, 0x8012, 0x0003, date)                    # attAttachCreateDate
        out += _tnef_attr(LVL_ATTACHMENT, 0x8013, 0x0003, date)                    # attAttachModifyDate
        out += _tnef_attr(LVL_ATTACHMENT, 0x800F, 0x0006, data)                    # attAttachData
        out += _tnef_attr(LVL_ATTACHMENT, 0x9005, 0x0006, _mapi_props([           # attAttachment
            (PT_LONG, 0x3705, 1),                  # PidTagAttachMethod = afByValue
            (PT_UNICODE, 0x3001, long_name),       # PidTagDisplayName
            (PT_STRING8, 0x3704, short_name),      # PidTagAttachFilename
            (PT_UNICODE, 0x3707, long_name),       # PidTagAttachLongFilename
            (PT_STRING8, 0x370E, mime),            # PidTagAttachMimeTag
            (PT_LONG, 0x0E20, len(data)),          # PidTagAttachSize
            (PT_LONG, 0x370B, 0xFFFFFFFF),         # PidTagRenderingPosition
        ]))
    return bytes(out)


WINMAIL_NOTE = ("Megjegyzések az árajánlathoz:\r\n"
                "- a licencek száma 25 helyett 30 legyen\r\n"
                "- a fizetési határidő 30 nap\r\n").encode("cp1250")


def winmail_files():
    return [
        ("árajánlat_2024_Q3.pdf", "ARAJAN~1.PDF", "application/pdf",
         make_pdf(["Arajanlat 2024 Q3", "CrossecDesk licenc x 30"])),
        ("megjegyzések.txt", "MEGJEG~1.TXT", "text/plain", WINMAIL_NOTE),
    ]


# --------------------------------------------------------------------------
# the generated messages
# --------------------------------------------------------------------------
def gen_zero_byte() -> bytes:
    return b""


def gen_binary_garbage() -> bytes:
    data = bytearray(prng_bytes(b"mailbridge-garbage", 4096))
    data[0:4] = b"\x1f\x8b\x08\x00"   # looks like the start of a gzip stream
    return bytes(data)


def gen_huge_header() -> bytes:
    lines = [
        "Return-Path: <nagy.eszter@example.hu>",
        "Delivered-To: support@crossec.com",
    ]
    # a mail loop between two mis-configured relays: 1000 Received lines
    for i in range(1000, 0, -1):
        a, b = ("relay1.example.net", "relay2.example.net") if i % 2 else (
            "relay2.example.net", "relay1.example.net")
        ip = f"192.0.2.{(i % 2) + 10}"
        sec = (i * 7) % 60
        minute = 10 + (i * 7) // 60 % 50
        lines.append(
            f"Received: from {b} ({b} [{ip}])\n\tby {a} (Postfix) with ESMTP id "
            f"4Wb{i:05d}Qz{i % 97:02d}\n\tfor <support@crossec.com>; "
            f"Thu, 1 Aug 2024 09:{minute:02d}:{sec:02d} +0200 (CEST)")
    blob = base64.b64encode(prng_bytes(b"antispam", 15000)).decode("ascii")
    lines += [
        "X-Microsoft-Antispam-Message-Info: " + blob,   # 20 000 chars, not folded
        "From: =?UTF-8?Q?Nagy_Eszter?= <nagy.eszter@example.hu>",
        "To: support@crossec.com",
        "Subject: =?UTF-8?Q?Re:_[CRX-000311]_Lass=C3=BA_a_rendszer?=",
        "Date: Thu, 1 Aug 2024 09:10:03 +0200",
        "Message-ID: <b7e1c2d4-0311-4f6e-9a1b-3c5d7e9f1a2b@example.hu>",
        "In-Reply-To: <ack.CRX-000311.1@crossec.com>",
        "References: <c0ffee01-0311-4a00-8000-000000000001@example.hu>\n"
        " <ack.CRX-000311.1@crossec.com>",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) "
        "Gecko/20100101 Thunderbird/115.13.0",
        "Content-Type: text/plain; charset=UTF-8; format=flowed",
        "Content-Transfer-Encoding: 8bit",
    ]
    body = ("Jó napot!\n\n"
            "A rendszer még mindig nagyon lassú, a jelentések betöltése "
            "több mint egy percig tart.\n\n"
            "Üdvözlettel:\nNagy Eszter\n")
    return ("\n".join(lines) + "\n\n" + body).encode("utf-8")


def gen_attach_oversize() -> bytes:
    big = make_png(250, 200, prng_bytes(b"scanned-invoice", 250 * 200 * 3))
    small = asset_invoice_pdf()
    text = ("Tisztelt Ügyfélszolgálat!\r\n\r\nMellékelem a beszkennelt számlát "
            "és a PDF változatát is.\r\n\r\nÜdvözlettel:\r\nFarkas Bence\r\n")
    parts = [
        "Return-Path: <farkas.bence@example.hu>",
        "Received: from mail.example.hu (mail.example.hu [198.51.100.25])\r\n"
        "\tby mx.crossec.com (Postfix) with ESMTPS id 4WcK1m2Nn0z9t3\r\n"
        "\tfor <support@crossec.com>; Fri, 2 Aug 2024 14:03:27 +0200 (CEST)",
        "From: Farkas Bence <farkas.bence@example.hu>",
        "To: support@crossec.com",
        "Subject: =?UTF-8?B?U3rDoW1sYSBtZWxsw6lrZWx2ZQ==?=",
        "Date: Fri, 2 Aug 2024 14:03:21 +0200",
        "Message-ID: <20240802120321.5512.farkas@example.hu>",
        "MIME-Version: 1.0",
        "X-Mailer: Microsoft Outlook 16.0",
        'Content-Type: multipart/mixed; boundary="----=_NextPart_000_0011_01DAE4D1.0A2B3C40"',
        "",
        "This is a multi-part message in MIME format.",
        "",
        "------=_NextPart_000_0011_01DAE4D1.0A2B3C40",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        b64lines(text.encode("utf-8"), nl="\r\n"),
        "",
        "------=_NextPart_000_0011_01DAE4D1.0A2B3C40",
        'Content-Type: image/png; name="szamla_szkennelt.png"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="szamla_szkennelt.png"',
        "",
        b64lines(big, nl="\r\n"),
        "",
        "------=_NextPart_000_0011_01DAE4D1.0A2B3C40",
        'Content-Type: application/pdf; name="szamla.pdf"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="szamla.pdf"',
        "",
        b64lines(small, nl="\r\n"),
        "",
        "------=_NextPart_000_0011_01DAE4D1.0A2B3C40--",
        "",
    ]
    return "\r\n".join(parts).encode("ascii")


def gen_winmail_dat() -> bytes:
    tnef = make_tnef("Árajánlat 2024 Q3", winmail_files())
    text = ("Kedves Ügyfélszolgálat!\r\n\r\nCsatolom az árajánlatot és a "
            "megjegyzéseinket.\r\n\r\nÜdvözlettel:\r\nHorváth Péter\r\n"
            "beszerzés, Example Kft.\r\n")
    parts = [
        "Received: from EXCH01.corp.example.hu (exch01.corp.example.hu [203.0.113.40])\r\n"
        "\tby mx.crossec.com (Postfix) with ESMTPS id 4WcM7q0Fr3z1kB\r\n"
        "\tfor <support@crossec.com>; Mon, 5 Aug 2024 08:41:19 +0200 (CEST)",
        "From: =?iso-8859-2?Q?Horv=E1th_P=E9ter?= <horvath.peter@example.hu>",
        "To: <support@crossec.com>",
        "Subject: =?iso-8859-2?Q?=C1raj=E1nlat_2024_Q3?=",
        "Date: Mon, 5 Aug 2024 08:41:12 +0200",
        "Message-ID: <000001dae6f1$4a5b6c70$df124550$@example.hu>",
        "MIME-Version: 1.0",
        "X-Mailer: Microsoft Outlook 16.0",
        "Thread-Index: AdrmcUpbbHCm9c3XSXaP0lIuQ0Gm2w==",
        "Content-Language: hu",
        "X-MS-Has-Attach: yes",
        "X-MS-TNEF-Correlator: <000001dae6f1$4a5b6c70$df124550$@example.hu>",
        'Content-Type: multipart/mixed; boundary="----=_NextPart_000_0005_01DAE702.0E0D4A30"',
        "",
        "This is a multipart message in MIME format.",
        "",
        "------=_NextPart_000_0005_01DAE702.0E0D4A30",
        'Content-Type: text/plain; charset="iso-8859-2"',
        "Content-Transfer-Encoding: base64",
        "",
        b64lines(text.encode("iso-8859-2"), nl="\r\n"),
        "",
        "------=_NextPart_000_0005_01DAE702.0E0D4A30",
        'Content-Type: application/ms-tnef; name="winmail.dat"',
        "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="winmail.dat"',
        "",
        b64lines(tnef, nl="\r\n"),
        "",
        "------=_NextPart_000_0005_01DAE702.0E0D4A30--",
        "",
    ]
    return "\r\n".join(parts).encode("ascii")


GENERATED = {
    "zero_byte.eml": gen_zero_byte,
    "binary_garbage.eml": gen_binary_garbage,
    "huge_header.eml": gen_huge_header,
    "attach_oversize.eml": gen_attach_oversize,
    "winmail_dat.eml": gen_winmail_dat,
}


def check_tnef() -> None:
    """Re-read the generated winmail.dat with tnefparse (if available)."""
    try:
        from tnefparse import TNEF
    except ImportError:  # pragma: no cover
        print("tnefparse not installed; TNEF check skipped")
        return
    tnef = TNEF(make_tnef("Árajánlat 2024 Q3", winmail_files()), do_checksum=True)
    got = [(a.long_filename(), a.data) for a in tnef.attachments]
    want = [(name, data) for name, _, _, data in winmail_files()]
    assert got == want, (got, want)
    assert all(o.good_checksum for o in tnef.objects)
    print("tnefparse OK:", ", ".join(f"{n} ({len(d)} B)" for n, d in got))


def main(argv: list[str]) -> None:
    for name, fn in GENERATED.items():
        data = fn()
        (HERE / name).write_bytes(data)
        print(f"wrote {name} ({len(data)} bytes)")
    if "--check" in argv:
        check_tnef()


if __name__ == "__main__":
    main(sys.argv[1:])
