"""Recognise out-of-office / auto-reply mail by its Subject line.

Pure data + one function; no I/O.

Why a subject list at all
-------------------------
RFC 3834 (``Auto-Submitted: auto-replied``), ``X-Auto-Response-Suppress``,
``Precedence: auto_reply|bulk|junk`` and ``X-Autoreply`` are the reliable
signals and are checked elsewhere, first.  Many auto-responders still send
none of them (small hosting panels, Freemail, some Exchange/Outlook rules,
home-made "vacation" scripts), and then the subject is the only clue left.
Help desks such as Zammad, OTRS/Znuny, Request Tracker, FreeScout and
Mailman rely mainly on those headers; the subject table below is our own,
built from the subjects the common clients actually produce: above all
Outlook / Exchange's localised "Automatic reply:" prefix, the older Exchange
"Out of Office AutoReply:" family, and the free-text notices people type
into their vacation responders.

Matching rules (the false-positive policy)
------------------------------------------
Every pattern is anchored at the START of the subject (leading whitespace
allowed), is case-insensitive, and tolerates missing accents ("Automatikus
valasz", "Reponse automatique").  A phrase alone is never enough; what must
follow it depends on the kind of phrase:

``prefix``     "Automatic reply", "Automatikus válasz", "Auto-Reply", …
               Must be followed by a colon (``Automatic reply: …``,
               French ``Réponse automatique : …`` with a (narrow) no-break
               space), or be wrapped in brackets (``[Auto-Reply] …``).
               So "Automatic reply not working" and "Automatikus válasz
               beállítása a Normában" are NOT auto-replies.

``notice``     "Out of office", "Házon kívül", "Szabadság", "Abwesend", …
               Must be followed by a separator (``:``, ``|``, a spaced dash,
               an en/em dash, ``(``, ``[``, ``!``), the end of the subject, a
               digit (a date: "Szabadság 2026.11.24–28."), or a word meaning
               "until/from/today" in that language ("Out of office until
               Monday", "Urlaub bis 28.11.").  Or be wrapped in brackets.
               So "Out of office hours support", "Házon kívüli hozzáférés",
               "Szabadság nyilvántartás adatkezelése" are NOT auto-replies.

``statement``  First-person sentences: "Szabadságon vagyok", "I am out of
               the office", "Ich bin im Urlaub", …  These only need a word
               boundary after them; a human rarely opens a subject to a
               vendor's support desk with them.

Deliberate choices
------------------
* A reply prefix in front is NOT skipped: "Re: Automatikus válasz: …",
  "Vá: Out of office", "AW: Abwesenheitsnotiz" are treated as human mail.
  Responders put their own prefix first ("Automatic reply: Re: [CRX-…] …");
  a "Re:" in front means a person pressed Reply on an auto-reply — rare, and
  it must become a ticket rather than vanish (policy P6: nothing is dropped
  silently).  The header checks still catch a responder that answers its
  own auto-reply with RFC 3834 headers.
* One narrow exception to "start of subject": a foreign ticket system's tag
  containing ``#`` and digits may come first ("[rt.example.com #4711]
  AutoReply: …", "[Ticket#2026112010000012] Automatic reply: …").  People do
  not type such tags; ticket systems do.  Our own ``[CRX-000042]`` tag has no
  ``#`` and is therefore NOT skipped.
* Bare ambiguous words are notices, never prefixes of free text: "Absent",
  "Urlaub", "Ferie", "Vacation", "Szabadság" need a separator, a date or an
  "until" word after them.
* "Auto:" (the Sieve/Pigeonhole vacation default) needs the colon and no
  accent: "Autó: …" (Hungarian "car") does not match.
* ``is_auto_reply_subject`` NFC-normalises the subject before matching, so
  decomposed accents (NFD, as some Mac clients send) still match.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from re import _parser
from typing import NamedTuple

__all__ = [
    "AUTO_REPLY_SUBJECT_PATTERNS",
    "AUTO_REPLY_PHRASES",
    "LANGUAGES",
    "Phrase",
    "is_auto_reply_subject",
    "patterns_per_language",
]


class Phrase(NamedTuple):
    """One recognised phrase: the languages it belongs to, its kind, its regex."""

    langs: tuple[str, ...]
    kind: str  # "prefix" | "notice" | "statement"
    regex: str  # written with accents; accent-folding is added automatically
    until: str | None = None  # notice only: overrides the languages' "until" words


PREFIX, NOTICE, STATEMENT = "prefix", "notice", "statement"

#: Language codes covered, in the order they appear in the table.
LANGUAGES: tuple[str, ...] = (
    "hu", "en", "de", "fr", "es", "it", "pt", "nl", "pl", "cs", "sk",
    "ro", "hr", "sl", "sr", "sv", "da", "no", "fi",
)


def _p(langs: str, kind: str, regex: str, until: str | None = None) -> Phrase:
    return Phrase(tuple(langs.split(",")), kind, regex, until)


# Order matters only for the phrase reported: the more specific phrase of a
# language comes before the generic one ("Out of Office AutoReply" before
# "Out of office").  Regex fragments must not put accented letters inside
# [...] classes: the accent folding below rewrites each accented letter.
AUTO_REPLY_PHRASES: tuple[Phrase, ...] = (
    # --- Hungarian ------------------------------------------------------
    _p("hu", PREFIX, r"automatikus\s+válasz"),          # Outlook/Exchange
    _p("hu", PREFIX, r"automata\s+válasz"),
    _p("hu", PREFIX, r"automatikus\s+üzenet"),
    _p("hu", PREFIX, r"automatikus\s+távollét(?:i)?\s+(?:üzenet|értesítés|válasz)"),
    _p("hu", NOTICE, r"házon\s+kívül"),                 # Outlook 2003 OOF
    _p("hu", NOTICE, r"irodán\s+kívül"),
    _p("hu", NOTICE, r"távollét(?:i\s+(?:üzenet|értesítés))?"),
    _p("hu", NOTICE, r"szabadság(?:on)?"),
    _p("hu", STATEMENT, r"(?:jelenleg\s+)?(?:szabadságon|házon\s+kívül|irodán\s+kívül|távol)\s+vagyok"),
    _p("hu", STATEMENT, r"(?:jelenleg\s+)?nem\s+vagyok\s+(?:az\s+irodában|elérhető)"),
    # --- English --------------------------------------------------------
    _p("en", PREFIX, r"automatic\s+reply"),             # Outlook/Exchange
    _p("en", PREFIX, r"automated\s+reply"),
    _p("en", PREFIX, r"automatic\s+response"),
    _p("en", PREFIX, r"automated\s+response"),
    _p("en", PREFIX, r"auto[\s_-]?reply"),
    _p("en", PREFIX, r"auto[\s_-]?response"),
    _p("en", PREFIX, r"auto"),                           # Sieve vacation default
    _p("en", PREFIX, r"(?:vacation|holiday)\s+(?:auto[\s-]?)?(?:reply|response|responder)"),
    _p("en", NOTICE, r"out\s+of\s+(?:the\s+)?office\s+(?:auto[\s-]?)?(?:reply|response|notification|notice|message)"),
    _p("en", NOTICE, r"out\s+of\s+(?:the\s+)?office"),
    _p("en", NOTICE, r"ooo|ooto"),
    _p("en", NOTICE, r"away\s+from\s+(?:the\s+|my\s+)?(?:office|desk|e-?mail)"),
    _p("en", NOTICE, r"on\s+(?:annual\s+|parental\s+|maternity\s+|sick\s+)?leave"),
    _p("en", NOTICE, r"on\s+(?:vacation|holiday|holidays)"),
    _p("en", NOTICE, r"annual\s+leave"),
    _p("en", NOTICE, r"vacation"),
    # "Absent from the export" is human: only "until" words may follow.
    _p("en,fr,ro", NOTICE, r"absent", until=r"until|till|jusqu|până"),
    _p("en", STATEMENT, r"(?:i\s+am|i['’]m)\s+(?:currently\s+|now\s+)?(?:out\s+of\s+(?:the\s+)?office|away|on\s+(?:vacation|holiday|leave|annual\s+leave)|absent)"),
    _p("en", STATEMENT, r"auto[\s-]?response\s+for\s+your\s+message"),  # Mailman
    # --- German ---------------------------------------------------------
    _p("de", PREFIX, r"automatische\s+antwort"),        # Outlook/Exchange
    _p("de", PREFIX, r"automatische\s+rückantwort"),
    _p("de", PREFIX, r"automatische\s+abwesenheits(?:notiz|nachricht|meldung|antwort)"),
    _p("de", NOTICE, r"abwesenheitsnotiz"),              # Exchange 2003 OOF
    _p("de", NOTICE, r"abwesenheits(?:nachricht|meldung|benachrichtigung|info)"),
    _p("de", NOTICE, r"abwesenheit"),
    _p("de", NOTICE, r"abwesend"),
    _p("de", NOTICE, r"(?:im\s+)?urlaub"),
    _p("de", NOTICE, r"außer\s+haus|nicht\s+im\s+büro"),
    _p("de", STATEMENT, r"ich\s+bin\s+(?:derzeit\s+|zurzeit\s+|momentan\s+)?(?:nicht\s+im\s+büro|im\s+urlaub|abwesend|außer\s+haus)"),
    # --- French ---------------------------------------------------------
    _p("fr", PREFIX, r"réponse\s+automatique"),          # Outlook/Exchange
    _p("fr", NOTICE, r"absence\s+du\s+bureau"),          # Exchange 2003 OOF
    _p("fr", NOTICE, r"absente?\s+du\s+bureau"),
    _p("fr", NOTICE, r"(?:message|notification|avis)\s+d['’]\s?absence"),
    _p("fr", NOTICE, r"absente|absence"),
    _p("fr", NOTICE, r"en\s+congés?"),
    _p("fr", STATEMENT, r"je\s+suis\s+(?:actuellement\s+)?(?:absente?|en\s+congés?|en\s+vacances)"),
    # --- Spanish --------------------------------------------------------
    _p("es", PREFIX, r"respuesta\s+automática"),         # Outlook/Exchange
    _p("es", NOTICE, r"fuera\s+de\s+(?:la\s+)?oficina"),
    _p("es", NOTICE, r"ausente|ausencia"),
    _p("es", NOTICE, r"de\s+vacaciones"),
    _p("es", STATEMENT, r"estoy\s+(?:actualmente\s+)?(?:fuera\s+de\s+(?:la\s+)?oficina|de\s+vacaciones|ausente)"),
    # --- Italian --------------------------------------------------------
    _p("it", PREFIX, r"risposta\s+automatica"),          # Outlook/Exchange
    _p("it", NOTICE, r"fuori\s+(?:sede|ufficio)"),
    _p("it", NOTICE, r"assente|assenza"),
    _p("it", NOTICE, r"in\s+ferie"),
    _p("it,da,no", NOTICE, r"ferie"),
    _p("it", STATEMENT, r"sono\s+(?:attualmente\s+)?(?:fuori\s+(?:sede|ufficio)|in\s+ferie|assente)"),
    # --- Portuguese -----------------------------------------------------
    _p("pt", PREFIX, r"resposta\s+automática"),          # Outlook/Exchange
    _p("pt", NOTICE, r"fora\s+do\s+escritório"),
    _p("pt", NOTICE, r"ausência(?:\s+temporária)?"),
    _p("pt", NOTICE, r"(?:de|em)\s+férias"),
    _p("pt", STATEMENT, r"estou\s+(?:atualmente\s+)?(?:fora\s+do\s+escritório|de\s+férias|em\s+férias|ausente)"),
    # --- Dutch ----------------------------------------------------------
    _p("nl", PREFIX, r"automatisch\s+antwoord"),         # Outlook/Exchange
    _p("nl", NOTICE, r"afwezigheidsbericht|afwezigheidsmelding"),
    _p("nl", NOTICE, r"afwezig"),                         # Exchange 2003 OOF
    _p("nl", NOTICE, r"niet\s+(?:aanwezig|op\s+kantoor)"),
    _p("nl", NOTICE, r"met\s+vakantie"),
    _p("nl", STATEMENT, r"ik\s+ben\s+(?:momenteel\s+|nu\s+)?(?:afwezig|niet\s+(?:aanwezig|op\s+kantoor)|met\s+vakantie)"),
    # --- Polish ---------------------------------------------------------
    _p("pl", PREFIX, r"odpowiedź\s+automatyczna"),       # Outlook/Exchange
    _p("pl", PREFIX, r"automatyczna\s+odpowiedź"),
    _p("pl", NOTICE, r"poza\s+biurem"),
    _p("pl", NOTICE, r"nieobecność|nieobecn[ya]"),
    _p("pl", NOTICE, r"(?:na\s+)?urlopie|urlop"),
    _p("pl", STATEMENT, r"jestem\s+(?:obecnie\s+)?(?:poza\s+biurem|na\s+urlopie|nieobecn[ya])"),
    # --- Czech ----------------------------------------------------------
    _p("cs", PREFIX, r"automatická\s+odpověď"),          # Outlook/Exchange
    _p("cs", NOTICE, r"mimo\s+kancelář"),
    _p("cs", NOTICE, r"nepřítomnost|nepřítomen|nepřítomna"),
    _p("cs", NOTICE, r"(?:na\s+)?dovolené|dovolená"),
    _p("cs", STATEMENT, r"jsem\s+(?:nyní\s+|momentálně\s+)?(?:mimo\s+kancelář|na\s+dovolené|nepřítomen|nepřítomna)"),
    # --- Slovak ---------------------------------------------------------
    _p("sk", PREFIX, r"automatická\s+odpoveď"),          # Outlook/Exchange
    _p("sk", NOTICE, r"mimo\s+kancelárie"),
    _p("sk", NOTICE, r"neprítomnosť|neprítomný|neprítomná"),
    _p("sk", NOTICE, r"(?:na\s+)?dovolenke|dovolenka"),
    _p("sk", STATEMENT, r"som\s+(?:momentálne\s+|teraz\s+)?(?:mimo\s+kancelárie|na\s+dovolenke|neprítomný|neprítomná)"),
    # --- Romanian -------------------------------------------------------
    _p("ro", PREFIX, r"răspuns\s+automat"),              # Outlook/Exchange
    _p("ro", NOTICE, r"absent(?:ă)?\s+de\s+la\s+birou"),
    _p("ro", NOTICE, r"în\s+afara\s+biroului"),
    _p("ro", NOTICE, r"(?:în\s+)?concediu"),
    _p("ro", STATEMENT, r"sunt\s+(?:momentan\s+)?(?:în\s+concediu|în\s+afara\s+biroului|absent(?:ă)?)"),
    # --- Croatian / Serbian (Latin) --------------------------------------
    _p("hr,sr", PREFIX, r"automatski\s+odgovor"),        # Outlook/Exchange
    _p("hr", NOTICE, r"izvan\s+ureda"),
    _p("hr", NOTICE, r"odsutnost"),
    _p("hr,sr", NOTICE, r"odsutan|odsutna"),
    _p("hr,sr", NOTICE, r"(?:na\s+)?godišnjem\s+odmoru|godišnji\s+odmor"),
    _p("hr", STATEMENT, r"nisam\s+u\s+uredu"),
    _p("sr", NOTICE, r"van\s+kancelarije"),
    _p("sr", NOTICE, r"odsustvo"),
    _p("sr", STATEMENT, r"nisam\s+u\s+kancelariji"),
    # --- Slovenian ------------------------------------------------------
    _p("sl", PREFIX, r"samodejni\s+odgovor"),            # Outlook/Exchange
    _p("sl", NOTICE, r"izven\s+pisarne"),
    _p("sl", NOTICE, r"odsotnost|odsoten|odsotna"),
    _p("sl", NOTICE, r"(?:na\s+)?dopustu|dopust"),
    _p("sl", STATEMENT, r"(?:nisem\s+v\s+pisarni|sem\s+(?:na\s+dopustu|odsoten|odsotna))"),
    # --- Swedish --------------------------------------------------------
    _p("sv", PREFIX, r"automatiskt\s+svar"),             # Outlook/Exchange
    _p("sv,da,no", PREFIX, r"autosvar"),
    _p("sv", NOTICE, r"frånvaromeddelande"),
    _p("sv", NOTICE, r"frånvarande|frånvaro"),
    _p("sv", NOTICE, r"inte\s+på\s+kontoret"),
    _p("sv", NOTICE, r"(?:på\s+)?semester"),
    _p("sv", STATEMENT, r"jag\s+är\s+(?:inte\s+på\s+kontoret|på\s+semester|ledig|frånvarande)"),
    # --- Danish / Norwegian ---------------------------------------------
    _p("da,no", PREFIX, r"automatisk\s+svar"),           # Outlook/Exchange
    _p("da", NOTICE, r"fraværsmeddelelse"),
    _p("no", NOTICE, r"fraværsmelding"),
    _p("da,no", NOTICE, r"fraværende|fravær"),
    _p("da,no", NOTICE, r"ikke\s+på\s+kontoret"),
    _p("da,no", NOTICE, r"på\s+ferie"),
    _p("da,no", STATEMENT, r"jeg\s+er\s+(?:ikke\s+på\s+kontoret|på\s+ferie|fraværende)"),
    # --- Finnish --------------------------------------------------------
    _p("fi", PREFIX, r"automaattinen\s+vastaus"),        # Outlook/Exchange
    _p("fi", NOTICE, r"poissaoloviesti|lomaviesti"),
    _p("fi", NOTICE, r"poissa(?:\s+toimistolta|\s+toimistosta)?"),
    _p("fi", NOTICE, r"lomalla"),
    _p("fi", STATEMENT, r"olen\s+(?:lomalla|poissa(?:\s+toimistolta|\s+toimistosta)?)"),
)


# --- What may follow a "notice" besides a separator: "until/from/today" ----
# Month names, full or abbreviated ("Nov 24", "nov. 28-ig", "novemberben").
# English "May" is left out: it is also a verb ("Out of office may …").
_EN_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|june?|july?"
    r"|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_HU_MONTHS = (
    r"(?:jan|febr|márc|ápr|máj|jún|júl|aug|szept|okt|nov|dec)\w*\.?"
)

# Short function words ("from", "du", "od", …) only count before a number
# ("Urlop od 24.11."), so "Absence du champ TVA" or "Ausencia del campo"
# stay human.
_CONTINUATIONS: dict[str, str] = {
    "hu": _HU_MONTHS + r"|ma|holnaptól|hétfőig|péntekig",
    "en": _EN_MONTHS + r"|until|till|til|through|thru|from|returning|back|today",
    "de": r"bis|vom|ab|heute",
    "fr": r"jusqu|à\s+partir|aujourd|du\s+\d",
    "es": r"hasta|desde|hoy|del\s+\d",
    "it": r"fino|oggi|dal\s+\d",
    "pt": r"até|desde|hoje|de\s+\d",
    "nl": r"tot|t/m|vanaf|vandaag|van\s+\d",
    "pl": r"dziś|dzisiaj|do\s+\d|od\s+\d",
    "cs": r"dnes|do\s+\d|od\s+\d",
    "sk": r"dnes|do\s+\d|od\s+\d",
    "ro": r"până|azi|astăzi|din\s+\d|de\s+la\s+\d",
    "hr": r"danas|do\s+\d|od\s+\d",
    "sr": r"danas|do\s+\d|od\s+\d",
    "sl": r"danes|do\s+\d|od\s+\d",
    "sv": r"till|t\.o\.m|från|idag|i\s+dag",
    "da": r"til|t\.o\.m|fra|i\s+dag",
    "no": r"til|t\.o\.m|fra|i\s+dag",
    "fi": r"asti|alkaen|tänään",
}

# A ticket system's own tag in front ("[rt.example.com #4711] ",
# "[Ticket#2026112010000012] ").  Needs '#' and digits: people don't type it.
_FOREIGN_TICKET_TAG = r"(?:\[[^\]\n]{0,60}\#\s*\d+\]\s*)?"

# Accent folding: each accented letter in a fragment also accepts its bare
# form, so "válasz" matches "valasz".  Letters without a Unicode
# decomposition are mapped by hand.
_EXTRA_FOLDS = {
    "ł": "ł|l", "đ": "đ|d", "ø": "ø|o", "æ": "æ|ae", "ß": "ß|ss",
    "ș": "ș|ş|s", "ț": "ț|ţ|t", "ş": "ş|ș|s", "ţ": "ţ|ț|t",
}


def fold_accents(fragment: str) -> str:
    """A regex fragment that also matches the phrase typed without its accents."""
    out: list[str] = []
    for ch in fragment:
        if ch in _EXTRA_FOLDS:
            out.append("(?:" + _EXTRA_FOLDS[ch] + ")")
            continue
        base = unicodedata.normalize("NFD", ch)[0]
        if base != ch and base.isascii() and base.isalpha():
            out.append("[" + ch + base + "]")
        else:
            out.append(ch)
    return "".join(out)


# Separators that end a notice: colon or pipe; a dash or slash with a space
# before it (so "out-of-office-hours" does not count); an en/em dash; an
# opening bracket; "!"; or the end of the subject (an optional final ".").
_NOTICE_SEPARATOR = r"\s*[:|]|\s+[-/]|\s*[–—]|\s*[(\[]|\s*!|\s*\.?\s*$"


def _source(phrase: Phrase) -> str:
    frag = fold_accents(phrase.regex)
    head = r"^\s*" + _FOREIGN_TICKET_TAG + r"(?P<open>[\[(]\s*)?(?P<phrase>" + frag + ")"
    closed = r"\s*[\])]"  # "[Auto-Reply] …", "(Out of office) …"
    if phrase.kind == PREFIX:
        tail = r"(?(open)" + closed + r"|\s*:)"
    elif phrase.kind == NOTICE:
        words = phrase.until or "|".join(_CONTINUATIONS[lang] for lang in phrase.langs)
        tail = (
            r"(?(open)" + closed + r"|(?:" + _NOTICE_SEPARATOR + r"|\s+\d"
            + r"|\s+(?:" + fold_accents(words) + r")(?![^\W\d_])))"
        )
    elif phrase.kind == STATEMENT:
        tail = r"(?(open)" + closed + r"|(?!\w))"
    else:  # pragma: no cover - table typo
        raise ValueError(f"unknown phrase kind {phrase.kind!r}")
    return head + tail


_SOURCES: tuple[str, ...] = tuple(_source(p) for p in AUTO_REPLY_PHRASES)
AUTO_REPLY_SUBJECT_PATTERNS: tuple[re.Pattern[str], ...]  # compiled on first use, see __getattr__


def __getattr__(name: str) -> object:
    # One compiled, case-insensitive, start-anchored pattern per phrase, in table order,
    # group ``phrase`` holding the phrase as written: for the tests and the curious.
    # Compiled on first use: matching uses the alternations below, and every parse
    # worker imports this module (these and their one alternation took 70-85 ms of its start).
    if name == "AUTO_REPLY_SUBJECT_PATTERNS":
        patterns = tuple(re.compile(source, re.IGNORECASE) for source in _SOURCES)
        globals()[name] = patterns
        return patterns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _numbered(index: int) -> str:
    return (_SOURCES[index].replace("(?P<open>", f"(?P<open{index}>").replace("(?(open)", f"(?(open{index})")
            .replace("(?P<phrase>", f"(?P<phrase{index}>"))


# The parts of `_source`'s head that say where a phrase may start.
_TAG = re.compile(r"\s*" + _FOREIGN_TICKET_TAG)
_OPEN = re.compile(r"[\[(]\s*")


def _first_chars(items: list) -> tuple[frozenset[str] | None, bool]:  # type: ignore[type-arg]
    """The characters a parsed regex can start with (None: any), and whether it can match
    nothing. Only what the phrase table uses is read; anything else counts as any."""
    first: set[str] = set()
    for op, av in items:
        if op is _parser.LITERAL:
            return frozenset(first | {chr(av)}), False
        if op is _parser.IN and all(o is _parser.LITERAL for o, _ in av):
            return frozenset(first | {chr(c) for _, c in av}), False
        if op is _parser.SUBPATTERN:
            chars, empty = _first_chars(av[3])
        elif op is _parser.BRANCH:
            found = [_first_chars(list(branch)) for branch in av[1]]
            if any(chars is None for chars, _ in found):
                return None, False
            chars = frozenset().union(*(chars for chars, _ in found))  # type: ignore[misc]
            empty = any(e for _, e in found)
        elif op in (_parser.MAX_REPEAT, _parser.MIN_REPEAT):
            chars, empty = _first_chars(list(av[2]))
            empty = empty or av[0] == 0
        else:
            return None, False
        if chars is None:
            return None, False
        first |= chars
        if not empty:
            return frozenset(first), False
    return frozenset(first), True


@functools.cache
def _starters() -> tuple[tuple[int, re.Pattern[str] | None], ...]:
    """Per phrase, a case-insensitive test of the character it can start with (None: any)."""
    out = []
    for index, phrase in enumerate(AUTO_REPLY_PHRASES):
        chars, empty = _first_chars(list(_parser.parse(fold_accents(phrase.regex), re.IGNORECASE)))
        test = None if chars is None or empty or any(c.isspace() for c in chars) else _starter(chars)
        out.append((index, test))
    return tuple(out)


@functools.cache
def _starter(chars: frozenset[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(c) for c in sorted(chars)), re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _phrases_starting(char: str) -> frozenset[int]:
    return frozenset(index for index, test in _starters() if test is None or test.match(char))


@functools.lru_cache(maxsize=256)
def _alternation(indexes: frozenset[int]) -> re.Pattern[str]:
    # The phrases that can start with one character, in table order: alternation keeps
    # "first wins", and the others could not match there anyway. As few patterns as the
    # table has kinds of first letter (about 20), whatever the subjects.
    return re.compile("|".join(f"(?:{_numbered(i)})" for i in sorted(indexes)) or "(?!)", re.IGNORECASE)


def _start_chars(text: str) -> set[str]:
    """The characters at the places `_source`'s head lets a phrase start in this subject:
    after blanks, a foreign ticket system's tag and an opening bracket (each optional)."""
    starts = []
    for head in (_TAG.match(text), re.match(r"\s*", text)):
        if head is not None:
            starts.append(head.end())
            opened = _OPEN.match(text, head.end())
            if opened is not None:
                starts.append(opened.end())
    return {text[i:i + 1] for i in starts}  # "" at the end: only a phrase that may be empty


