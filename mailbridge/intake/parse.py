"""Parse stage: raw bytes -> ParsedMail, with mail-parser doing the MIME work.

Pure (no I/O, no clock), so it runs in worker processes beside the fetch.
What mail-parser leaves to us: text of a part whose charset is missing or
lies (repaired with charset-normalizer), the new text of a reply
(intake/quotes.py), attachment names that must be
safe on disk, winmail.dat (tnefparse) and delivery reports (flufl.bounce).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
from email.policy import compat32
import hashlib
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import charset_normalizer
import html2text
import mailparser
from tnefparse import TNEF

from mailbridge.errors import UnparseableMail
from mailbridge.intake import headers as header_fields
from mailbridge.intake.quotes import new_text
from mailbridge.intake.reports import delivery_report
from mailbridge.mail import Headers, ParsedMail, Part

_MSGID = re.compile(r"<[^<>\s]+>")
_FOLD = re.compile(r"\r?\n[ \t]+")  # a header field's line breaks
MAX_FILENAME = 150
# The mojibake of ő/ű/Ő/Ű when Latin-2 bytes are read as Latin-1/cp1252:
# Hungarian clients that mislabel their charset give themselves away.
_LATIN2_TELLS = re.compile("[õûÕÛ]")
# ... in text that reads Hungarian otherwise: French "août" has a real û.
_NOT_HUNGARIAN = re.compile("[àâçèêëîïôùœãÀÂÇÈÊËÎÏÔÙŒÃ]")
_HUNGARIAN_LETTERS = re.compile("[áíöüÁÍÖÜ]")


def _latin2_mislabelled(text: str) -> bool:
    return bool(_LATIN2_TELLS.search(text) and _HUNGARIAN_LETTERS.search(text) and not _NOT_HUNGARIAN.search(text))
# UTF-8 bytes read as Latin-1/cp1252 ("Ã¡" for "á", "Å\x91" for "ő").
_UTF8_TELLS = re.compile("[ÂÃÄÅ][\u0080-\u00bf\u2018-\u203a\u0152-\u0178]")
# Every tell above starts with one of these, as does U+FFFD: text without any of them
# needs no closer look (nine substring searches cost a twentieth of the regex scans).
_TELL_LETTERS = "\ufffdõûÕÛÂÃÄÅ"
_MISLABEL_PRONE = {"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"}

_html = html2text.HTML2Text()
_html.body_width = 0
_html.ignore_images = True
_html.ignore_emphasis = True
_html.unicode_snob = True


def parse_mail(raw: bytes, max_attachment_bytes: int) -> ParsedMail:
    """Reads one message; raises UnparseableMail when no ticket can be read from it."""
    if not raw or not raw[:65536].strip():
        raise UnparseableMail("empty message (0 bytes)" if not raw else
                              f"empty message: only white space in its first {min(len(raw), 65536)} bytes")
    head = raw[:4096]
    if b"\x00" in head and not re.match(rb"^[\x21-\x39\x3b-\x7e]+:", raw):
        raise UnparseableMail("binary data, not a mail message")
    shrunk = _shrink(raw)
    try:
        parsed = mailparser.parse_from_bytes(shrunk.raw)
        # A stray line (mbox, BOM, one without a colon) ends Python's header block early.
        if header_fields.head_unreadable(shrunk.raw, parsed.message) and (
                mended := header_fields.mended_head(shrunk.raw)) is not None:
            parsed = mailparser.parse_from_bytes(mended)
    except Exception as exc:  # mail-parser raises anything from its depths
        raise UnparseableMail(f"mail-parser failed: {type(exc).__name__}: {exc}") from None
    message = parsed.message
    if message is None or not message.keys():
        raise UnparseableMail("no header fields: no line of the message reads as 'Name: value' before its text")
    headers = _headers(message)
    if not _looks_like_mail(headers):
        raise UnparseableMail(f"{len(headers.fields)} header field(s), but none a mail has (From, To, Subject, Date, "
                              "Message-ID, Received, Return-Path, MIME-Version, Content-Type): not a mail message")

    content_type = message.get_content_type()
    text, html = _bodies(parsed, message, content_type)
    if "\r" in text or "\r" in html:  # a one-letter search costs a thirtieth of replace()'s
        text, html = text.replace("\r\n", "\n"), html.replace("\r\n", "\n")
    left_out = shrunk.text_cut
    if not text and html:
        text, not_rendered = _text_of_html(html)
        left_out += not_rendered
    if not text and not html and "StartBoundaryNotFoundDefect" in parsed.defects_categories:
        # The boundary is wrong: keep what the customer wrote, MIME debris and all (P6).
        body = re.split(rb"\r?\n\r?\n", shrunk.raw, maxsplit=1)[-1]
        text = _decode_text(body, message.get_content_charset()).replace("\r\n", "\n").strip()
    text += _cut_note(left_out)
    attachments = tuple(_attachments(parsed, raw, max_attachment_bytes, shrunk.set_aside))
    reader = header_fields.HeaderReader(message, shrunk.raw)
    # mail-parser read the address fields as it parsed: `mail` holds them (`parsed.to` reads them again).
    addresses = parsed.mail
    reply_to = header_fields.first_address(addresses.get("reply-to"))
    found = header_fields.sender_of(reader, addresses.get("from") or [], reply_to, headers)
    sender = found.address
    return_path = header_fields.return_path(headers)
    subject = header_fields.subject_of(reader, lambda: parsed.subject or "")
    return ParsedMail(
        message_id=header_fields.message_id(headers),
        sender=sender,
        subject=subject,
        text=text,
        new_text=new_text_of(text),
        html=html,
        references=_references(headers),
        attachments=attachments,
        headers=headers,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        raw_size=len(raw),
        return_path=return_path,
        reply_to=reply_to or None,
        sender_source=found.source,
        fallback_sender=found.fallback,
        to=tuple(a for a in (header_fields.address(p) for p in addresses.get("to") or ()) if a),
        cc=tuple(a for a in (header_fields.address(p) for p in addresses.get("cc") or ()) if a),
        date=_date(headers.get("date")),
        content_type=content_type,
        report=delivery_report(message, content_type, headers, sender, return_path, subject, text, attachments),
        defects=tuple(sorted(parsed.defects_categories)),
    )


# What the ticket shows where a big mail's text was cut; the raw copy holds all of it.
TEXT_CUT_NOTE = "\n\n[… {size} more text not shown here: the whole mail is kept as it came]"
# html2text costs up to 10 µs a character of hostile markup: a text rendering is made
# of this much HTML (the HTML itself is kept as it came).
MAX_HTML_TO_TEXT = 512 * 1024


def html_to_text(html: str) -> str:
    text, left_out = _text_of_html(html)
    return text + _cut_note(left_out)


# Mail editors (Gmail, Outlook on the web, Apple Mail, Tuta…) write one <div> a line and
# <div><br></div> for an empty one; html2text reads a div as a paragraph, which put a blank
# line between every two lines of the customer's text. Read divs as a browser shows them.
# Attributes are read up to the next "<" too: a run of "<div<div<div…" costs one pass.
_EMPTY_DIV = re.compile(r"<div\b[^<>]{0,1000}>[ \t\r\n]{0,20}<br\b[^<>]{0,200}>[ \t\r\n]{0,20}</div>", re.IGNORECASE)
_BREAK_ENDING_DIV = re.compile(r"<br\b[^<>]{0,200}>[ \t\r\n]{0,20}</div>", re.IGNORECASE)
_DIV_END = re.compile(r"</div[ \t\r\n]{0,20}>", re.IGNORECASE)
_DIV_START = re.compile(r"<div\b[^<>]{0,1000}>", re.IGNORECASE)


# A "<" whose tag is not closed before the next "<" ("<div<div<div…") made html2text's parser
# quadratic (520 kB took 170 s); as text it is what a browser shows anyway.
_UNCLOSED_TAG = re.compile(r"<(?=[^<>]*(?:<|\Z))")


def _divs_as_lines(html: str) -> str:
    if "<div" not in html and "<DIV" not in html:
        return html
    html = _EMPTY_DIV.sub("<br>", html)
    html = _BREAK_ENDING_DIV.sub("</div>", html)
    return _DIV_START.sub("", _DIV_END.sub("<br>", html))


def _text_of_html(html: str) -> tuple[str, int]:
    """A text rendering of the HTML, and how many bytes of it were left out."""
    shown = html[:MAX_HTML_TO_TEXT]
    try:
        # Without the two spaces html2text ends a line with for a Markdown hard break.
        readable = _divs_as_lines(_UNCLOSED_TAG.sub("&lt;", shown))
        text = "\n".join(line.rstrip() for line in _html.handle(readable).split("\n")).strip()
    except Exception:  # html2text on hostile markup: fall back to stripping tags
        text = re.sub(r"<[^>]+>", " ", shown).strip()
    return text, (len(html.encode()) - len(shown.encode()) if len(html) > len(shown) else 0)


def _cut_note(left_out: int) -> str:
    if not left_out:
        return ""
    size = f"{left_out / 1024 / 1024:.1f} MB" if left_out >= 100 * 1024 else f"{left_out // 1024 or 1} kB"
    return TEXT_CUT_NOTE.format(size=size)


def new_text_of(text: str) -> str:
    """The part of a reply its author wrote (see intake/quotes.py)."""
    return new_text(text) if text else ""


# Names Windows gives to devices, whatever the extension ("CON.txt" opens the console).
_RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{device}{n}" for device in ("COM", "LPT") for n in (*"0123456789", "\u00b9", "\u00b2", "\u00b3")]
)
# Characters that NTFS, FAT or exFAT refuse (":" even opens an alternate data stream).
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
MAX_FILENAME_BYTES = 240  # ext4, XFS and most others stop at 255 bytes of UTF-8


def _visible(ch: str) -> str:
    """The character, a plain space for other spaces, or nothing for the invisible ones:
    controls, format characters (bidi overrides like U+202E, zero widths), line and
    paragraph separators and lone surrogates."""
    category = unicodedata.category(ch)
    if category in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return ""
    return " " if category == "Zs" else ch


def _shorten(name: str) -> str:
    """At most MAX_FILENAME characters and MAX_FILENAME_BYTES bytes, the extension kept."""
    stem, dot, ext = name.rpartition(".")
    if not (dot and stem and 0 < len(ext) <= 10):
        stem, ext = name, ""
    suffix = "." + ext if ext else ""
    while stem and (len(stem + suffix) > MAX_FILENAME or len((stem + suffix).encode()) > MAX_FILENAME_BYTES):
        stem = stem[: min(len(stem) - 1, MAX_FILENAME - len(suffix))]
    return (stem.rstrip(" .") + suffix) if stem else name[:MAX_FILENAME]


def sanitize_filename(name: str, content_type: str = "") -> str:
    """A name safe on any disk: no folders, no `..`, no control or invisible characters
    (no bidi tricks: "invoice", U+202E, "fdp.exe" shows as "invoiceexe.pdf"), none that Windows
    refuses, no device names (CON, COM1, ...), no trailing dots or spaces, bounded."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(_visible(ch) for ch in name)
    name = _WINDOWS_FORBIDDEN.sub("_", name)
    name = name.replace("..", "_")
    name = _shorten(name.strip(" ."))
    if name.split(".")[0].rstrip(" ").upper() in _RESERVED_NAMES:
        name = "_" + name
    if not any(ch.isalnum() for ch in name):
        ext = mimetypes.guess_extension(content_type or "") or ""
        name = "attachment" + ext
    return name


