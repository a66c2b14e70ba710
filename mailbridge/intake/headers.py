"""Header fields as their sender wrote them: the text of encoded and 8-bit headers, the
address a mail is from, and a header block Python's parser can read.

Pure (no I/O, no clock), like parse.py, which calls it. What real software writes and
the standard parsers miss: 8-bit headers with no RFC 2047 (read in the charset the mail
itself declares, then a detector's guess, then Latin-1), folding after an encoded word
(mail-parser drops that space), From without angle brackets or with broken quoting, a
From with no address at all (then Reply-To, Sender or Return-Path names the reporter),
and header blocks that open with a stray line (mbox, BOM, a blank line).

An encoded word inside an address stays literal: addresses are read from the undecoded
text and only display names are decoded, so `=?utf-8?q?agent=40crossec.com?=` is never
anyone's address.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import charset_normalizer
from mailparser.utils import get_addresses

from mailbridge.mail import Address, Headers
from mailbridge.policy.addresses import normalise_address

# --- text of a header -----------------------------------------------------------------

# Labels that name a smaller charset than the one mailers really use under it (the
# WHATWG Encoding Standard's mapping): a GB2312 label on GBK text, Shift_JIS on CP932,
# and names Python does not know (MySQL's utf8mb4).
_CHARSET_SUPERSETS = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030", "cp936": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "windows-31j": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949",
    "big5": "big5hkscs", "x-big5": "big5hkscs",
    "iso-8859-1": "cp1252", "latin1": "cp1252",
    "iso-8859-9": "cp1254", "tis-620": "cp874", "iso-8859-11": "cp874",
    "utf8mb4": "utf-8", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "x-unknown": "utf-8",
}
_C1_CONTROLS = re.compile("[\x80-\x9f]")  # Latin-1 read of bytes that are not Latin-1 text


@functools.lru_cache(maxsize=256)  # a few labels recur in every mail; at most 75 characters each
def _codec(label: str) -> str | None:
    """Python's codec for a charset label, or None."""
    label = label.strip().strip('"').lower().split("*")[0]
    name = _CHARSET_SUPERSETS.get(label, label)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


DETECT_BYTES = 4096  # the detector's cost grows with what it reads; a header's first 4 KB tell


def text_of(data: bytes, charsets: Iterable[str] = (), declared_first: bool = False) -> str:
    """Text of header bytes: UTF-8 (valid by accident is next to impossible), the charsets
    the mail declares, charset-normalizer's guess, Latin-1. `declared_first`: the charsets
    name these very bytes (an encoded word's), so they go before UTF-8."""
    if data.isascii():
        return data.decode("ascii")
    tried: list[str] = []
    labels = [*charsets, "utf-8"] if declared_first else ["utf-8", *charsets]
    for label in labels:
        codec = _codec(label)
        if codec is None or codec in tried:
            continue
        tried.append(codec)
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if not _C1_CONTROLS.search(text):
            return text
    best = charset_normalizer.from_bytes(data[:DETECT_BYTES]).best()
    if best is not None and best.encoding:
        text = data.decode(best.encoding, "replace")
        if not _C1_CONTROLS.search(text):
            return text
    return data.decode("latin-1")


# What the mail declares: its parts' charset parameters, and its encoded words' charsets.
# Bounded: a prefix of the mail, names of at most 40 characters.
CHARSET_SCAN = 64 * 1024
_DECLARED = re.compile(rb"""(?i)charset[ \t]*=[ \t]*"?([A-Za-z0-9_.:+-]{1,40})|=\?([A-Za-z0-9_.:+-]{1,40})(?:\*[A-Za-z-]{0,20})?\?[QqBb]\?""")


def charsets_declared(raw: bytes) -> tuple[str, ...]:
    """The charsets a mail names (parts first, then encoded words), in order, once each."""
    parts: dict[str, None] = {}
    words: dict[str, None] = {}
    for found in _DECLARED.finditer(raw[:CHARSET_SCAN]):
        if found.group(1):
            parts.setdefault(found.group(1).decode("ascii").lower(), None)
        else:
            words.setdefault(found.group(2).decode("ascii").lower(), None)
    return tuple(dict.fromkeys([*parts, *words]))


