"""Parse stage: raw bytes -> ParsedMail, with mail-parser doing the MIME work.

Pure (no I/O, no clock), so it runs in worker processes beside the fetch.
What mail-parser leaves to us: text of a part whose charset is missing or
lies (repaired with charset-normalizer), the new text of a reply
(mail-parser-reply, taught Hungarian here), attachment names that must be
safe on disk, winmail.dat (tnefparse) and delivery reports (flufl.bounce).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
from email.header import decode_header, make_header
import hashlib
import mimetypes
import quopri
import re
import unicodedata
from datetime import datetime, timezone

import charset_normalizer
import html2text
import mailparser
from flufl.bounce import scan_message
from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES, QUOTED_MATCH_INCLUDE
from tnefparse import TNEF

from mailbridge.errors import UnparseableMail
from mailbridge.mail import Address, DeliveryReport, Headers, ParsedMail, Part

# mail-parser-reply has no Hungarian; its language table is the documented
# extension point. Gmail: "2024. aug. 1., csüt 10:12 időpontban X <x@y> ezt írta:";
# Outlook: "Feladó: … Elküldve: … Címzett: … Tárgy: …".
MAIL_LANGUAGES.setdefault(
    "hu",
    {
        "wrote_header": r"^(" + QUOTED_MATCH_INCLUDE + r"\d{4}\.?\s.+?(?:időpontban\s)?.*?\s?(?:ezt írta|írta)\s?:)$",
        "from_header": r"((?:(?:^|\n|\n"
        + QUOTED_MATCH_INCLUDE
        + r")[* ]*(?:Feladó|Elküldve|Címzett|Tárgy|Dátum|Másolat|Másolatot kap):[ *]*(?:\s{,2}).*){2,}(?:\n.*){,1})",
        "disclaimers": [],
        "signatures": ["Üdvözlettel", "Tisztelettel", "Köszönettel"],
        "sent_from": "Küldve az? .* készülékről|Sent from my",
    },
)
REPLY_LANGUAGES = ["hu", "en", "de", "fr", "es", "it", "nl", "pl", "cs"]
_reply_parser = EmailReplyParser(languages=REPLY_LANGUAGES)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:Eredeti üzenet|Original Message|Ursprüngliche Nachricht|Message d'origine|"
    r"Továbbított üzenet|Forwarded message)\s*-{2,}"
    # Gmail's quote header, which clients wrap onto a second line:
    r"|^[ >]*\d{4}\.\s[^\n]{0,200}(?:\n[^\n]{0,200})?\bezt írta:[ \t]*$"
    r"|^[ >]*On\s[^\n]{0,200}(?:\n[^\n]{0,200})?\bwrote:[ \t]*$"
    r"|^[ >]*Am\s[^\n]{0,200}(?:\n[^\n]{0,200})?\bschrieb[^\n]{0,80}:[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)

_MSGID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
_MISLABEL_PRONE = {"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"}

_html = html2text.HTML2Text()
_html.body_width = 0
_html.ignore_images = True
_html.ignore_emphasis = True
_html.unicode_snob = True


def parse_mail(raw: bytes, max_attachment_bytes: int) -> ParsedMail:
    """Reads one message; raises UnparseableMail when no ticket can be read from it."""
    if not raw or not raw[:65536].strip():
        raise UnparseableMail("empty message (0 bytes)")
    head = raw[:4096]
    if b"\x00" in head and not re.match(rb"^[\x21-\x39\x3b-\x7e]+:", raw):
        raise UnparseableMail("binary data, not a mail message")
    shrunk, set_aside = _set_aside_big_blocks(raw)
    try:
        parsed = mailparser.parse_from_bytes(shrunk)
    except Exception as exc:  # mail-parser raises anything from its depths
        raise UnparseableMail(f"mail-parser failed: {type(exc).__name__}: {exc}") from None
    message = parsed.message
    if message is None or not message.keys():
        raise UnparseableMail("no header fields")
    headers = _headers(message)
    if not _looks_like_mail(headers):
        raise UnparseableMail("no From, Subject, Date, Message-ID or MIME header: not a mail message")

    text, html = _bodies(parsed, message)
    text, html = text.replace("\r\n", "\n"), html.replace("\r\n", "\n")
    if not text and html:
        text = html_to_text(html)
    if not text and not html and "StartBoundaryNotFoundDefect" in parsed.defects_categories:
        # The boundary is wrong: keep what the customer wrote, MIME debris and all (P6).
        body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1]
        text = _decode_text(body, message.get_content_charset()).replace("\r\n", "\n").strip()
    attachments = tuple(_attachments(parsed, raw, max_attachment_bytes, set_aside))
    content_type = message.get_content_type()
    sender = _first_address(parsed.from_)
    if sender and (sender.name.isascii() or "\ufffd" in sender.name) and not (_raw_header(raw, "from") or b"").isascii():
        from_text = _header_text(raw, "from", "")
        sender = Address(sender.email, _clean_line(from_text.rpartition("<")[0].strip().strip('"')))
    return_path = _return_path(headers)
    return ParsedMail(
        message_id=headers.get("message-id").strip()[:998],
        sender=sender,
        subject=_clean_line(_decode_words(_header_text(raw, "subject", parsed.subject or ""))),
        text=text,
        new_text=new_text_of(text),
        html=html,
        references=_references(headers),
        attachments=attachments,
        headers=headers,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        raw_size=len(raw),
        return_path=return_path,
        reply_to=_first_address(parsed.reply_to) or None,
        to=tuple(a for a in (_address(p) for p in parsed.to or ()) if a),
        cc=tuple(a for a in (_address(p) for p in parsed.cc or ()) if a),
        date=_date(headers.get("date")),
        content_type=content_type,
        report=_delivery_report(message, content_type, sender, return_path),
        defects=tuple(sorted(parsed.defects_categories)),
    )


def html_to_text(html: str) -> str:
    try:
        return _html.handle(html).strip()
    except Exception:  # html2text on hostile markup: fall back to stripping tags
        return re.sub(r"<[^>]+>", " ", html).strip()


# Cheap test before the expensive one: does the text quote anything at all?
# (Substring tests: one regex alternation over the body cost more than mail-parser.)
_QUOTE_HINTS = ("\n>", "wrote:", "írta:", "schrieb", "a écrit", "escribió", "scritto", "schreef", "napisał",
                "feladó:", "from:", "von:", "de :", "--")


def _quotes_something(text: str) -> bool:
    lowered = text.lower()
    return lowered.lstrip().startswith(">") or any(hint in lowered for hint in _QUOTE_HINTS)


def new_text_of(text: str) -> str:
    """The part of a reply its author wrote: quoted history and its header removed."""
    if not text:
        return ""
    if not _quotes_something(text):
        return text.strip()
    cut = _ORIGINAL_MESSAGE.search(text)
    head = text[: cut.start()] if cut else text
    try:
        latest = _reply_parser.parse_reply(head)
    except Exception:  # a regex pathology must not cost us the mail
        latest = head
    latest = latest if latest is not None else head
    lines = latest.splitlines()
    # Trailing ">" blocks without a header line are quoted history too.
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith(">")):
        lines.pop()
    return "\n".join(lines).strip()


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
    (no bidi tricks: "invoice\u202efdp.exe" shows as "invoiceexe.pdf"), none that Windows
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
    for key, value in message.items():
        text = str(value) if not isinstance(value, str) else value
        fields.append((key.lower(), re.sub(r"\r?\n[ \t]+", " ", text).strip()))
    return Headers(tuple(fields))


def _raw_header(raw: bytes, name: str) -> bytes | None:
    """The field's bytes as sent (unfolded), from the header section."""
    head = re.split(rb"\r?\n\r?\n", raw[:262144], maxsplit=1)[0]
    found = re.search(rb"(?im)^" + re.escape(name.encode()) + rb":[ \t]*((?:.*)(?:\r?\n[ \t].*)*)", head)
    return re.sub(rb"\r?\n[ \t]+", b" ", found.group(1)).strip() if found else None