def _headers(message) -> Headers:  # type: ignore[no-untyped-def]
    fields = []
    fetch = message.policy.header_fetch_parse
    plain = message.policy is compat32  # which gives an ASCII value back as it is
    for key, value in message.raw_items():  # items() without fetching every value: a third of the cost
        if not (plain and isinstance(value, str) and value.isascii()):
            value = fetch(key, value)  # 8-bit bytes (kept as surrogates) come back as a Header
        text = str(value) if not isinstance(value, str) else value
        if "\n" in text:  # folded: most fields are not, and the check costs a tenth of the regex
            text = _FOLD.sub(" ", text)
        fields.append((key.lower(), text.strip()))
    return Headers(tuple(fields))


_MAIL_FIELDS = frozenset(("from", "subject", "date", "message-id", "mime-version", "to", "received", "return-path",
                          "content-type"))


def _looks_like_mail(headers: Headers) -> bool:
    return not _MAIL_FIELDS.isdisjoint(key for key, _ in headers.fields)


def _references(headers: Headers) -> tuple[str, ...]:
    values = {"in-reply-to": [], "references": []}  # type: dict[str, list[str]]
    for key, value in headers.fields:  # one pass: most mails have neither field
        if key in values:
            values[key].append(value)
    seen: list[str] = []
    for value in values["in-reply-to"] + values["references"]:
        for ref in _MSGID.findall(value):
            if ref not in seen:
                seen.append(ref)
    return tuple(seen[:100])