def is_auto_reply_subject(subject: str) -> str | None:
    """Return the auto-reply phrase that opens ``subject``, or ``None``.

    The returned text is the phrase as written in the subject (e.g.
    ``"Automatikus válasz"``), meant for a log reason.  ``None``/empty
    subjects return ``None``.
    """
    if not subject:
        return None
    text = unicodedata.normalize("NFC", subject)
    # Folded header lines may leave CR/LF/TAB runs; treat them as spaces.
    text = re.sub(r"[\r\n\t]+", " ", text)
    # Only the phrases that can start at one of the few places a phrase may start are tried
    # (one alternation of all 122 cost 30 µs a subject); the first in the table wins.
    found = [m for char in _start_chars(text) if (m := _alternation(_phrases_starting(char)).match(text))]
    if not found:
        return None
    m = min(found, key=_phrase_index)
    return " ".join(m.group(m.lastgroup).split())  # type: ignore[arg-type]


def _phrase_index(m: re.Match[str]) -> int:
    # An alternative's groups are open<i> then phrase<i>: the one that closed last is its phrase.
    return int(m.lastgroup[len("phrase"):])  # type: ignore[index]


def patterns_per_language() -> dict[str, int]:
    """How many phrases (patterns) the table has for each language."""
    counts = dict.fromkeys(LANGUAGES, 0)
    for phrase in AUTO_REPLY_PHRASES:
        for lang in phrase.langs:
            counts[lang] += 1
    return counts