def _header_text(raw: bytes, name: str, decoded: str) -> str:
    """A header's text; 8-bit bytes sent without RFC 2047 (against the rules, common in
    Hungarian webmail) are read as UTF-8, else windows-1250, instead of being dropped."""
    value = _raw_header(raw, name) if decoded.isascii() or "\ufffd" in decoded else None
    if not value or value.isascii():
        return decoded
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("windows-1250", "replace")
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # a broken encoded word inside: keep the plain text
        return text


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_CHARSET_ALIASES = {"utf8mb4": "utf-8", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "x-unknown": "utf-8"}


def _decode_words(text: str) -> str:
    """RFC 2047 words the standard decoder gave up on (unknown charset names)."""

    def one(found: re.Match[str]) -> str:
        charset, encoding, payload = found.group(1).lower().split("*")[0], found.group(2).upper(), found.group(3)
        try:
            if encoding == "B":
                data = base64.b64decode(payload + "=" * (-len(payload) % 4))
            else:
                data = quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)
        except (binascii.Error, ValueError):
            return found.group(0)
        return _decode_text(data, _CHARSET_ALIASES.get(charset, charset))

    decoded = _ENCODED_WORD.sub(one, text)
    return re.sub(r"(?<=[^\s])\s+(?=[^\s])", " ", decoded) if decoded != text else text