# The form nearly every mailer writes, read as email.utils reads it at a fifth of the
# cost; any other form (names of zones, two-digit years, comments) goes to email.utils.
_PLAIN_DATE = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([1-9][0-9]{3}) "
                         r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        if plain := _PLAIN_DATE.fullmatch(value):
            day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = plain.groups()
            offset = timedelta(minutes=int(zone_hours) * 60 + int(zone_minutes))
            parsed = datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
                              tzinfo=timezone(-offset if sign == "-" else offset))
        else:
            parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        # Inside the try: a date at the calendar's edge ("31 Dec 9999 23:00 -0500") overflows in UTC.
        return parsed.astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _decode_text(payload: bytes, declared: str | None) -> str:
    """Text of a body part, surviving missing and lying charset labels."""
    declared = (declared or "").lower()
    if declared:
        try:
            text = payload.decode(declared)
        except (LookupError, UnicodeDecodeError):
            pass
        else:
            if declared in _MISLABEL_PRONE and not payload.isascii():
                try:
                    return payload.decode("utf-8")  # valid UTF-8 by accident is next to impossible
                except UnicodeDecodeError:
                    pass
                if _latin2_mislabelled(text):
                    return payload.decode("windows-1250", "replace")
            return text
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(payload).best()
    if best is not None and best.encoding:
        text = str(best)
        if best.encoding in ("cp1252", "latin_1", "iso8859_1") and _latin2_mislabelled(text):
            return payload.decode("windows-1250", "replace")
        return text
    return payload.decode("windows-1250", "replace")