_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([QqBb])\?([^?\s]*)\?=")


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "Bb":
            return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
        return binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None


def decode_words(text: str) -> str:
    """RFC 2047: encoded words decoded, whitespace BETWEEN two of them dropped, whitespace
    beside plain text kept (mail-parser drops it after a folded word: "rögzítettük:Nem").
    Adjacent words in one charset are joined before decoding: a character may be split
    over two. Unknown charset names (utf8mb4, x-unknown) fall back as header bytes do;
    a word that cannot be decoded stays as it was."""
    if "=?" not in text:
        return text
    out: list[str] = []
    run: list[bytes] = []  # the bytes of adjacent words in one charset
    run_charset = ""
    end = 0

    def flush() -> None:
        if run:
            out.append(text_of(b"".join(run), (run_charset,), declared_first=True))
            run.clear()

    for found in _ENCODED_WORD.finditer(text):
        gap = text[end:found.start()]
        data = _word_bytes(found.group(2), found.group(3))
        if data is None:
            flush()
            out.append(gap + found.group(0))
            end = found.end()
            continue
        charset = found.group(1).lower().split("*")[0]
        between_words = bool(run) and not gap.strip()
        if not (between_words and charset == run_charset):
            flush()
            if not between_words:
                out.append(gap)
        run.append(data)
        run_charset = charset
        end = found.end()
    flush()
    out.append(text[end:])
    return "".join(out)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BLANKS = re.compile(r"[ \t\r\n]+")


def clean_line(value: str) -> str:
    if value.isprintable() and "  " not in value:
        return value.strip()  # no control character, no run of blanks: most names and subjects
    return _BLANKS.sub(" ", _CONTROL.sub(" ", value)).strip()


_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def field_bytes(message, name: str) -> bytes | None:  # type: ignore[no-untyped-def]
    """The first `name` field's bytes as sent, unfolded (the parser keeps 8-bit bytes
    as surrogates; this gives them back)."""
    name = name.lower()
    for key, value in message.raw_items():
        if key.lower() == name:
            if not isinstance(value, str):
                value = str(value)
            data = value.encode("ascii", "surrogateescape")
            return (_FOLD.sub(b"", data) if b"\n" in data else data).strip()
    return None


@dataclass
class HeaderReader:
    """Reads the text of one mail's header fields; the charsets the mail declares are
    looked up once, and only when a field carries 8-bit bytes."""

    message: object
    raw: bytes
    _declared: tuple[str, ...] | None = None

    def declared(self) -> tuple[str, ...]:
        if self._declared is None:
            self._declared = charsets_declared(self.raw)
        return self._declared

    def text(self, data: bytes) -> str:
        return data.decode("ascii") if data.isascii() else text_of(data, self.declared())

    def field(self, name: str) -> str | None:
        """A field's decoded text (8-bit bytes and encoded words), or None when it is missing."""
        data = field_bytes(self.message, name)
        return None if data is None else decode_words(self.text(data))

    def name(self, field: str, found: Address) -> str:
        """`found`'s display name as mail-parser gives it, or, where it shows 8-bit bytes
        it could not read (as "\\udce1" or U+FFFD), read again from the field's bytes."""
        if "\\udc" not in found.name and "\ufffd" not in found.name:
            return found.name
        data = field_bytes(self.message, field)
        if data is None or data.isascii():
            return found.name
        again = [address(pair) for pair in get_addresses(self.text(data), decode_names=True)]
        return next((a.name for a in again if a.email == found.email), found.name)


def subject_of(reader: HeaderReader, decoded: Callable[[], str]) -> str:
    """The Subject, decoded from its bytes; `decoded()` (mail-parser's, asked only then: it
    costs as much as our own reading) where the field cannot be read."""
    text = reader.field("subject")
    return clean_line(decoded() if text is None else text)


# --- addresses ----------------------------------------------------------------------


def _unquoted(addr: str) -> str:
    """`"kiss.anna"@example.hu` and `kiss."anna"@example.hu` are kiss.anna@example.hu;
    a quoted part with a space or an @ stays as it is (and is refused below)."""
    local, at, domain = addr.rpartition("@")
    if at and '"' in local:
        plain = local.replace('"', "")
        if normalise_address(f"{plain}@{domain}"):
            return f"{plain}@{domain}"
    return addr