def _looks_like_mail(headers: Headers) -> bool:
    known = ("from", "subject", "date", "message-id", "mime-version", "to", "received", "return-path", "content-type")
    return any(name in headers for name in known)


def _clean_line(value: str) -> str:
    return re.sub(r"[ \t\r\n]+", " ", _CONTROL.sub(" ", value)).strip()


def _address(pair) -> Address:  # type: ignore[no-untyped-def]
    name, addr = (pair + ("", ""))[:2] if isinstance(pair, tuple) else ("", str(pair))
    addr = (addr or "").strip().strip("<>").lower()
    if "@" not in addr or " " in addr:
        addr = ""
    name = name or ""
    if "=?" in name:
        name = _decode_words(name)
    return Address(addr, _clean_line(name))


def _first_address(pairs) -> Address:  # type: ignore[no-untyped-def]
    for pair in pairs or ():
        address = _address(pair)
        if address:
            return address
    return Address("")


def _return_path(headers: Headers) -> str | None:
    value = headers.get("return-path", None)  # type: ignore[arg-type]
    if value is None:
        return None
    found = re.search(r"<([^>]*)>", value)
    return (found.group(1) if found else value).strip().lower()


def _references(headers: Headers) -> tuple[str, ...]:
    seen: list[str] = []
    for name in ("in-reply-to", "references"):
        for value in headers.get_all(name):
            for ref in _MSGID.findall(value):
                if ref not in seen:
                    seen.append(ref)
    return tuple(seen[:100])


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


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


def _body_parts(part):  # type: ignore[no-untyped-def]
    """The text and HTML parts of this mail, not of mail attached to it (forwards, bounces)."""
    content_type = part.get_content_type()
    if content_type in _EMBEDDED:
        return
    if part.is_multipart():
        for sub in part.get_payload():
            yield from _body_parts(sub)
    elif content_type in ("text/plain", "text/html") and part.get_content_disposition() != "attachment" \
            and not part.get_filename():
        yield part