_EMBEDDED = ("message/rfc822", "message/global", "message/delivery-status", "text/rfc822-headers", "message/rfc822-headers")


def _body_parts(part, content_type: str = ""):  # type: ignore[no-untyped-def]
    """The text and HTML parts of this mail, not of mail attached to it (forwards, bounces).
    `content_type`: the part's, where the caller has it."""
    content_type = content_type or part.get_content_type()
    if content_type in _EMBEDDED:
        return
    if part.is_multipart():
        for sub in part.get_payload():
            yield from _body_parts(sub)
    elif content_type in ("text/plain", "text/html") and not _attached(part):
        yield part


def _attached(part) -> bool:  # type: ignore[no-untyped-def]
    """part.get_content_disposition() == "attachment" or part.get_filename(); the
    parameters are parsed only where a field has a "name" in it (the parse costs 7 µs)."""
    disposition = part.get("content-disposition")
    if disposition is not None and str(disposition).partition(";")[0].strip().lower() == "attachment":
        return True
    if disposition is None or "name" not in str(disposition).lower():
        kind = part.get("content-type")
        if kind is None or "name" not in str(kind).lower():
            return False
    return bool(part.get_filename())


def _bodies(parsed, message, content_type: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Text and HTML bodies; our own decode where mail-parser had to guess or mixed in attached mail."""
    text = "\n".join(parsed.text_plain).strip()
    html = "\n".join(parsed.text_html).strip()
    parts = list(_body_parts(message, content_type))
    both = text + html
    suspicious = "CharsetDecodeDefect" in parsed.defects_categories or (
        any(letter in both for letter in _TELL_LETTERS)
        and ("\ufffd" in both or _latin2_mislabelled(both) or bool(_UTF8_TELLS.search(both))))
    if len(parts) == len(parsed.text_plain) + len(parsed.text_html) and not suspicious:
        return text, html
    texts: list[str] = []
    htmls: list[str] = []
    for part in parts:
        payload = part.get_payload(decode=True) or b""
        decoded = _decode_text(payload, part.get_content_charset())
        (texts if part.get_content_type() == "text/plain" else htmls).append(decoded)
    if not texts and not htmls:
        return text, html
    return "\n".join(texts).strip(), "\n".join(htmls).strip()


# --- big mail -----------------------------------------------------------------------
# mail-parser holds about eight copies of what it parses. A big mail reaches it as
# its structure and the first MAX_TEXT_BYTES of its text only: every other body (an
# attachment, in any transfer encoding) is swapped for a short placeholder and decoded
# here straight from the raw bytes, and text beyond the cap is cut, with a note that
# says so. The raw copy stays whole, so nothing is lost.
SHRINK_ABOVE = 1024 * 1024
MAX_TEXT_BYTES = 1024 * 1024  # of text bodies, all parts together, as sent
MAX_HEADER_BYTES = 256 * 1024  # of one header block
MAX_PARTS = 5000
MAX_DEPTH = 40
MAX_SHRUNK_BYTES = 8 * 1024 * 1024  # more is MIME structure, not anything a person wrote
_SET_ASIDE_FROM = 256  # smaller bodies stay where they are
_PLACEHOLDER = b"MAILBRIDGE-SET-ASIDE-"
# Read as text, not set aside: the bounce detectors read them.
_REPORT_PARTS = ("message/delivery-status", "text/rfc822-headers", "message/rfc822-headers",
                 "message/disposition-notification", "message/feedback-report")


@dataclass(frozen=True)
class _SetAside:
    start: int
    end: int
    encoding: str  # the part's Content-Transfer-Encoding


@dataclass
class _Shrunk:
    raw: bytes  # what mail-parser reads
    set_aside: list[_SetAside] = field(default_factory=list)
    text_cut: int = 0  # bytes of text left out


def _shrink(raw: bytes) -> _Shrunk:
    """The message as mail-parser may read it (see above), or UnparseableMail."""
    if len(raw) < SHRINK_ABOVE:
        return _Shrunk(raw)
    walk = _Walk(raw)
    walk.entity(0, len(raw), 0)
    pieces, last = [], 0
    for start, end, replacement in walk.edits:
        pieces += [raw[last:start], replacement]
        last = end
    pieces.append(raw[last:])
    shrunk = b"".join(pieces)
    if len(shrunk) > MAX_SHRUNK_BYTES:
        raise UnparseableMail(f"{len(shrunk) // 1024 // 1024} MB of MIME structure besides attachments and text "
                              f"({walk.parts} parts): more than is read")
    return _Shrunk(shrunk, walk.set_aside, walk.text_seen - walk.text_kept)


class _Walk:
    """One pass over a big message's MIME tree, noting what to cut and set aside.
    It finds the structure as the email package does (the same header parser,
    boundaries at line starts), reading only the header blocks."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement), in order
        self.set_aside: list[_SetAside] = []
        self.text_seen = self.text_kept = self.parts = 0

    def entity(self, start: int, end: int, depth: int) -> None:
        """Header block + body in raw[start:end]."""
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UnparseableMail(f"more than {MAX_PARTS} MIME parts")
        raw = self.raw
        if raw.startswith(b"\n", start) or raw.startswith(b"\r\n", start):
            head_end = body = start + (1 if raw[start] == 0x0A else 2)  # no header fields
        else:
            ends = [i for i in (raw.find(b"\n\n", start, end), raw.find(b"\n\r\n", start, end)) if i >= 0]
            head_end = min(ends) + 1 if ends else end
            body = head_end + (1 if raw.startswith(b"\n", head_end) else 2) if ends else end
        if head_end - start > MAX_HEADER_BYTES:
            cut = raw.rfind(b"\n", start, start + MAX_HEADER_BYTES) + 1 or start + MAX_HEADER_BYTES
            self.edits.append((cut, head_end, b""))
            head_end = cut
        header = email.message_from_bytes(raw[start:head_end] + b"\n")
        content_type = header.get_content_type()
        if depth < MAX_DEPTH and content_type.startswith("multipart/") and header.get_boundary():
            self.multipart(header.get_boundary().encode("utf-8", "replace"), body, end, depth)
        elif depth < MAX_DEPTH and content_type in ("message/rfc822", "message/global"):
            self.entity(body, end, depth + 1)
        elif content_type in _REPORT_PARTS or (content_type in ("text/plain", "text/html")
                                               and header.get_content_disposition() != "attachment"
                                               and not header.get_filename()):
            self.text(body, end)
        elif end - body >= _SET_ASIDE_FROM:
            encoding = str(header.get("content-transfer-encoding", "")).strip().lower()
            placeholder = _PLACEHOLDER + str(len(self.set_aside)).encode()
            self.set_aside.append(_SetAside(body, end, encoding))
            self.edits.append((body, end, base64.b64encode(placeholder) if encoding == "base64" else placeholder))

    def multipart(self, boundary: bytes, body: int, end: int, depth: int) -> None:
        raw, delimiter = self.raw, b"--" + boundary
        starts: list[tuple[int, int]] = []  # (where the delimiter line starts, where the part after it starts)
        closed = False
        at = raw.find(delimiter, body, end)
        while at >= 0:
            line_end = raw.find(b"\n", at, end)
            line_end = end if line_end < 0 else line_end + 1
            rest = raw[at + len(delimiter) : line_end].strip()
            if (at == body or raw[at - 1] == 0x0A) and rest in (b"", b"--"):
                # The line break before a delimiter belongs to it (RFC 2046).
                line_start = at - (2 if raw[at - 2 : at] == b"\r\n" else 1) if at > body else at
                starts.append((line_start, line_end))
                if rest == b"--":
                    closed = True
                    break
            at = raw.find(delimiter, line_end, end)
        if not starts:
            self.text(body, end)  # no part starts: the email package reads it all as text too
            return
        self.edits.append((body, starts[0][0], b""))  # the preamble, which nobody reads
        if not closed:  # no closing delimiter: the last part runs to the end
            starts.append((end, end))
        for (_, part), (next_line, _) in zip(starts, starts[1:]):
            self.entity(part, next_line, depth + 1)
        if closed:
            self.edits.append((starts[-1][1], end, b""))  # the epilogue, likewise

    def text(self, body: int, end: int) -> None:
        size = end - body
        keep = max(0, min(size, MAX_TEXT_BYTES - self.text_kept))
        if keep < size:
            # At a line end: no broken quoted-printable escape or base64 quantum.
            line_end = self.raw.rfind(b"\n", body, body + keep)
            keep = line_end + 1 - body if line_end >= 0 else keep
            self.edits.append((body + keep, end, b""))
        self.text_seen += size
        self.text_kept += keep


def _set_aside_data(raw: bytes, part: _SetAside) -> bytes:
    """A set-aside body decoded as the email package would (no copy of the slice for base64)."""
    body = memoryview(raw)[part.start : part.end]
    if part.encoding == "base64":
        try:
            return binascii.a2b_base64(body)  # newlines skipped
        except binascii.Error:  # bad padding or stray characters: what the email package reads
            letters = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
            letters = letters[: len(letters) - (len(letters) % 4 == 1)]
            return binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))
    if part.encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    return bytes(body)


