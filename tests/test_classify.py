"""Keyword classification (SPEC Intake 8; P4 categories, P5 areas): the Hungarian and English
defaults on the way customers really write, and the rules of the game."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.vocabulary import AREAS, CATEGORIES
from mailbridge.intake.parse import parse_mail
from mailbridge.policy.classify import DEFAULT_RULES, Classification, Rule, classify, fold, guess_language

# P4
GENERAL = "Általános kérdés"
BUG = "Hibabejelentés"
BILLING = "Számlázással kapcsolatos kérdés"
INQUIRY = "Érdeklődés"
OTHER = "Egyéb"
# P5
NORMA = "Crossec Norma"
GDPR = "GDPR Segédanyagok"
CONSULTING = "Üzleti tanácsadás"


CASES = [
    # --- Hibabejelentés --------------------------------------------------------------
    ("Nem tudok belépni a Normába", "", BUG, NORMA),
    ("Nem tudok belepni a Normaba", "", BUG, NORMA),  # phone keyboard, no accents
    ("NEM TUDOK BEJELENTKEZNI", "Tegnap óta a Crossec Norma nem enged be.", BUG, NORMA),
    ("Hibaüzenet a Norma indításakor", "", BUG, NORMA),
    ("A Norma nem indul el", "Frissítés óta fekete ablak, semmi más.", BUG, NORMA),
    ("Lefagy a program mentéskor", "", BUG, OTHER),
    ("Crossec Norma: export nem működik", "", BUG, NORMA),
    ("Crossec Norma – nem mukodik az export", "", BUG, NORMA),
    ("Lassú a rendszer", "A jelentések betöltése több mint egy percig tart.", BUG, OTHER),
    ("Adatbázis importálása", "Az importálás 87%-nál elakad.", BUG, OTHER),
    ("Norma crashes on startup", "", BUG, NORMA),
    ("Login problem", "I cannot log in to Crossec Norma since yesterday.", BUG, NORMA),
    ("Export button doesn't work", "Nothing happens when I click it.", BUG, OTHER),
    ("Elfelejtettem a jelszavam", "Nem tudok bejelentkezni a Norma felületére.", BUG, NORMA),
    ("GDPR segédanyagok – nem működik a letöltési link", "", BUG, GDPR),
    # --- Számlázással kapcsolatos kérdés ----------------------------------------------
    ("Számla módosítás kérése", "", BILLING, OTHER),
    ("Szamla modositas kerese", "", BILLING, OTHER),
    ("invoice #2024-113 incorrect", "", BILLING, OTHER),
    ("Díjbekérő", "Kérem küldjék el a díjbekérőt a következő negyedévre.", BILLING, OTHER),
    ("Kétszer terhelték a kártyámat", "A Norma előfizetés díját kétszer vonták le.", BILLING, NORMA),
    ("Számlát szeretnék kérni cégnévre", "", BILLING, OTHER),
    ("Számlázási cím változás", "", BILLING, OTHER),
    ("Proforma request", "Could you send a proforma for the annual licence?", BILLING, OTHER),
    ("Payment failed for my subscription", "", BILLING, OTHER),
    ("Refund request", "", BILLING, OTHER),
    ("Hiba a számlán", "", BILLING, OTHER),  # billing outranks bug: the ticket goes to billing
    ("Error when generating invoice in Norma", "", BILLING, NORMA),
    # --- Érdeklődés ---------------------------------------------------------------------
    ("Érdeklődnék az árakról", "", INQUIRY, OTHER),
    ("Erdeklodnek az arakrol", "", INQUIRY, OTHER),
    ("Mennyibe kerül a Norma éves licence?", "", INQUIRY, NORMA),
    ("Árajánlatkérés GDPR csomagra", "", INQUIRY, GDPR),
    ("Request for quote - GDPR templates", "", INQUIRY, GDPR),
    ("Interested in your consulting services", "", INQUIRY, CONSULTING),
    ("Demo időpont egyeztetés", "Szeretnénk egy bemutatót kérni a Normáról.", INQUIRY, NORMA),
    ("tanácsadási ajánlat", "", INQUIRY, CONSULTING),
    ("Stratégiai tanácsadás ajánlatkérés", "", INQUIRY, CONSULTING),
    ("Érdeklődés üzleti tanácsadás iránt", "Árajánlatot kérnénk egy kétnapos workshopra.", INQUIRY, CONSULTING),
    # --- Általános kérdés -----------------------------------------------------------------
    ("Kérdés az adatvédelmi szabályzat mintáról", "", GENERAL, GDPR),
    ("Question about the GDPR documentation", "", GENERAL, GDPR),
    ("How do I export a report from Norma?", "", GENERAL, NORMA),
    ("Hogyan tudom hozzáadni a kollégámat?", "", GENERAL, OTHER),
    ("Segítséget kérnék", "Hogyan lehet a Normában új felhasználót felvenni?", GENERAL, NORMA),
    ("GDPR sablonok", "Szeretném megkérdezni, hogy a sablonok frissültek-e.", GENERAL, GDPR),
    # --- area only, or neither -----------------------------------------------------------
    ("GDPR adatkezelési tájékoztató sablon", "", OTHER, GDPR),
    ("Adatvédelem", "", OTHER, GDPR),  # nominative "adatvédelem" is no "adatvédelm-"
    ("Adatvédelmi incidens bejelentése", "", OTHER, GDPR),
    ("Adatfeldolgozói szerződés minta", "", OTHER, GDPR),
    ("Üzleti tanácsadás", "Szeretnénk egy workshopot szervezni a vezetőségnek.", OTHER, CONSULTING),
    ("Tanácsadás időpont", "", OTHER, CONSULTING),
    ("Szerződés felmondása", "", OTHER, OTHER),
    ("Szia", "", OTHER, OTHER),
    ("Hello", "", OTHER, OTHER),
    ("", "", OTHER, OTHER),
    # --- false friends: a keyword's first letters are not the keyword ---------------------
    ("Hibátlanul működik, köszönöm", "", OTHER, OTHER),  # "hibátlan" = flawless
    ("Normál ügymenet", "A normatív támogatás igénylése.", OTHER, OTHER),  # no Crossec Norma
    ("Üzleti partnerünk ajánlása", "", OTHER, OTHER),  # "üzleti" alone is no consulting, "ajánlás" no offer
    ("Előadás anyaga", "Confidential. If you received this email in error, please delete it.", OTHER, OTHER),
    ("Normally it works", "", OTHER, OTHER),
]


@pytest.mark.parametrize("subject, body, category, area", CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_default_rules(subject, body, category, area):
    assert classify(subject, body) == Classification(category, area)


def test_the_table_is_big_and_uses_only_policy_names():
    assert len(CASES) >= 40
    assert {c[2] for c in CASES} == set(CATEGORIES)
    assert {c[3] for c in CASES} == set(AREAS)
    for rule in DEFAULT_RULES:
        assert rule.category in (None, *CATEGORIES) and rule.area in (None, *AREAS)
        assert all(k == k.strip() and fold(k) for k in rule.keywords), rule


@pytest.mark.parametrize(
    "subject",
    ["Számlázási kérdés", "SZÁMLÁZÁSI KÉRDÉS", "szamlazasi kerdes", "SzAmLaZaSi KeRdEs", "Számlázási kérdés"],
)
def test_accents_and_case_do_not_matter(subject):
    # the last one is decomposed (NFD): 'a' + COMBINING ACUTE ACCENT, as macOS sends it
    assert classify(subject, "") == Classification(BILLING, OTHER)


def test_keywords_are_folded_too():
    rules = (Rule(("ÉRTESÍTÉS",), category=GENERAL),)
    assert classify("ertesites nem jon", "", rules).category == GENERAL


def test_subject_beats_body():
    # rule order alone would say billing (its rule comes first); the subject says bug
    assert classify("Hibaüzenet a Normában", "A számlázó modul exportjánál jön elő.") == Classification(BUG, NORMA)
    assert classify("Számla", "A letöltés nem működik.").category == BILLING
    assert classify("Crossec Norma", "A GDPR sablonokról volna kérdésem.").area == NORMA
    # within one of them, the earlier rule wins
    assert classify("Hibás számla", "").category == BILLING


def test_category_and_area_are_found_independently():
    assert classify("Számla kérdés", "A Norma előfizetésünkről.") == Classification(BILLING, NORMA)
    assert classify("Crossec Norma", "Az export nem működik.") == Classification(BUG, NORMA)
    assert classify("Hiba", "") == Classification(BUG, OTHER)
    assert classify("GDPR", "") == Classification(OTHER, GDPR)


def test_other_when_nothing_matches():
    assert classify("Üdvözlet", "Szép napot kívánok!") == Classification(OTHER, OTHER)
    assert Classification() == Classification(OTHER, OTHER)


def test_only_the_first_lines_of_the_body_count():
    assert classify("Üdv", "x " * 800 + "számla").category == OTHER
    assert classify("Üdv", "számla " + "x " * 800).category == BILLING


def test_configured_rules_replace_the_defaults():
    rules = (
        Rule(("licenc", "license"), category=INQUIRY, area=NORMA),
        Rule(("sablon",), area=GDPR),
    )
    assert classify("Számla hiba", "", rules) == Classification(OTHER, OTHER)  # defaults are gone
    assert classify("Licenc hosszabbítás", "", rules) == Classification(INQUIRY, NORMA)
    assert classify("Sablon kérdés", "", rules) == Classification(OTHER, GDPR)
    assert classify("License and sablon", "", rules) == Classification(INQUIRY, NORMA)
    assert classify("Számla hiba", "") == Classification(BILLING, OTHER)  # the defaults still work


@pytest.mark.parametrize("keywords", [(), ("",), ("   ",), ("счёт",)])
def test_a_keyword_that_folds_to_nothing_never_matches(keywords):
    # an empty pattern would match every mail: a config mistake must not classify everything
    rules = (Rule(keywords, category=BUG), Rule(("számla",), category=BILLING))
    assert classify("Üdvözlet", "Szép napot!", rules) == Classification(OTHER, OTHER)
    assert classify("Számla", "", rules).category == BILLING


def test_a_neutral_rule_shadows_words_that_only_start_like_a_keyword():
    rules = (Rule(("hibátlan",)), Rule(("hiba",), category=BUG))
    assert classify("hibátlan", "", rules).category == OTHER
    assert classify("hibátlan, de van egy hiba", "", rules).category == BUG



def test_a_keyword_two_rules_share_belongs_to_the_first():
    rules = (Rule(("licenc",), category=INQUIRY), Rule(("licenc", "hiba"), category=BUG, area=NORMA))
    assert classify("Licenc hiba", "", rules) == Classification(INQUIRY, NORMA)


def test_a_keyword_may_end_in_signs_and_still_start_at_a_word():
    rules = (Rule(("c++",), category=BUG),)
    assert classify("Kérdés a C++ kódról", "", rules).category == BUG
    assert classify("abc++", "", rules).category == OTHER


def test_rules_without_any_keyword_classify_nothing():
    assert classify("Számla", "hiba", (Rule(("", " "), category=BUG),)) == Classification(OTHER, OTHER)



@pytest.mark.parametrize(
    "text, default, language",
    [
        ("Dear team, please help. Thanks!", "hu", "en"),
        ("Tisztelt Ügyfélszolgálat! A számla hibás, kérem javítsák.", "en", "hu"),
        ("THANK YOU", "hu", "en"),  # case does not matter
        ("Szia", "en", "en"),  # no known word: the default
        ("Szia", "hu", "hu"),
        # only whole words count: not "thanks" in "thanksgiving", "the" in "themes", "hi" in
        # "hiking" or in "hi_there" (an underscore joins words)
        ("thanksgiving themes hiking hi_there", "hu", "hu"),
        ("hi, hello", "hu", "en"),
        ("invoice: őű", "en", "hu"),  # ő and ű count for Hungarian
        ("the invoice, köszönöm ő", "hu", "hu"),  # two against two: the default
    ],
)
def test_guess_language(text, default, language):
    assert guess_language(text, default) == language


SAMPLES = Path(__file__).parent.parent / "mailbridge" / "demo" / "samples"


@pytest.mark.parametrize(
    "name, category, area",
    [  # as the demo README promises
        ("01-norma-hibabejelentes-pdf-png.eml", BUG, NORMA),
        ("02-szamla-iso-8859-2-qp.eml", BILLING, NORMA),
        ("03-gdpr-question-english-alternative.eml", GENERAL, GDPR),
        ("04-outlook-windows-1250.eml", GENERAL, NORMA),
        ("05-broken-charset-us-ascii-utf8.eml", BUG, GDPR),
        ("09-html-only-apple-mail-tanacsadas.eml", INQUIRY, CONSULTING),
        ("14-erdeklodes-cc-kollega.eml", INQUIRY, NORMA),
    ],
)
def test_demo_samples(name, category, area):
    mail = parse_mail((SAMPLES / name).read_bytes(), 10**7)
    assert classify(mail.subject, mail.new_text or mail.text) == Classification(category, area)
