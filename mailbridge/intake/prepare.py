"""The pure part of intake for one mail: parse -> screen -> classify, and the
form its raw copy is kept in. No I/O and no clock, so it runs in worker
processes and the main process is left with the database work.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mailbridge.errors import UnparseableMail
from mailbridge.intake.parse import parse_mail
from mailbridge.mail import ParsedMail
from mailbridge.policy import loops
from mailbridge.policy.classify import DEFAULT_RULES, Classification, Rule, classify, guess_language
from mailbridge.policy.mail_rules import SPAM, MailRule, RuleVerdict, SpamPolicy, apply_rules

if TYPE_CHECKING:  # the parse workers import this module, and have no use for pydantic and the config (0.1 s)
    from mailbridge.config import Settings


@dataclass(frozen=True)
class PrepareOptions:
    """What the pure stages need from the settings (small enough to send to a worker)."""

    max_attachment_bytes: int
    own_addresses: frozenset[str]
    rules: tuple[Rule, ...]
    default_language: str
    mail_rules: tuple[MailRule, ...] = ()
    spam: SpamPolicy | None = None  # None: no spam check
    default_category: str | None = None  # the mailbox's (e.g. a billing address)
    default_area: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, box=None) -> "PrepareOptions":  # type: ignore[no-untyped-def]
        configured = settings.classification.rules
        rules = tuple(Rule(tuple(r.keywords), r.category, r.area) for r in configured) if configured else DEFAULT_RULES
        spam = settings.spam
        policy = SpamPolicy(spam.flag_header, spam.score_header, spam.threshold) if spam.enabled else None
        return cls(settings.storage.max_attachment_bytes, settings.own_addresses, rules,
                   settings.tickets.default_language, tuple(r.as_rule() for r in settings.mail_rules), policy,
                   box.default_category if box else None, box.default_area if box else None)


@dataclass(frozen=True)
class Staged:
    """What a parse worker wrote to the attachment store's staging folder instead of
    sending it back (memory: the poller never holds a big mail's files or raw copy).
    A small raw copy comes back in the answer instead: a file cost the worker 0.15-0.25 ms
    a mail and the poller a read and a delete, and the copy is smaller than the fetched
    mail the poller held anyway."""

    raw_copy: str | bytes  # the raw message as it is kept (see `raw_copy`): its staged file, or itself
    attachments: tuple[str, ...]  # each attachment's file, in the mail's order; "" for a rejected one

    def paths(self) -> list[str]:
        return [path for path in (self.raw_copy, *self.attachments) if isinstance(path, str)]

    def raw_copy_bytes(self) -> bytes:
        """The kept copy (a zlib stream), from the answer or its file."""
        if isinstance(self.raw_copy, bytes):
            return self.raw_copy
        with open(self.raw_copy, "rb") as copy:
            return copy.read()


@dataclass(frozen=True)
class Unreadable:
    """Why a mail cannot be read (then it is quarantined, P6): the parser's word, the
    time or size budget it broke, a parse worker that died on it, a store that refused it."""

    reason: str


@dataclass(frozen=True)
class Prepared:
    mail: ParsedMail
    verdict: loops.Verdict
    classification: Classification
    language: str
    rules: RuleVerdict | None = None  # what ops' mail rules and the spam check say
    staged: Staged | None = None  # None: the attachments' bytes are in `mail`, the raw copy is not made yet


def prepare_mail(raw: bytes, options: PrepareOptions) -> Prepared | Unreadable:
    """A Prepared mail, or why it cannot be read."""
    try:
        mail = parse_mail(raw, options.max_attachment_bytes)
    except UnparseableMail as exc:
        return Unreadable(str(exc))
    except Exception as exc:  # a parser bug is this mail's problem, not the poll's
        return Unreadable(f"parser error: {type(exc).__name__}: {exc}")
    found = classify(mail.subject, mail.new_text or mail.text, options.rules)
    if options.default_category or options.default_area:
        # The mailbox it came to says more than keywords (a billing address is about billing).
        found = Classification(options.default_category or found.category, options.default_area or found.area)
    verdict = None
    if options.mail_rules or options.spam is not None:
        verdict = apply_rules(mail, options.mail_rules, options.spam or SpamPolicy())
        if options.spam is None:  # the spam check is switched off
            verdict = replace(verdict, spam=False, matched=tuple(m for m in verdict.matched if m != SPAM))
        # Ops' explicit rules beat the keyword guess.
        found = Classification(verdict.category or found.category, verdict.area or found.area)
    return Prepared(
        mail=mail,
        verdict=loops.screen(mail, options.own_addresses),
        classification=found,
        language=guess_language(mail.subject + "\n" + mail.text[:1000], options.default_language),
        rules=verdict,
    )


# The raw copy is one zlib stream (`zlib.decompress` reads it, as it read the older
# copies made at level 6), written a piece at a time. Each piece is compressed the
# way it pays: base64 of compressed data (photos, PDFs, archives: most attachments)
# gains nothing from LZ77 matching, which costs 3-5x Huffman coding alone for the
# same size (20 KB PNG: 505 -> 150 µs; bench/intake.py prints the stored size).
RAW_COPY_PIECE = 64 * 1024
TEXT_LEVEL = 6  # level 1: 12 µs a mail less on tests/corpus, 2 % more kept; the time went on attachments
_BASE64_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"
_PROBE = 2048  # bytes of a base64 piece compressed to see whether LZ77 pays there
_ZLIB_HEADER = b"\x78\x9c"  # deflate, 32 KB window (the level bits are informational)
_LAST_BLOCK = b"\x03\x00"  # an empty final block


def _already_compressed(piece: bytes) -> bool:
    """Base64 lines (at most 5 % of the piece other bytes: a part's header, a boundary)
    whose content LZ77 would not shrink beyond what Huffman coding does anyway."""
    if len(piece.translate(None, _BASE64_BYTES)) * 20 > len(piece):
        return False
    middle = len(piece) // 2
    sample = piece[middle : middle + _PROBE]
    return len(zlib.compress(sample, 1)) * 10 > len(sample) * 7


def raw_copy(raw: bytes) -> Iterator[bytes]:
    """The raw message as it is kept: a zlib stream (see above), made a piece at a
    time (never a second whole copy in memory). A run of pieces of one kind shares a
    raw-deflate compressor; a run ends with a sync flush (byte-aligned, not final), so
    the runs' blocks follow each other in one stream; the last run's final block and
    the Adler-32 of the whole message end it."""
    yield _ZLIB_HEADER
    adler, kind, compressor = 1, None, None
    for start in range(0, len(raw), RAW_COPY_PIECE):
        piece = raw[start : start + RAW_COPY_PIECE]
        huffman = _already_compressed(piece)
        if huffman is not kind:
            if compressor is not None:
                yield compressor.flush(zlib.Z_SYNC_FLUSH)
            kind = huffman
            # A fresh compressor: the other run's data is in the reader's window, not in its.
            compressor = (zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_HUFFMAN_ONLY) if huffman
                          else zlib.compressobj(TEXT_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS))
        adler = zlib.adler32(piece, adler)
        if out := compressor.compress(piece):
            yield out
    # The last run's final block ends the stream (an empty message: an empty final block).
    yield (compressor.flush() if compressor is not None else _LAST_BLOCK) + adler.to_bytes(4, "big")