_INVENTED_NAME = re.compile(r"^[a-z]{10}\.(?:txt|rtf)$")


def _attachments(parsed, raw: bytes, limit: int, set_aside: list[_SetAside]):  # type: ignore[no-untyped-def]
    for item in parsed.attachments:
        payload = item.get("payload") or ""
        if item.get("binary"):
            try:
                data = base64.b64decode(payload)
            except (binascii.Error, ValueError):
                data = base64.b64decode(re.sub(r"[^A-Za-z0-9+/]", "", payload) + "==", validate=False)
        else:
            data = payload.encode(item.get("charset") or "utf-8", "replace")
        if data.startswith(_PLACEHOLDER) and set_aside:
            data = _set_aside_data(raw, set_aside[int(data[len(_PLACEHOLDER):])])
        content_type = (item.get("mail_content_type") or "application/octet-stream").lower()
        content_id = (item.get("content-id") or "").strip().strip("<>")
        raw_name = item.get("filename") or ""
        if content_id and raw_name in (content_id, f"<{content_id}>", item.get("content-id")):
            raw_name = ""  # mail-parser names unnamed inline parts by their Content-ID
        elif _INVENTED_NAME.match(raw_name) and raw_name.encode() not in raw:
            raw_name = ""  # ... and unnamed attachments by random letters
        disposition = (item.get("content-disposition") or "").lower()
        inline = disposition.startswith("inline") or (bool(content_id) and not disposition.startswith("attachment"))
        if content_type == "application/ms-tnef" or raw_name.lower() == "winmail.dat":
            unpacked = _tnef_files(data)
            if unpacked:
                for name, blob in unpacked:
                    yield _part(name, mimetypes.guess_type(name)[0] or "application/octet-stream", blob, "", False, limit)
                continue
        yield _part(raw_name, content_type, data, content_id, inline, limit)