def _bodies(parsed, message) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Text and HTML bodies; our own decode where mail-parser had to guess or mixed in attached mail."""
    text = "\n".join(parsed.text_plain).strip()
    html = "\n".join(parsed.text_html).strip()
    parts = list(_body_parts(message))
    suspicious = "CharsetDecodeDefect" in parsed.defects_categories or "\ufffd" in text + html
    if (len(parts) == len(parsed.text_plain) + len(parsed.text_html) and not suspicious
            and not _latin2_mislabelled(text + html) and not _UTF8_TELLS.search(text + html)):
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


# Big base64 attachments never reach mail-parser, which holds about eight
# copies of what it parses: each run of base64 lines of 1 MB or more outside a
# text part is swapped for a short placeholder (itself valid base64), and the
# attachment is decoded here straight from the raw bytes.
_BIG_BLOCK = 1024 * 1024
_BASE64_PART = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?$")
_BASE64_ONLY = re.compile(rb"[A-Za-z0-9+/=\r\n]*")
_PLACEHOLDER = b"MAILBRIDGE-SET-ASIDE-"


def _set_aside_big_blocks(raw: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """(the message with big base64 bodies replaced, where each body was in `raw`)."""
    if len(raw) < _BIG_BLOCK:
        return raw, []
    spans: list[tuple[int, int]] = []
    pieces: list[bytes] = []
    last = 0
    for found in _BASE64_PART.finditer(raw):
        blank = re.compile(rb"\r?\n\r?\n").search(raw, found.end())
        if blank is None or blank.start() < last:
            continue
        body_start = blank.end()
        body_end = raw.find(b"\n--", body_start)
        body_end = len(raw) if body_end < 0 else body_end + 1
        part_head = raw[max(0, found.start() - 4000) : body_start].rsplit(b"\n--", 1)[-1]
        if (body_end - body_start < _BIG_BLOCK or re.search(rb"(?i)content-type:\s*text/", part_head)
                or _BASE64_ONLY.match(raw, body_start, body_start + 4096).end() != min(body_start + 4096, body_end)):
            continue
        pieces += [raw[last:body_start], base64.b64encode(_PLACEHOLDER + str(len(spans)).encode()) + b"\r\n"]
        spans.append((body_start, body_end))
        last = body_end
    if not spans:
        return raw, []
    pieces.append(raw[last:])
    return b"".join(pieces), spans


_INVENTED_NAME = re.compile(r"^[a-z]{10}\.(?:txt|rtf)$")


def _attachments(parsed, raw: bytes, limit: int, set_aside: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
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
            start, end = set_aside[int(data[len(_PLACEHOLDER):])]
            data = binascii.a2b_base64(memoryview(raw)[start:end])  # no copy of the slice; newlines skipped
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


_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)


def _delivery_report(message, content_type: str, sender: Address, return_path: str | None):  # type: ignore[no-untyped-def]
    is_report = content_type == "multipart/report" and str(message.get_param("report-type", "")).lower() == "delivery-status"
    from_daemon = bool(_DAEMON.match(sender.email)) or return_path == ""
    if not is_report and not from_daemon:
        return None
    try:
        recipients = tuple(sorted(r.decode("utf-8", "replace").lower() for r in scan_message(message)))
    except Exception:  # a detector choking must not cost us the mail
        recipients = ()
    message_ids: list[str] = []
    permanent = True
    for part in message.walk():
        part_type = part.get_content_type()
        if part_type in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                ids = inner[0].get_all("Message-ID") or []
            else:
                ids = re.findall(r"(?im)^Message-ID:\s*(<[^>]+>)", part.get_payload(decode=False) or "")
            message_ids.extend(str(i).strip() for i in ids)
        elif part_type == "message/delivery-status":
            text = part.as_string()
            if re.search(r"(?im)^Action:\s*delayed", text):
                permanent = False
    if not message_ids:
        # Free-text bounces quote the original's headers in their body.
        whole = message.as_bytes()
        body = re.split(rb"\r?\n\r?\n", whole, maxsplit=1)[-1]
        message_ids = [m.decode("ascii", "replace") for m in re.findall(rb"(?im)^\s*Message-ID:\s*(<[^>\s]+>)", body)]
    if not is_report and not recipients and not message_ids:
        return None
    return DeliveryReport(tuple(recipients), tuple(dict.fromkeys(message_ids)), permanent)
