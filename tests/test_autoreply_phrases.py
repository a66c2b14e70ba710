"""Subject-based auto-reply detection (mailbridge.policy.autoreply_phrases)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from mailbridge.policy.autoreply_phrases import (
    AUTO_REPLY_PHRASES,
    AUTO_REPLY_SUBJECT_PATTERNS,
    LANGUAGES,
    is_auto_reply_subject,
    patterns_per_language,
)

# (subject, expected phrase or None).  The expected phrase is the text as it
# appears in the subject, which is what the log reason shows.
POSITIVES: list[tuple[str, str]] = [
    # Hungarian
    ("Automatikus válasz: Számla kérés 2026/11", "Automatikus válasz"),
    ("AUTOMATIKUS VÁLASZ: [CRX-000001] Crossec Norma hiba", "AUTOMATIKUS VÁLASZ"),
    ("Automatikus valasz: Re: ajanlatkeres", "Automatikus valasz"),  # accents lost
    ("Automata válasz: ajánlatkérés", "Automata válasz"),
    ("Házon kívül: Crossec Norma licenc", "Házon kívül"),             # Outlook 2003 OOF
    ("Irodán kívül – november 28-ig", "Irodán kívül"),
    ("Szabadság 2026.11.24–28.", "Szabadság"),
    ("Szabadságon vagyok", "Szabadságon vagyok"),
    ("Jelenleg szabadságon vagyok november 30-ig", "Jelenleg szabadságon vagyok"),
    ("Távol vagyok", "Távol vagyok"),
    ("Házon kívül vagyok dec. 2-ig", "Házon kívül vagyok"),
    ("Távollét: hétfőig nem vagyok elérhető", "Távollét"),
    # English
    ("Automatic reply: [CRX-000003] Invoice question", "Automatic reply"),
    ("Out of Office AutoReply: GDPR templates", "Out of Office AutoReply"),
    ("Out of Office: Re: GDPR materials", "Out of Office"),
    ("Out of the office until Monday 30 November", "Out of the office"),
    ("Out of office", "Out of office"),
    ("OOO: back on 1 December", "OOO"),
    ("[Auto-Reply] Your message to sales", "Auto-Reply"),
    ("Auto reply: your enquiry", "Auto reply"),
    ("AutoReply: Consulting proposal", "AutoReply"),
    ("Autoresponse: We received your message", "Autoresponse"),
    ("Auto Response: ticket received", "Auto Response"),
    ("Auto: Re: Crossec Norma update", "Auto"),                     # Sieve vacation
    ("Away from the office - back 2 Dec", "Away from the office"),
    ("On vacation until 29 November", "On vacation"),
    ("Vacation reply: Invoice 2026-0412", "Vacation reply"),
    ("I am out of the office", "I am out of the office"),
    ("I'm on annual leave", "I'm on annual leave"),
    ("[rt.example.com #4711] AutoReply: Support request", "AutoReply"),  # foreign ticket tag
    # German
    ("Automatische Antwort: Rechnung 2026/118", "Automatische Antwort"),
    ("Abwesenheitsnotiz: Anfrage Crossec Norma", "Abwesenheitsnotiz"),
    ("Automatische Rückantwort: Ihre Anfrage", "Automatische Rückantwort"),
    ("Abwesend bis 30.11.2026", "Abwesend"),
    ("Urlaub vom 23.11. bis 27.11.", "Urlaub"),
    ("Ich bin nicht im Büro", "Ich bin nicht im Büro"),
    # French (Outlook puts a narrow no-break space before the colon)
    ("Réponse automatique\u202f: Demande de devis", "Réponse automatique"),
    ("Réponse automatique : Facture", "Réponse automatique"),
    ("Absence du bureau : votre message", "Absence du bureau"),
    ("Absent jusqu'au 30 novembre", "Absent"),
    # Spanish
    ("Respuesta automática: Consulta sobre GDPR", "Respuesta automática"),
    ("Fuera de la oficina hasta el lunes", "Fuera de la oficina"),
    # Italian
    ("Risposta automatica: Richiesta informazioni", "Risposta automatica"),
    ("Fuori ufficio: rientro il 30/11", "Fuori ufficio"),
    # Portuguese
    ("Resposta automática: Pedido de orçamento", "Resposta automática"),
    ("Fora do escritório até 27/11", "Fora do escritório"),
    # Dutch
    ("Automatisch antwoord: Offerteaanvraag", "Automatisch antwoord"),
    ("Afwezig: uw bericht", "Afwezig"),                                # Exchange 2003 OOF
    ("Afwezig tot 30 november", "Afwezig"),
    # Polish
    ("Odpowiedź automatyczna: Zapytanie ofertowe", "Odpowiedź automatyczna"),
    ("Poza biurem do 28.11", "Poza biurem"),
    # Czech
    ("Automatická odpověď: Dotaz na fakturu", "Automatická odpověď"),
    ("Mimo kancelář: vaše zpráva", "Mimo kancelář"),
    # Slovak
    ("Automatická odpoveď: Otázka k licencii", "Automatická odpoveď"),
    ("Mimo kancelárie do 30.11.", "Mimo kancelárie"),
    # Romanian (comma-below and legacy cedilla forms)
    ("Răspuns automat: Cerere de ofertă", "Răspuns automat"),
    ("Absent de la birou: mesajul dvs.", "Absent de la birou"),
    # Croatian
    ("Automatski odgovor: Upit za ponudu", "Automatski odgovor"),
    ("Izvan ureda do 30.11.", "Izvan ureda"),
    # Slovenian
    ("Samodejni odgovor: Povpraševanje", "Samodejni odgovor"),
    ("Odsoten: vaše sporočilo", "Odsoten"),
    # Serbian (Latin)
    ("Automatski odgovor: Zahtev za ponudu", "Automatski odgovor"),
    ("Van kancelarije do 1.12.", "Van kancelarije"),
    # Swedish
    ("Automatiskt svar: Offertförfrågan", "Automatiskt svar"),
    ("Frånvarande till 30 november", "Frånvarande"),
    # Danish
    ("Automatisk svar: Tilbudsforespørgsel", "Automatisk svar"),
    ("Ikke på kontoret: din besked", "Ikke på kontoret"),
    # Norwegian
    ("Automatisk svar: Forespørsel om tilbud", "Automatisk svar"),
    ("Fraværende til 30. november", "Fraværende"),
    # Finnish
    ("Automaattinen vastaus: Tarjouspyyntö", "Automaattinen vastaus"),
    ("Poissa toimistolta: viestisi", "Poissa toimistolta"),
    # Whitespace and normalisation
    ("   Automatikus válasz: behúzott tárgy", "Automatikus válasz"),
    (unicodedata.normalize("NFD", "Automatikus válasz: NFD ékezetek"), "Automatikus válasz"),
    ("Automatic reply:\r\n Re: folded header", "Automatic reply"),
]

# Subjects a person may well write.  These must become tickets.
NEGATIVES: list[str] = [
    # Hungarian
    "Kérdés a házon kívüli munkavégzésről",
    "Számla automatikus küldése",
    "Automatikus válasz beállítása a Crossec Normában",
    "Házon kívüli hozzáférés a Crossec Normához",
    "Irodán kívüli munkavégzés és GDPR",
    "Szabadság nyilvántartás adatkezelése",
    "Szabadságolási szabályzat minta kellene",
    "Re: Automatikus válasz: Számla kérés",       # a person replying to an OOO
    "Vá: [crx-2] Távollét miatti késedelem",
    "Autó: céges flotta adatkezelése",
    "Automatikusan generált számla hibás",
    "Távol-keleti partner adatainak kezelése",
    # English
    "Re: [CRX-000042] Out of office hours support?",
    "Out of office hours support",
    "Automatic reply not working in Crossec Norma",
    "Autoresponder setup for our support mailbox",
    "Out of the box integration question",
    "Vacation policy template for GDPR materials",
    "On vacation mode setting in Norma?",
    "Absent from the monthly export",
    "Away from home working and GDPR",
    "Auto renewal of Crossec Norma licence",
    "Fwd: Automatic reply: Invoice 2026-0412",
    "[CRX-000042] Out of office",                 # our own tag, written by a person
    "Question about automatic replies",
    "OOOPS, wrong invoice attached",
    # Other languages: function words before a noun, not a date
    "Absence du champ TVA dans la facture",
    "Ausencia del campo NIF",
    "Abwesenheit von Mitarbeitern – Datenschutzfrage",
    "AW: Abwesenheitsnotiz: Angebot",
    "",
]

CASES = [pytest.param(s, e, id=f"pos-{i:02d}") for i, (s, e) in enumerate(POSITIVES)] + [
    pytest.param(s, None, id=f"neg-{i:02d}") for i, s in enumerate(NEGATIVES)
]


@pytest.mark.parametrize(("subject", "expected"), CASES)
def test_subject(subject: str, expected: str | None) -> None:
    assert is_auto_reply_subject(subject) == expected


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len(NEGATIVES) >= 15


def test_every_language_has_an_outlook_prefix_and_patterns() -> None:
    counts = patterns_per_language()
    assert set(counts) == set(LANGUAGES)
    assert all(n >= 1 for n in counts.values()), counts
    prefixed = {lang for p in AUTO_REPLY_PHRASES if p.kind == "prefix" for lang in p.langs}
    assert prefixed == set(LANGUAGES)


def test_patterns_are_compiled_case_insensitive_and_anchored() -> None:
    assert len(AUTO_REPLY_SUBJECT_PATTERNS) == len(AUTO_REPLY_PHRASES)
    for pattern in AUTO_REPLY_SUBJECT_PATTERNS:
        assert isinstance(pattern, re.Pattern)
        assert pattern.flags & re.IGNORECASE
        assert pattern.pattern.startswith("^")
        assert "phrase" in pattern.groupindex


# Outlook / Exchange's localised "Automatic reply:" prefix, the most common
# auto-reply subject of all, for every language the table covers.
OUTLOOK_PREFIXES = {
    "hu": "Automatikus válasz", "en": "Automatic reply", "de": "Automatische Antwort",
    "fr": "Réponse automatique", "es": "Respuesta automática", "it": "Risposta automatica",
    "pt": "Resposta automática", "nl": "Automatisch antwoord", "pl": "Odpowiedź automatyczna",
    "cs": "Automatická odpověď", "sk": "Automatická odpoveď", "ro": "Răspuns automat",
    "hr": "Automatski odgovor", "sl": "Samodejni odgovor", "sr": "Automatski odgovor",
    "sv": "Automatiskt svar", "da": "Automatisk svar", "no": "Automatisk svar",
    "fi": "Automaattinen vastaus",
}


@pytest.mark.parametrize("lang", sorted(OUTLOOK_PREFIXES))
def test_outlook_prefix(lang: str) -> None:
    prefix = OUTLOOK_PREFIXES[lang]
    assert is_auto_reply_subject(f"{prefix}: Re: [CRX-000007] Crossec Norma") == prefix
    # The prefix alone, without the colon, is ordinary text.
    assert is_auto_reply_subject(f"{prefix} Crossec Norma") is None


def _first_phrase(subject: str) -> str | None:
    """The table read one phrase at a time: what the fast path must agree with."""
    text = re.sub(r"[\r\n\t]+", " ", unicodedata.normalize("NFC", subject))
    for pattern in AUTO_REPLY_SUBJECT_PATTERNS:
        if m := pattern.match(text):
            return " ".join(m.group("phrase").split())
    return None


@pytest.mark.parametrize("opening", ["", "  ", "[", "( ", "[rt.example.com #4711] ", "[Ticket#1] (", "\t\r\n"])
def test_only_the_phrases_that_can_start_there_are_tried_and_the_first_still_wins(opening: str) -> None:
    subjects = [s for s, _ in POSITIVES] + NEGATIVES + [f"{p}:" for p in OUTLOOK_PREFIXES.values()]
    for subject in subjects:
        for variant in (opening + subject, opening + subject.upper(), opening + subject + "]"):
            assert is_auto_reply_subject(variant) == _first_phrase(variant), variant
