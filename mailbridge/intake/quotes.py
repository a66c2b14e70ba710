"""A reply's own text: the quoted history and what introduces it cut away. Pure, linear.

The phrases come from `mailbridge.policy.quote_phrases` (data, one row a language).
A reply is read line by line, once: the first line that starts quoted history is
- an attribution line ("On … Anna <anna@example.com> wrote:"), or two lines a
  client wrapped it onto;
- a header block (two different fields on consecutive lines, one naming the sender:
  "From: … / Sent: … / To: …", "Gesendet: … / Von: …");
- a separator ("-----Original Message-----", "-------- Eredeti üzenet --------");
- or a line quoted with ">".
What stands above it is the reply (top-posting). Where nothing does (bottom-posting,
or answers between the quoted lines), the author's lines are the ones after and
between ">" quotes, up to the next history that is not ">" quoted. History quoted
without ">" under a header or attribution runs to the end of the mail.

Cost: each line is looked at once, through patterns that see at most LINE_SCAN of
it, and only the first TEXT_SCAN characters are read for quoted history at all.
"""

from __future__ import annotations

import re

from mailbridge.policy.quote_phrases import ATTRIBUTION_VERBS, DATE_FIELDS, HEADER_FIELDS, SENDER_FIELDS, SEPARATORS

LINE_SCAN = 300  # an attribution or a header field is a short line
TEXT_SCAN = 64 * 1024  # quoted history follows what the author wrote; beyond this the text is kept whole


def _alternation(words) -> str:  # type: ignore[no-untyped-def]
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_VERB = re.compile(r"(?<!\w)(?:" + _alternation(v for verbs in ATTRIBUTION_VERBS.values() for v in verbs) + r")(?!\w)",
                   re.IGNORECASE)
# "… Anna <anna@example.ru>:" — a date and an address, no verb (Gmail in some languages).
_ENDS_IN_ADDRESS = re.compile(r"[^\s<>()\[\]@]+@[^\s<>()\[\]@]+[>)\]]{0,3}[ \t]*:$")
# mutt/NeoMutt's common custom attribution: "* Anna <anna@example.com> [2024-12-03 10:12 +0100]:"
_MUTT = re.compile(r"^\*[ \t][^\[\]]{1,250}\[[^\[\]]{1,80}\]:$")  # one bracket pair: no backtracking
# Field names are looked up, not matched: one set lookup a line, in any language.
_FIELD_NAMES = frozenset(f.lower() for fields in HEADER_FIELDS.values() for f in fields)
_FIELD_NAME_LENGTH = max(len(f) for f in _FIELD_NAMES) + 6  # room for "**" and a space before ":"
_SENDER_FIELDS = frozenset(f.lower() for f in SENDER_FIELDS)
_DATE_FIELDS = frozenset(f.lower() for f in DATE_FIELDS)
_SEPARATOR_WORDS = re.compile(r"(?<!\w)(?:" + _alternation(w for words in SEPARATORS.values() for w in words) + r")(?!\w)",
                              re.IGNORECASE)
_SEPARATOR_LENGTHS = frozenset(len(w) for words in SEPARATORS.values() for w in words)
_DASHED = re.compile(r"^[-_=*]{2,}(.{0,250}?)[-_=*]{2,}$")
_RULE = re.compile(r"^[-_=*]{10,}$")  # Outlook's line of underscores above its header block
_HAS_DATE_OR_ADDRESS = re.compile(r"[\d@]")
_QUOTED = ">"
# The Bat! and Outlook Express quote with the author's initials: "CS> …".
_INITIALS = re.compile(r"[^\W\d_]{1,4}>")
# The lines worth a closer look, found by two searches that start from a literal
# (a pattern tried at every character cost as much as the rest of parsing): quoted,
# dashed, starred or ruled lines and lines opening with a sender field (a header block
# is found from its sender line, then read upwards to its start); and lines ending in
# a colon (an attribution, or the second line of a wrapped one: the line above each
# suspect is looked at too).
_LINE_START = re.compile(r"\n[ \t]*(?:[>\-_=*]|[^\W\d_]{1,4}>|(?:" + _alternation(SENDER_FIELDS) + r")[ \u00a0]?:)")
# The same where no ">" occurs, without the initials (a third of the cost of a line).
_LINE_START_NO_QUOTE = re.compile(r"\n[ \t]*(?:[>\-_=*]|(?:" + _alternation(SENDER_FIELDS) + r")[ \u00a0]?:)")
_LINE_END = re.compile(r"[:：][ \t]*\n")
_COLON_END = re.compile(r":[ \t]*\n")  # the same, faster where no full-width colon occurs