def address(pair) -> Address:  # type: ignore[no-untyped-def]
    """One (name, address) pair as an Address; no address when it is not one."""
    name, addr = (pair + ("", ""))[:2] if isinstance(pair, tuple) else ("", str(pair))
    addr = _unquoted((addr or "").strip().strip("<>")).lower()
    if "@" not in addr or " " in addr:
        addr = ""
    name = name or ""
    if "=?" in name:
        name = decode_words(name)
    return Address(addr, clean_line(name).strip('"').strip())


def first_address(pairs) -> Address:  # type: ignore[no-untyped-def]
    for pair in pairs or ():
        found = address(pair)
        if found:
            return found
    return Address("")


def return_path(headers: Headers) -> str | None:
    value = headers.get("return-path", None)  # type: ignore[arg-type]
    if value is None:
        return None
    found = re.search(r"<([^>]*)>", value)
    return (found.group(1) if found else value).strip().lower()


_BRACKET_OR_SPACE = re.compile(r"[<>\s]")


def message_id(headers: Headers) -> str:
    """The Message-ID as written; a bare `id@host` (scripts write one) gets its brackets,
    so our replies' In-Reply-To and References can name it."""
    value = headers.get("message-id").strip()[:998]
    if value and "@" in value and not _BRACKET_OR_SPACE.search(value):
        return f"<{value}>"
    return value


# Where From has an address the parsers miss: a word with an @ in it, the one after a
# "<" first (an unclosed quote or bracket). Read from the undecoded text: an encoded word
# has no literal @, so it never becomes an address.
MAX_FIELD = 2000
_ADDRESS_TOKEN = re.compile(r"""[^\s<>()\[\],;"']+""")  # whole words: a cut one is no address
_AFTER_BRACKET = re.compile(r"<[ \t]*([^\s<>]+)")
MAX_ADDRESS = 320


def recovered(text: str) -> Address:
    """The first address in a field the parsers could not read ("Name addr@host",
    `"Name <addr@host>`, `"addr@host`), with what is left of the text as the name."""
    if len(text) > MAX_FIELD:  # cut between words: a word cut in two is no address
        text = text[:MAX_FIELD].rsplit(None, 1)[0]
    candidates = [m.group(1) for m in _AFTER_BRACKET.finditer(text)] + _ADDRESS_TOKEN.findall(text)
    for candidate in candidates:
        if "@" not in candidate or len(candidate) > MAX_ADDRESS:
            continue
        addr = normalise_address(_unquoted(candidate.strip("<>")))
        if addr is None:
            continue
        rest = text.replace(candidate, " ", 1)
        # What is left is the name, but no other address in it (two addresses: the first counts).
        words = [w for w in re.split(r"[ \t]+", re.sub(r"""[<>"(),;]""", " ", rest)) if w and "@" not in w]
        return Address(addr, clean_line(decode_words(" ".join(words))))
    return Address("")


FALLBACKS = ("reply-to", "sender", "return-path")


@dataclass(frozen=True)
class Sender:
    """Who a mail is from: From's address (the only one agent and division checks read)
    and, when From has none, the address Reply-To, Sender or Return-Path gives (`source`)."""

    address: Address
    source: str = "from"
    fallback: Address | None = None


def sender_of(reader: HeaderReader, from_pairs, reply_to: Address, headers: Headers) -> Sender:  # type: ignore[no-untyped-def]
    """From's first mailbox (with mail-parser's pairs; recovered from the raw field where
    they hold none), else the fallback."""
    found = first_address(from_pairs)
    if found:
        return Sender(Address(found.email, reader.name("from", found)))
    raw_from = field_bytes(reader.message, "from")
    if raw_from and b"@" in raw_from:
        found = recovered(reader.text(raw_from))
        if found:
            return Sender(found)
    name = Address("", recovered_name(reader.text(raw_from)) if raw_from else "")
    for source in FALLBACKS:
        fallback = _fallback(reader, source, reply_to, headers)
        if fallback:  # a fallback without a name (Return-Path's) takes the name From gave
            return Sender(name, source, fallback if fallback.name else Address(fallback.email, name.name))
    return Sender(name)