def _part(name: str, content_type: str, data: bytes, content_id: str, inline: bool, limit: int) -> Part:
    filename = sanitize_filename(name, content_type)
    digest = hashlib.sha256(data).hexdigest()
    if limit and len(data) > limit:
        return Part(
            filename, content_type, len(data), digest, b"", content_id, inline,
            rejected=True, reason=f"larger than max_attachment_bytes ({limit})",
        )
    return Part(filename, content_type, len(data), digest, data, content_id, inline)


def _tnef_files(data: bytes) -> list[tuple[str, bytes]]:
    """The files inside winmail.dat; none when it cannot be unpacked (then it is kept as it is)."""
    try:
        tnef = TNEF(data)
        # A torn winmail.dat "unpacks" into empty files: then the original says more.
        return [(_tnef_name(attachment), attachment.data) for attachment in tnef.attachments if attachment.data]
    except Exception:  # not real TNEF, or tnefparse choking on it: one file lost is worse
        return []


def _tnef_name(attachment) -> str:  # type: ignore[no-untyped-def]
    try:
        name = attachment.long_filename() or ""
    except UnicodeDecodeError:
        # tnefparse reads the 8.3 title as UTF-8; Outlook writes it in the message's code page.
        name = _decode_text(getattr(attachment, "_name", b"") or b"", attachment.codepage)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return name.rstrip("\x00")