def new_text(text: str) -> str:
    """What the author of a reply wrote: `text` without the quoted history."""
    if ":" not in text and ">" not in text:
        return text.strip()  # nothing can introduce a quote: every introduction has one of these
    lines = text.split("\n")
    # The lines that begin within the first TEXT_SCAN characters, read whole.
    scanned = len(lines) if len(text) <= TEXT_SCAN else min(len(lines), text.count("\n", 0, TEXT_SCAN) + 1)
    length = len(text) if scanned == len(lines) else sum(len(line) + 1 for line in lines[:scanned])
    start, kind = _history_start(lines, 0, scanned, _suspects(text, length))
    if start is None:
        return _tidy(lines)
    mark = _QUOTED if kind == _QUOTED else _quoted_below(lines, start + _kind_span(kind), scanned)
    own = lines[:start] + (_between_quotes(lines, start, scanned, mark) if mark else [])
    return _tidy(own)


def _suspects(text: str, end: int) -> list[int]:
    """The indexes of the lines in text[:end] worth a closer look (see above), in order."""
    line_start = _LINE_START if ">" in text else _LINE_START_NO_QUOTE
    starts = [0] + [m.start() + 1 for m in line_start.finditer(text, 0, end)]
    starts += [m.start() for m in (_LINE_END if "：" in text else _COLON_END).finditer(text, 0, end)]
    found: list[int] = []
    line, counted = 0, 0
    for at in sorted(starts):
        line += text.count("\n", counted, at)
        counted = at
        for i in (line - 1, line):
            if i >= 0 and (not found or i > found[-1]):
                found.append(i)
    found.append(text.count("\n", counted, end))  # the last line, if it ends in a colon and no line break
    found[-1] += line
    return found


def _kind_span(kind: str) -> int:
    """How many lines the introduction itself takes."""
    return {"attribution2": 2}.get(kind, 0 if kind == _QUOTED else 1)


def _history_start(lines: list[str], first: int, last: int, suspects: list[int]) -> tuple[int | None, str]:
    """The first of the `suspects` (line indexes, in order) within lines[first:last] that
    starts quoted history, and what kind it is."""
    for i in suspects:
        if i >= last:
            break
        if i < first:
            continue
        line = lines[i].strip()
        if not line:
            continue
        if _mark(line) == _QUOTED:
            return i, _QUOTED
        head = line[:LINE_SCAN]
        if line.endswith(":") or line.endswith("：") or (head[0] in "-_=*" and head[-1:] in "-_=*"):
            if _is_attribution(head if len(line) <= LINE_SCAN else "") or _is_separator(head):
                return i, "attribution"
            below = lines[i + 1].strip() if i + 1 < last else ""
            if _wrapped_attribution(head, below):
                return i, "attribution2"
        elif i + 1 < last and lines[i + 1].rstrip().endswith(":") and _HAS_DATE_OR_ADDRESS.search(head):
            if _wrapped_attribution(head, lines[i + 1].strip()):
                return i, "attribution2"
        if _field(line):
            top = i
            while top > first and i - top < 8 and _field(lines[top - 1].strip()):
                top -= 1  # GMX and web.de open the block with "Gesendet:", then "Von:"
            if _header_block_at(lines, top, last):
                return _rule_above(lines, top), "header"
    return None, ""


def _is_attribution(line: str) -> bool:
    if not line or not _HAS_DATE_OR_ADDRESS.search(line):
        return False
    if line.startswith("*"):
        return bool(_MUTT.match(line)) or bool(_VERB.search(line))
    return bool(_VERB.search(line)) or (bool(_ENDS_IN_ADDRESS.search(line)) and any(c.isdigit() for c in line))


def _wrapped_attribution(line: str, below: str) -> bool:
    """An attribution a client wrapped onto two lines. The first must read as its start
    (a date or an address, or cut inside one), not as the end of the author's own sentence."""
    if not below or len(below) > LINE_SCAN or not below.endswith(":"):
        return False
    if line.endswith((".", "!", "?")) and "@" not in line and not _VERB.search(line):
        return False  # a sentence of the author's ("… 2026." is a date where an address or verb stands beside it)
    if not (any(c.isdigit() for c in line) or "@" in line or line.endswith(("<", "(", ",", "[", "&lt;"))):
        return False
    if any(c.isdigit() for c in below) and _is_attribution(below):
        return False  # the second line is a whole attribution, date and all: the first is the author's
    return _is_attribution(line[:LINE_SCAN] + " " + below)


