"""The pure part of intake for one mail: parse -> screen -> classify, and the
form its raw copy is kept in. No I/O and no clock, so it runs in worker
processes and the main process is left with the database work.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from mailbridge.config import Settings
from mailbridge.errors import UnparseableMail
from mailbridge.intake.parse import parse_mail
from mailbridge.mail import ParsedMail
from mailbridge.policy import loops
from mailbridge.policy.classify import DEFAULT_RULES, Classification, Rule, classify, guess_language
from mailbridge.policy.mail_rules import SPAM, MailRule, RuleVerdict, SpamPolicy, apply_rules


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
    sending it back (memory: the poller never holds a big mail's files or raw copy)."""

    raw_copy: str  # the raw message as it is kept (see `raw_copy`)
    attachments: tuple[str, ...]  # each attachment's file, in the mail's order; "" for a rejected one

    def paths(self) -> list[str]:
        return [self.raw_copy, *self.attachments]


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


RAW_COPY_PIECE = 1024 * 1024


def raw_copy(raw: bytes) -> Iterator[bytes]:
    """The raw message as it is kept, zlib at level 6 (`zlib.decompress` reads it back),
    made a piece at a time: never a second whole copy in memory."""
    compressor = zlib.compressobj(6)
    view = memoryview(raw)
    for start in range(0, len(view), RAW_COPY_PIECE):
        if piece := compressor.compress(view[start : start + RAW_COPY_PIECE]):
            yield piece
    yield compressor.flush()
