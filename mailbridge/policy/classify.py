"""Category (P4) and area (P5) of an e-mail ticket from keyword rules. Pure.

Matching ignores case and accents ("szamla" finds "számla"), because
customers type on phones without Hungarian keyboards. The first rule that
sets a category wins it; likewise for the area; `Egyéb` otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

OTHER = "Egyéb"


@dataclass(frozen=True)
class Rule:
    keywords: tuple[str, ...]
    category: str | None = None
    area: str | None = None


@dataclass(frozen=True)
class Classification:
    category: str = OTHER
    area: str = OTHER


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(("számla", "számláz", "szamla", "invoice", "billing", "payment", "fizetés", "díjbekérő", "előfizetés díja", "refund", "visszatérítés"),
         category="Számlázással kapcsolatos kérdés"),
    Rule(("hiba", "hibás", "nem működik", "nem megy", "összeomlik", "hibaüzenet", "error", "bug", "crash", "not working", "broken", "fails", "exception"),
         category="Hibabejelentés"),
    Rule(("érdeklőd", "árajánlat", "ajánlat", "quote", "pricing", "price", "demo", "inquiry", "interested", "mennyibe kerül"),
         category="Érdeklődés"),
    Rule(("kérdés", "kérdésem", "question", "how do i", "how can i", "hogyan", "segítség", "help"),
         category="Általános kérdés"),
    Rule(("norma", "crossec norma"), area="Crossec Norma"),
    Rule(("gdpr", "adatvédelm", "adatkezel", "data protection", "privacy", "segédanyag"), area="GDPR Segédanyagok"),
    Rule(("tanácsadás", "tanacsadas", "consulting", "consultancy", "üzleti", "business advice", "workshop"),
         area="Üzleti tanácsadás"),
)


def fold(text: str) -> str:
    """Lower-case without accents: 'Számla' -> 'szamla' (letters outside Latin drop out,
    which keyword rules written in Latin letters never miss)."""
    return unicodedata.normalize("NFKD", text.casefold()).encode("ascii", "ignore").decode("ascii")


def _compile(rules: tuple[Rule, ...]) -> re.Pattern[str]:
    """One pattern for all rules, a named group each: the text is scanned once.
    `\b` first, so alternatives are only tried where a word starts."""
    groups = "|".join(
        f"(?P<r{i}>{'|'.join(re.escape(fold(k)) for k in rule.keywords)})" for i, rule in enumerate(rules)
    )
    return re.compile(rf"\b(?:{groups})")


_compiled_cache: dict[tuple[Rule, ...], re.Pattern[str]] = {}


def classify(subject: str, body: str, rules: tuple[Rule, ...] = DEFAULT_RULES) -> Classification:
    pattern = _compiled_cache.get(rules)
    if pattern is None:
        pattern = _compiled_cache[rules] = _compile(rules)
    # The subject speaks first; the body's first lines decide what it leaves open.
    text = fold(subject) + "\n" + fold(body[:1500])
    matched = {int(m.lastgroup[1:]) for m in pattern.finditer(text) if m.lastgroup}
    category = next((rules[i].category for i in sorted(matched) if rules[i].category), None)
    area = next((rules[i].area for i in sorted(matched) if rules[i].area), None)
    return Classification(category or OTHER, area or OTHER)


_HUNGARIAN_WORDS = frozenset("és hogy nem köszönöm kérem tisztelt üdvözlettel számla hiba szeretném kérdés".split())
_ENGLISH_WORDS = frozenset("the and please thank thanks regards dear hello hi would could invoice issue".split())
_WORD = re.compile(r"\w+")


def guess_language(text: str, default: str) -> str:
    """`hu` or `en` for the notices a ticket gets: whichever the mail reads more like."""
    words = _WORD.findall(text.lower())
    hungarian = sum(1 for w in words if w in _HUNGARIAN_WORDS) + text.count("ő") + text.count("ű")
    english = sum(1 for w in words if w in _ENGLISH_WORDS)
    if english > hungarian:
        return "en"
    if hungarian > english:
        return "hu"
    return default