def _is_separator(line: str) -> bool:
    dashed = _DASHED.match(line)
    if dashed:
        inner = dashed.group(1)
        return bool(_SEPARATOR_WORDS.search(inner)) or (bool(_VERB.search(inner)) and bool(_HAS_DATE_OR_ADDRESS.search(inner)))
    bare = line.rstrip(":： \t").strip()
    # A word matches letter by letter, case aside: only a line of a separator's length can be one.
    return line.endswith(":") and len(bare) in _SEPARATOR_LENGTHS and bool(_SEPARATOR_WORDS.fullmatch(bare))


def _field(line: str) -> str:
    """The header field name a line starts with ("from", "von", …), or ""."""
    colon = line.find(":", 0, _FIELD_NAME_LENGTH + 8)
    if colon < 0:
        colon = line.find("：", 0, _FIELD_NAME_LENGTH + 8)
        if colon < 0:
            return ""
    name = line[:colon].lstrip(" \t>").strip(" \t*_\u00a0\u202f").lower()
    return name if name in _FIELD_NAMES else ""


def _header_block_at(lines: list[str], i: int, last: int) -> bool:
    """Does a header block start at line i: different fields on consecutive lines (one blank
    or wrapped line allowed between), one of them the sender, naming an address, or else
    three or more with a date?"""
    names = []
    gap = 0
    address = False
    for j in range(i, min(last, i + 12)):
        name = _field(lines[j])
        if name:
            names.append(name)
            address = address or "@" in lines[j][:LINE_SCAN]
            gap = 0
        elif j == i:
            return False
        else:
            gap += 1
            if gap > 1:
                break
    fields = set(names)
    if not (_SENDER_FIELDS & fields) or len(fields) < 2:
        return False
    # Clients write at least sender, date, recipient and subject; a pair of fields without
    # an address ("From: our bank account / Sent: 20 November") is someone's own text.
    return address or (len(fields) >= 3 and bool(_DATE_FIELDS & fields))


def _rule_above(lines: list[str], i: int) -> int:
    """Outlook puts a line of underscores above its header block, Zimbra a separator
    ("----- Mail original -----"), maybe with a blank line between."""
    j = i - 1
    while j >= 0 and not lines[j].strip() and i - j <= 2:
        j -= 1
    return j if j >= 0 and (_RULE.match(lines[j].strip()) or _is_separator(lines[j].strip()[:LINE_SCAN])) else i


def _mark(line: str) -> str:
    """How a (stripped) line is quoted: ">" (also "CS>"), "|" (some mutt setups), or ""."""
    if line.startswith(">") or (line[:1].isalpha() and ">" in line[1:5] and _INITIALS.match(line)):
        return _QUOTED
    return "|" if line.startswith("|") else ""


def _quoted_below(lines: list[str], after: int, last: int) -> str:
    """How the history under an introduction is quoted ("" if not line by line). A "|"
    counts only here, under an introduction: elsewhere it is more likely a table."""
    for j in range(after, last):
        line = lines[j].strip()
        if line:
            return _mark(line)
    return ""


def _between_quotes(lines: list[str], start: int, last: int, mark: str) -> list[str]:
    """The author's lines after and between quotes marked `mark`, up to history quoted otherwise."""
    own: list[str] = []
    i = start
    while i < last:
        line = lines[i].strip()
        if line and _mark(line) == mark:
            i += 1
            continue
        found, kind = _history_start(lines, i, last, [i])
        if found is not None and kind != _QUOTED:
            if _quoted_below(lines, i + _kind_span(kind), last) == mark:
                i += _kind_span(kind)  # an introduction of the next ">" quote
                continue
            break
        own.append(lines[i])
        i += 1
    return own


def _tidy(lines: list[str]) -> str:
    """Without blank lines or a leftover rule at the end, nor blank lines at the start."""
    lines = [line.rstrip() for line in lines]
    while lines and (not lines[-1].strip() or _RULE.match(lines[-1].strip())
                     or _is_separator(lines[-1].strip()[:LINE_SCAN])):
        lines.pop()
    return "\n".join(lines).strip("\n").strip()
