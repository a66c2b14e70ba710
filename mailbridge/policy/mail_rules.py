"""Ops-configurable mail rules and the spam verdict, for one parsed mail. Pure (no I/O).

A rule's conditions (every one it gives must hold):

- `sender`: glob patterns (`fnmatch`, case-insensitive) on the From address;
  any one pattern matching is enough. A mail without a usable From matches none.
- `header`: (name, regex) pairs; the regex is searched, case-insensitively, in
  every value of that header field (as sent, and with RFC 2047 words decoded);
  one value matching is enough for the pair, and every pair must hold.
  A missing header field fails the pair.
- `subject` / `body`: a regex searched in the subject / the whole text of the
  mail, ignoring case and accents ("szamla" finds "Számla", and "Számla" finds
  "SZAMLA"), the way keyword classification (policy/classify.py) does.

Actions: the first matching rule that sets a category wins it (likewise the
area); `no_ack` and `ignore` accumulate. An ignored mail is still recorded
(P6) — the verdict only says no ticket and no acknowledgement.

Spam comes from the receiving server's filter: `X-Spam-Flag: YES`, or a score
(the score header, or `score=` in SpamAssassin's `X-Spam-Status`) at or above
the threshold. Every copy of those fields counts: a sender can add a
reassuring "X-Spam-Flag: NO" of their own, but cannot remove our server's.

Bad regexes are a configuration error: `check_rule` names the field so the
config loader can report it; `apply_rules` treats a rule it cannot compile as
not matching.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from dataclasses import dataclass
from email.header import decode_header, make_header
from functools import lru_cache

from mailbridge.mail import ParsedMail
from mailbridge.vocabulary import AREAS, CATEGORIES

SPAM = "spam"  # the reason recorded in RuleVerdict.matched


@dataclass(frozen=True)
class MailRule:
    name: str
    # conditions, all given ones must hold
    sender: tuple[str, ...] = ()  # glob patterns on the From address: "*@spam.example", "noreply@*"
    header: tuple[tuple[str, str], ...] = ()  # (header name, regex searched in its value)
    subject: str = ""  # regex searched in the subject (case- and accent-insensitive)
    body: str = ""  # regex searched in the mail's text (case- and accent-insensitive)
    # actions
    category: str | None = None  # exact P4 name
    area: str | None = None  # exact P5 name
    no_ack: bool = False  # record and assign, but send no acknowledgement
    ignore: bool = False  # record (P6) as ignored: no ticket, no acknowledgement


@dataclass(frozen=True)
class SpamPolicy:
    flag_header: str = "X-Spam-Flag"  # value YES (any case) -> spam
    score_header: str = "X-Spam-Score"  # "7.3", "7.3 / 5.0"; X-Spam-Status "score=7.3" is read too
    threshold: float = 5.0


@dataclass(frozen=True)
class RuleVerdict:
    category: str | None
    area: str | None
    no_ack: bool
    ignore: bool
    spam: bool
    matched: tuple[str, ...]  # names of the matching rules, in order; then "spam" when spam


# --- text folding -----------------------------------------------------------------


def _strip_accents(text: str) -> str:
    """NFKD without the combining marks: 'Számla' -> 'Szamla', 'ő' -> 'o'.
    Unlike classify.fold() it keeps case and every other character, so it is safe on
    a regex too (casefolding would turn `\\S` into `\\s`, dropping non-ASCII would turn
    `[€$]` into `[$]`); matching then uses re.IGNORECASE."""
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed.isascii():
        return decomposed
    # The few marks a text holds, each removed in one pass (a test per character of the
    # whole text cost 100 µs a mail).
    for mark in {c for c in set(decomposed) if unicodedata.combining(c)}:
        decomposed = decomposed.replace(mark, "")
    return decomposed


@lru_cache(maxsize=1024)
def _text_pattern(regex: str) -> re.Pattern[str]:
    return re.compile(_strip_accents(regex), re.IGNORECASE)


@lru_cache(maxsize=1024)
def _header_pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.IGNORECASE)


def _regex_error(pattern: str, compile_: object) -> str | None:
    try:
        compile_(pattern)  # type: ignore[operator]
    except re.error as exc:
        return f"bad regex: {exc}"
    return None


# --- validation -------------------------------------------------------------------


def check_rule(rule: MailRule) -> str | None:
    """What is wrong with a configured rule, naming the field ("body: bad regex: ..."),
    or None when it is fine."""

    if not isinstance(rule.name, str) or not rule.name.strip():
        return "name: must not be empty"
    if rule.name == SPAM:
        return f"name: {SPAM!r} is reserved for the spam verdict"
    for pattern in rule.sender:
        if not isinstance(pattern, str) or not pattern.strip():
            return "sender: empty pattern"
    for pair in rule.header:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            return f"header: expected (name, regex) pairs, got {pair!r}"
        name, regex = pair
        if not isinstance(name, str) or not re.fullmatch(r"[!-9;-~]+", name):
            return f"header: bad header name {name!r}"
        if not isinstance(regex, str):
            return f"header: {name}: regex must be a string"
        error = _regex_error(regex, _header_pattern)
        if error:
            return f"header: {name}: {error}"
    for field in ("subject", "body"):
        regex = getattr(rule, field)
        if not isinstance(regex, str):
            return f"{field}: regex must be a string"
        error = _regex_error(regex, _text_pattern)
        if error:
            return f"{field}: {error}"
    if rule.category is not None and rule.category not in CATEGORIES:
        return f"category: unknown category {rule.category!r} (choices: {', '.join(CATEGORIES)})"
    if rule.area is not None and rule.area not in AREAS:
        return f"area: unknown area {rule.area!r} (choices: {', '.join(AREAS)})"
    if not (rule.sender or rule.header or rule.subject or rule.body):
        return "rule has no condition (sender, header, subject or body): it would match every mail"
    if rule.category is None and rule.area is None and not rule.no_ack and not rule.ignore:
        return "rule has no action (category, area, no_ack or ignore)"
    return None


# --- matching ---------------------------------------------------------------------


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a malformed encoded word: the value as sent still counts
        return value


class _Mail:
    """The parts of one mail the rules look at, each prepared once."""

    def __init__(self, mail: ParsedMail) -> None:
        self.mail = mail
        self._subject: str | None = None
        self._body: str | None = None

    @property
    def subject(self) -> str:
        if self._subject is None:
            self._subject = _strip_accents(self.mail.subject or "")
        return self._subject

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = _strip_accents(self.mail.text or "")
        return self._body


def _search(compile_, regex: str, text: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return compile_(regex).search(text) is not None
    except re.error:  # check_rule reports it; an uncompilable rule matches nothing
        return False


def _matches(rule: MailRule, mail: _Mail) -> bool:
    if rule.sender:
        address = mail.mail.sender.email.lower()
        if not address or not any(fnmatch.fnmatchcase(address, p.strip().lower()) for p in rule.sender):
            return False
    for name, regex in rule.header:
        values = mail.mail.headers.get_all(name)
        # Without an encoded word ("=?") the decoded value is the value as sent.
        if not any(_search(_header_pattern, regex, v) or ("=?" in v and _search(_header_pattern, regex, _decoded(v)))
                   for v in values):
            return False
    if rule.subject and not _search(_text_pattern, rule.subject, mail.subject):
        return False
    if rule.body and not _search(_text_pattern, rule.body, mail.body):
        return False
    return True


_NUMBER = r"([-+]?\d+(?:[.,]\d+)?)"
_SCORE_AT_START = re.compile(r"^\s*" + _NUMBER)
_SCORE_IN_STATUS = re.compile(r"\bscore=" + _NUMBER, re.IGNORECASE)


def _number(found: re.Match[str] | None) -> float | None:
    return float(found.group(1).replace(",", ".")) if found else None


def is_spam(mail: ParsedMail, policy: SpamPolicy) -> bool:
    """The receiving server's spam filter said so: a YES flag, or a score >= threshold."""
    headers = mail.headers
    if any(v.strip().upper() == "YES" for v in headers.get_all(policy.flag_header)):
        return True
    scores = [_number(_SCORE_AT_START.match(v)) for v in headers.get_all(policy.score_header)]
    scores += [_number(_SCORE_IN_STATUS.search(v)) for v in headers.get_all("X-Spam-Status")]
    return any(s is not None and s >= policy.threshold for s in scores)


def apply_rules(mail: ParsedMail, rules: tuple[MailRule, ...], spam: SpamPolicy) -> RuleVerdict:
    prepared = _Mail(mail)
    category = area = None
    no_ack = ignore = False
    matched: list[str] = []
    for rule in rules:
        if not _matches(rule, prepared):
            continue
        matched.append(rule.name)
        if category is None:
            category = rule.category
        if area is None:
            area = rule.area
        no_ack = no_ack or rule.no_ack
        ignore = ignore or rule.ignore
    flagged = is_spam(mail, spam)
    if flagged:
        matched.append(SPAM)
    return RuleVerdict(category, area, no_ack, ignore, flagged, tuple(matched))
