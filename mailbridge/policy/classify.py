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


def _compile(rule: Rule) -> re.Pattern[str]:
    words = "|".join(re.escape(fold(k)) for k in rule.keywords)
    return re.compile(rf"(?<!\w)(?:{words})", re.IGNORECASE)


_compiled_cache: dict[tuple[Rule, ...], tuple[tuple[Rule, re.Pattern[str]], ...]] = {}


def classify(subject: str, body: str, rules: tuple[Rule, ...] = DEFAULT_RULES) -> Classification:
    compiled = _compiled_cache.get(rules)
    if compiled is None:
        compiled = _compiled_cache[rules] = tuple((r, _compile(r)) for r in rules)
    # The subject speaks first; the body's first lines decide what it leaves open.
    text = fold(subject) + "\n" + fold(body[:1500])
    category = area = None
    for rule, pattern in compiled:
        if (rule.category and category is None) or (rule.area and area is None):
            if pattern.search(text):
                category = category or rule.category
                area = area or rule.area
        if category and area:
            break
    return Classification(category or OTHER, area or OTHER)


_HUNGARIAN = re.compile(r"[őűŐŰ]|\b(?:és|hogy|nem|köszönöm|kérem|tisztelt|üdvözlettel|számla|hiba|szeretném|kérdés)\b", re.IGNORECASE)
_ENGLISH = re.compile(r"\b(?:the|and|please|thank|thanks|regards|dear|hello|hi|would|could|invoice|issue)\b", re.IGNORECASE)


def guess_language(text: str, default: str) -> str:
    """`hu` or `en` for the notices a ticket gets: whichever the mail reads more like."""
    hungarian = len(_HUNGARIAN.findall(text))
    english = len(_ENGLISH.findall(text))
    if english > hungarian:
        return "en"
    if hungarian > english:
        return "hu"
    return default