def recovered_name(text: str) -> str:
    """The name in a From without an address ("Kiss Anna", `"Kiss Anna" <>`); none in an
    empty group ("undisclosed-senders:;")."""
    text = text[:MAX_FIELD].strip()
    if text.endswith(";") and ":" in text:
        return ""
    return clean_line(decode_words(re.sub(r"""<[^<>]{0,320}>|["<>]""", " ", text)))


def _fallback(reader: HeaderReader, source: str, reply_to: Address, headers: Headers) -> Address:
    if source == "reply-to":
        if reply_to:
            return Address(reply_to.email, reader.name("reply-to", reply_to))
        data = field_bytes(reader.message, "reply-to")
        return recovered(reader.text(data)) if data and b"@" in data else Address("")
    if source == "sender":
        data = field_bytes(reader.message, "sender")
        if not data or b"@" not in data:
            return Address("")
        text = reader.text(data)
        return first_address(get_addresses(text, decode_names=True)) or recovered(text)
    path = return_path(headers)  # "" (the null sender <>) names nobody
    email = normalise_address(path or "")
    return Address(email) if email else Address("")


# --- a header block Python's parser can read --------------------------------------------

MAX_HEAD = 256 * 1024
# A header field line as Python's feedparser reads one; "Name :" is mended to "Name:".
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]{1,200})[ \t]*:")
_SKIPPABLE_LEAD = 3  # stray lines before the first field: an mbox ">From " line, a BOM, blank lines
_BOM = b"\xef\xbb\xbf"


_LOST_FIELDS = ("MissingHeaderBodySeparatorDefect", "FirstHeaderLineIsContinuationDefect")


def head_unreadable(raw: bytes, message) -> bool:  # type: ignore[no-untyped-def]
    """Did Python's parser lose header fields: none read, a stray line ended the block
    early (MissingHeaderBodySeparatorDefect), or a doubled CR split it."""
    if message is None or not message.keys():
        return True
    if any(type(d).__name__ in _LOST_FIELDS for d in message.defects):
        return True
    return raw.find(b"\r", 0, 4096) >= 0 and raw.find(b"\r\r\n", 0, 4096) >= 0  # memchr first: most have no CR


def mended_head(raw: bytes) -> bytes | None:
    """The message with its header block mended, or None when there is nothing to mend:
    up to three stray lines before the first field dropped (`>From ` of an mbox, a BOM, blank
    lines, a title line), stray lines between fields dropped when fields follow them, and
    "Name :" read as "Name:". The raw copy stays as it came; this is only what the parser reads."""
    body = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    if b"\r\r\n" in body[:4096]:
        body = body.replace(b"\r\r\n", b"\r\n")
    lines = body[:MAX_HEAD].splitlines(keepends=True)
    kept: list[bytes] = []
    at = lead = 0
    while at < len(lines) and lead <= _SKIPPABLE_LEAD and not _FIELD.match(lines[at].lstrip(b" \t")):
        at, lead = at + 1, lead + 1
    if at >= len(lines) or not _FIELD.match(lines[at].lstrip(b" \t")):
        return None
    used = sum(len(line) for line in lines[:at])
    first = lines[at].lstrip(b" \t")  # a first field indented: not the continuation of nothing
    used, lines[at] = used + len(lines[at]) - len(first), first
    while at < len(lines):
        line = lines[at]
        if not line.strip(b"\r\n"):
            break  # the blank line: the body follows
        field = _FIELD.match(line)
        if field:
            kept.append(field.group(1) + b":" + line[field.end():])
        elif line[:1] in (b" ", b"\t") and kept:
            kept.append(line)
        elif not _fields_follow(lines, at + 1):
            break  # the body starts without a blank line: the parser reads it so too
        used += len(line)
        at += 1
    mended = b"".join(kept) + body[used:]
    return None if mended == raw else mended


def _fields_follow(lines: Sequence[bytes], at: int) -> bool:
    """Is the line at `at` a header field, so a stray line before it sat inside the block?"""
    return at < len(lines) and bool(_FIELD.match(lines[at])) and b":" in lines[at][:201]
