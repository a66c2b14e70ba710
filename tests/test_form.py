"""Web form mail (SPEC Intake 7, P1): tests/forms/*.eml samples and small inline cases. Pure, no servers."""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailbridge.config import FormSettings
from mailbridge.intake.form import REQUIRED, FormSubmission, read_form
from mailbridge.intake.parse import parse_mail
from mailbridge.mail import Address, ParsedMail
from mailbridge.policy.commands import match_area, match_category

FORMS = Path(__file__).parent / "forms"
DEMO_WEBFORM = Path(__file__).parent.parent / "mailbridge" / "demo" / "samples" / "08-webform-wordpress.eml"
LABELS = FormSettings().labels
LIMIT = 10 * 1024 * 1024


def read_sample(name: str) -> tuple[ParsedMail, FormSubmission]:
    mail = parse_mail((FORMS / name).read_bytes(), LIMIT)
    return mail, read_form(mail, LABELS)


# name -> expected: reporter, category, area, subject, description (start, end), missing, unknown, other fields
SAMPLES = {
    "01-cf7-plain.eml": dict(
        reporter=Address("szoke.ors@example.hu", "Szőke Örs"),
        category="Hibabejelentés", area="Crossec Norma",
        subject="Nem nyílik meg a Norma kérdőív – „Hiba történt” üzenet",
        description=("Jó napot kívánok!\n\nTegnap délután óta", "Üdvözlettel:\nSzőke Örs\nFűtőmű Zrt."),
        missing=(), unknown=(),
        fields={"last_name": "Szőke", "first_name": "Örs", "email": "Szoke.Ors@Example.hu",
                "category": "Hibabejelentés", "area": "Crossec Norma"},
    ),
    "02-wpforms-html-table.eml": dict(
        reporter=Address("zsofia.kovacs-feher@example.com", "Kovács-Fehér Zsófia Réka"),
        category="Érdeklődés", area="Üzleti tanácsadás",
        subject="Árajánlat kérése: ISO 27001 & NIS2 felkészítés – 2027 első negyedév",
        description=("Tisztelt Hölgyem/Uram!\n\nCégünk (Győri Kötőelem Kft., 48 fő) jövőre", "tanácsadásra.\n\nKöszönöm előre is!"),
        missing=(), unknown=(),
        fields={"last_name": "Kovács-Fehér", "first_name": "Zsófia Réka", "area": "Üzleti tanácsadás"},
    ),
    "03-elementor-multipart.eml": dict(
        reporter=Address("toth.agnes@example.hu", "Tóth Ágnes"),
        category="Általános kérdés", area="GDPR Segédanyagok",
        subject="Melyik adatkezelési tájékoztató minta való óvodának?",
        description=("Jó napot!\nA GDPR Segédanyagok csomagban", "magánóvodánál?\n\nKöszönöm: Tóth Ágnes"),
        missing=(), unknown=(),
        fields={"first_name": "Ágnes"},
    ),
    "04-cf7-attached-pdf.eml": dict(
        reporter=Address("szucs.benedek@example.hu", "Szűcs Benedek"),
        category="Számlázással kapcsolatos kérdés", area="Crossec Norma",
        subject="Hibás adószám szerepel a számlán",
        description=("A csatolt számlán (CS-2026/00512)", "helyesbített számla kiállítását."),
        missing=(), unknown=(),
        fields={"attachment": "számla_CS-2026-00512.pdf"},
    ),
    "05-missing-fields.eml": dict(
        reporter=Address("lorincz.gyongyi@example.hu", "Lőrincz"),
        category="Érdeklődés", area="Egyéb",
        subject="",
        description=("Érdeklődnék, hogy", "Debrecenben is."),
        missing=("first_name", "subject"), unknown=(),
        fields={"subject": ""},
    ),
    "06-gravity-unknown-category.eml": dict(
        reporter=Address("pasztor.gyozo@example.hu", "Pásztor Győző"),
        category=None, area="Üzleti tanácsadás",
        subject="Elmaradt a múlt heti tanácsadási alkalom",
        description=("November 17-re (kedd, 10:00)", "értesítést.\nKérem, jelezzék, mikor pótolják az alkalmat."),
        missing=(), unknown=("Kapcsolatfelvétel célja: Panasz",),
        fields={"category": "Panasz"},
    ),
    "07-english-aliases.eml": dict(
        reporter=Address("marton.fekete-gyori@example.com", "Fekete-Győri Márton"),
        category="Számlázással kapcsolatos kérdés", area="GDPR Segédanyagok",
        subject="Díjbekérő helyett végleges számlát kérünk",
        description=("Hello,\nwe paid the pro-forma invoice", "Köszönöm / Thank you,\nMárton"),
        missing=(), unknown=(),
        fields={"category": "Billing question", "area": "GDPR materials"},
    ),
    "08-form-email-differs.eml": dict(
        reporter=Address("szamla@könyvelő-iroda.hu", "Bárány Dóra"),  # the form's field, not Reply-To
        category="Számlázással kapcsolatos kérdés", area="Crossec Norma",
        subject="Számlacím módosítása – új székhely",
        description=("Cégünk székhelye 2026. december 1-jétől: 9022 Győr", "a fenti e-mail címen."),
        missing=(), unknown=(),
        fields={"attachment": "cégkivonat_2026.pdf", "email": "Szamla@Könyvelő-Iroda.hu"},
    ),
    "09-odd-labels.eml": dict(
        reporter=Address("voros.ildiko@example.hu", "Vörös Ildikó"),
        category="Hibabejelentés", area="GDPR Segédanyagok",
        subject="A letöltött adatvédelmi szabályzat-sablon üres oldalakat tartalmaz",
        description=("A „Szabályzat_sablon_2026.docx” fájl 3–7. oldala üres", "Üdv.: Vörös Ildikó – Fővárosi Fürdőigazgatóság"),
        missing=(), unknown=(),
        fields={"last_name": "Vörös", "first_name": "Ildikó", "category": "hibabejelentes", "area": "GDPR segédanyagok"},
    ),
    "10-wpforms-plain.eml": dict(
        reporter=Address("hegedus.tunde@example.hu", "Hegedűs Tünde"),
        category="Egyéb", area="Egyéb",
        subject="Együttműködési ajánlat – szakmai nap előadói felkérés",
        description=("Kedves Crossec Csapat!\n\nA Szegedi Egyetem", "+36 30 123 4567.\n\nÜdvözlettel: Hegedűs Tünde"),
        missing=(), unknown=(),
        fields={"attachment": ""},  # WPForms' "(Üres)" placeholder
    ),
}


def test_every_sample_has_expectations() -> None:
    assert sorted(p.name for p in FORMS.glob("*.eml")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample(name: str) -> None:
    expected = SAMPLES[name]
    mail, form = read_sample(name)
    assert mail.sender.email == "wordpress@crossec.com"
    assert form.reporter == expected["reporter"]
    assert form.category == expected["category"]
    assert form.area == expected["area"]
    assert form.subject == expected["subject"]
    start, end = expected["description"]
    assert form.description.startswith(start) and form.description.endswith(end), form.description
    assert form.fields.get("description", "") == form.description
    assert form.missing == expected["missing"]
    assert form.unknown_values == expected["unknown"]
    assert form.incomplete == bool(expected["missing"] or expected["unknown"])
    for field, value in expected["fields"].items():
        assert form.fields[field] == value, field
    # no footer, metadata or preamble leaks into a value
    for value in form.fields.values():
        for leak in ("weboldal kapcsolatfelvételi", "contact form on", "Elementor", "WPForms", "Gravity", "Küldve",
                     "Távoli IP", "Új üzenet érkezett"):
            assert leak not in value


def test_samples_cover_the_layouts() -> None:
    types = {name: read_sample(name)[0] for name in SAMPLES}
    assert types["01-cf7-plain.eml"].content_type == "text/plain"
    assert types["02-wpforms-html-table.eml"].content_type == "text/html"  # HTML only
    assert types["03-elementor-multipart.eml"].content_type == "multipart/alternative"
    pdf = types["04-cf7-attached-pdf.eml"].attachments
    assert [(p.filename, p.content_type) for p in pdf] == [("számla_CS-2026-00512.pdf", "application/pdf")]
    assert pdf[0].data.startswith(b"%PDF")
    differs = types["08-form-email-differs.eml"]
    assert differs.reply_to is not None and differs.reply_to.email == "barany.dora.magan@example.net"


def test_elementor_text_and_html_parts_agree() -> None:
    mail, both = read_sample("03-elementor-multipart.eml")
    html_only = read_form(dataclasses.replace(mail, text=""), LABELS)
    text_only = read_form(dataclasses.replace(mail, html=""), LABELS)
    assert html_only == text_only == both


def test_demo_webform_sample() -> None:
    mail = parse_mail(DEMO_WEBFORM.read_bytes(), LIMIT)
    form = read_form(mail, LABELS)
    assert form.reporter == Address("balogh.eszter@example.hu", "Balogh Eszter")
    assert (form.category, form.area) == ("Számlázással kapcsolatos kérdés", "GDPR Segédanyagok")
    assert form.subject == "Kétszer terhelték a bankkártyánkat az éves díjjal"
    assert form.description.startswith("Tisztelt Crossec Csapat!\n\nNovember 18-án")
    assert form.description.endswith("Balogh Eszter\nNapfény Óvoda Alapítvány")
    assert not form.incomplete


# --------------------------------------------------------------------------- inline cases

FULL = """Vezetéknév: Kiss
Keresztnév: Anna
E-mail: kiss.anna@example.hu
Kapcsolatfelvétel célja: Hibabejelentés
Érintett termék vagy szolgáltatás: Crossec Norma
Probléma rövid leírása: Nem indul
Részletes leírás: Nem indul a program.
"""


def make(text: str | None = None, html: str | None = None, reply_to: str | None = "Kiss Anna <anna.magan@example.net>") -> ParsedMail:
    message = EmailMessage()
    message["From"] = "WordPress <wordpress@crossec.com>"
    message["To"] = "support@crossec.com"
    message["Subject"] = "Új üzenet a kapcsolatfelvételi űrlapról"
    message["Message-ID"] = "<form.test@crossec.com>"
    if reply_to:
        message["Reply-To"] = reply_to
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return parse_mail(message.as_bytes(), LIMIT)


def form_of(text: str | None = None, html: str | None = None, **kwargs) -> FormSubmission:  # type: ignore[no-untyped-def]
    return read_form(make(text, html, **kwargs), LABELS)


def test_full_plain_form() -> None:
    form = form_of(FULL)
    assert form.fields == {
        "last_name": "Kiss", "first_name": "Anna", "email": "kiss.anna@example.hu", "category": "Hibabejelentés",
        "area": "Crossec Norma", "subject": "Nem indul", "description": "Nem indul a program.",
    }
    assert form.reporter == Address("kiss.anna@example.hu", "Kiss Anna")
    assert not form.missing and not form.unknown_values and not form.incomplete


@pytest.mark.parametrize(
    "line, field, value",
    [
        ("Vezetéknév: Kiss", "last_name", "Kiss"),
        ("VEZETÉKNÉV: Kiss", "last_name", "Kiss"),
        ("vezeteknev: Kiss", "last_name", "Kiss"),  # typed without accents
        ("Vezetéknév*: Kiss", "last_name", "Kiss"),
        ("Vezetéknév *:   Kiss  ", "last_name", "Kiss"),
        ("**Vezetéknév:** Kiss", "last_name", "Kiss"),
        ("**Vezetéknév**: Kiss", "last_name", "Kiss"),
        ("  Kapcsolatfelvétel    célja : Egyéb", "category", "Egyéb"),
        ("E - mail: kiss@example.hu", "email", "kiss@example.hu"),
        ("E-mail：kiss@example.hu", "email", "kiss@example.hu"),  # full-width colon
        ("Probléma rövid leírása: Hiba: nem indul, 10:42 óta", "subject", "Hiba: nem indul, 10:42 óta"),
    ],
)
def test_label_spellings(line: str, field: str, value: str) -> None:
    assert form_of(line + "\n").fields == {field: value}


def test_value_on_the_next_line() -> None:
    form = form_of("Vezetéknév:\nKiss\n\nKeresztnév:\n\n  Anna\nProbléma rövid leírása:\nHiba: nem indul\nRészletes leírás:\nsor 1\nsor 2\n")
    assert form.fields == {"last_name": "Kiss", "first_name": "Anna", "subject": "Hiba: nem indul",
                           "description": "sor 1\nsor 2"}


def test_description_spans_lines_and_keeps_colons_and_repeated_labels() -> None:
    form = form_of(FULL + "Fontos: a hibaüzenet 10:42-kor jött.\n\n\n\nE-mail: ezt is írtam a hibaüzenetbe\nÜdv.\n")
    assert form.description == (
        "Nem indul a program.\nFontos: a hibaüzenet 10:42-kor jött.\n\nE-mail: ezt is írtam a hibaüzenetbe\nÜdv."
    )
    assert form.reporter.email == "kiss.anna@example.hu"


def test_unconfigured_label_ends_a_single_line_field() -> None:
    text = FULL.replace("Kapcsolatfelvétel", "Telefonszám: +36 30 123 4567\nCégnév: Kiss és Társa Bt.\nKapcsolatfelvétel")
    form = form_of(text)
    assert form.fields["email"] == "kiss.anna@example.hu"
    assert form.reporter.email == "kiss.anna@example.hu"
    assert "Telefonszám" not in "".join(form.fields.values())


def test_preamble_and_footer_are_not_values() -> None:
    form = form_of("Feladó: WordPress <wordpress@crossec.com>\nÚj üzenet érkezett:\n\n" + FULL + "\n-- \nEz az e-mail az űrlapról jött.\n")
    assert form.description == "Nem indul a program."
    assert "Feladó" not in form.fields.values()


def test_separator_then_more_labels_still_read() -> None:
    form = form_of("Részletes leírás: szöveg\n---\nDátum: ma\nVezetéknév: Kiss\n")
    assert form.fields == {"description": "szöveg", "last_name": "Kiss"}


def test_missing_fields_in_form_order() -> None:
    form = form_of("Részletes leírás: csak ennyi\n", reply_to=None)
    assert form.missing == REQUIRED
    assert form.reporter == Address("")
    assert form.incomplete


def test_no_labels_at_all() -> None:
    form = form_of("Szia, ez nem űrlap.\n")
    assert form.fields == {}
    assert form.missing == REQUIRED
    assert (form.category, form.area, form.subject, form.description) == (None, None, "", "")


@pytest.mark.parametrize("value", ["nem tudom", "kiss.anna@", "kiss anna@example.hu", "@example.hu", "kiss@localhost"])
def test_an_email_that_is_no_address(value: str) -> None:
    form = form_of(FULL.replace("kiss.anna@example.hu", value))
    assert form.missing == ("email",)
    assert form.unknown_values == (f"E-mail: {value}",)
    assert form.incomplete
    # someone must still be answerable: the Reply-To stands in, the form's name stays
    assert form.reporter == Address("anna.magan@example.net", "Kiss Anna")


def test_an_email_that_is_no_address_and_no_reply_to() -> None:
    form = form_of(FULL.replace("kiss.anna@example.hu", "nem tudom"), reply_to=None)
    assert form.reporter == Address("", "Kiss Anna")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Kiss.Anna@Example.HU", "kiss.anna@example.hu"),
        ("mailto:kiss.anna@example.hu", "kiss.anna@example.hu"),
        ("Kiss Anna <kiss.anna@example.hu>", "kiss.anna@example.hu"),
        ("<kiss.anna@example.hu>", "kiss.anna@example.hu"),
        ("anna@kovács-kft.hu", "anna@kovács-kft.hu"),
    ],
)
def test_email_spellings(value: str, expected: str) -> None:
    form = form_of(FULL.replace("kiss.anna@example.hu", value))
    assert form.reporter.email == expected and not form.missing


def test_form_email_wins_over_reply_to_and_from() -> None:
    form = form_of(FULL, reply_to="Valaki <masik@example.net>")
    assert form.reporter == Address("kiss.anna@example.hu", "Kiss Anna")


@pytest.mark.parametrize(
    "category, area, expected",
    [
        ("Számlázással kapcsolatos kérdés", "GDPR Segédanyagok", ("Számlázással kapcsolatos kérdés", "GDPR Segédanyagok")),
        ("szamlazassal kapcsolatos kerdes", "gdpr segedanyagok", ("Számlázással kapcsolatos kérdés", "GDPR Segédanyagok")),
        ("Billing question", "GDPR materials", ("Számlázással kapcsolatos kérdés", "GDPR Segédanyagok")),
        ("General question", "Business consulting", ("Általános kérdés", "Üzleti tanácsadás")),
        ("Egyéb", "Egyéb", ("Egyéb", "Egyéb")),
    ],
)
def test_category_and_area_values(category: str, area: str, expected: tuple[str, str]) -> None:
    text = FULL.replace("Hibabejelentés", category).replace("Crossec Norma", area)
    form = form_of(text)
    assert (form.category, form.area) == expected
    assert not form.unknown_values


def test_unknown_category_and_area_values() -> None:
    form = form_of(FULL.replace("Hibabejelentés", "Panasz").replace("Crossec Norma", "Webshop"))
    assert (form.category, form.area) == (None, None)
    assert form.unknown_values == ("Kapcsolatfelvétel célja: Panasz", "Érintett termék vagy szolgáltatás: Webshop")
    assert form.missing == () and form.incomplete


def test_empty_placeholder_counts_as_empty() -> None:
    form = form_of(FULL.replace("Nem indul\n", "(Empty)\n"))
    assert form.subject == "" and form.missing == ("subject",)


def test_configured_labels() -> None:
    labels = {"Last name": "last_name", "First name": "first_name", "Email address": "email", "Topic": "category",
              "Product": "area", "Summary": "subject", "Message": "description", "Telefonszám": "phone"}
    text = ("Last name: Kiss\nFirst name: Anna\nEmail address: kiss.anna@example.hu\nTelefonszám: +36 1 234 5678\n"
            "Topic: Bug report\nProduct: Norma\nSummary: Crash\nMessage: It crashes.\n")
    form = read_form(make(text), labels)
    assert form.fields["phone"] == "+36 1 234 5678"
    assert (form.category, form.area, form.subject, form.description) == ("Hibabejelentés", "Crossec Norma", "Crash", "It crashes.")
    assert form.reporter == Address("kiss.anna@example.hu", "Kiss Anna")
    # the default Hungarian labels mean nothing under this mapping
    assert read_form(make(FULL), labels).fields == {}


# --------------------------------------------------------------------------- HTML layouts

ROWS = [
    ("Vezetéknév", "Kiss"), ("Keresztnév", "Anna"), ("E-mail", "kiss.anna@example.hu"),
    ("Kapcsolatfelvétel célja", "Hibabejelentés"), ("Érintett termék vagy szolgáltatás", "Crossec Norma"),
    ("Probléma rövid leírása", "Nem indul &amp; lefagy &#8211; sürgős"),
    ("Részletes leírás", "Első&nbsp;sor<br>Második sor<br/><br />Harmadik: sor"),
]
EXPECTED_HTML = {
    "last_name": "Kiss", "first_name": "Anna", "email": "kiss.anna@example.hu", "category": "Hibabejelentés",
    "area": "Crossec Norma", "subject": "Nem indul & lefagy – sürgős",
    "description": "Első sor\nMásodik sor\n\nHarmadik: sor",
}
HTML_LAYOUTS = {
    "td-strong-td": "<table>" + "".join(f"<tr><td><strong>{l}</strong></td><td>{v}</td></tr>" for l, v in ROWS) + "</table>",
    "th-td": "<table>" + "".join(f"<tr><th>{l}</th><td>{v}</td></tr>\n" for l, v in ROWS) + "</table>",
    "plain-td-td": "<table>" + "".join(f"<tr><td>{l}:</td><td>{v}</td></tr>" for l, v in ROWS) + "</table>",
    "label-row-value-row": "<table>" + "".join(
        f"<tr><td colspan=2><b>{l}</b></td></tr><tr><td>&nbsp;</td><td>{v}</td></tr>" for l, v in ROWS) + "</table>",
    "unclosed-tags": "<table>" + "".join(f"<tr><td><b>{l}<td>{v}" for l, v in ROWS) + "</table>",
    "p-strong": "".join(f"<p><strong>{l}:</strong> {v}</p>\n" for l, v in ROWS),
    "strong-outside-colon": "".join(f"<p><b>{l}</b>: {v}</p>" for l, v in ROWS),
    "br-lines": "<div>" + "<br>".join(f"<strong>{l}*</strong><br>{v}<br>" for l, v in ROWS) + "</div>",
    "dl": "<dl>" + "".join(f"<dt>{l}</dt><dd>{v}</dd>" for l, v in ROWS) + "</dl>",
}


@pytest.mark.parametrize("layout", sorted(HTML_LAYOUTS))
def test_html_layouts(layout: str) -> None:
    html = ("<html><head><title>Vezetéknév: nem ez</title><style>td{color:red}</style></head><body>"
            "<h2>Új üzenet</h2>" + HTML_LAYOUTS[layout] + "<hr><p>Küldve a crossec.com oldalról</p></body></html>")
    form = form_of(html=html)
    assert form.fields == EXPECTED_HTML
    assert form.reporter == Address("kiss.anna@example.hu", "Kiss Anna")
    assert not form.incomplete


def test_html_row_ends_a_value_even_without_separator() -> None:
    html = ("<table><tr><td><table>"
            "<tr><td><strong>Részletes leírás</strong></td><td>A leírás.</td></tr>"
            "<tr><td><strong>Megjegyzés</strong></td><td>nem a leírás része</td></tr>"
            "</table></td></tr><tr><td>Lábléc: küldte a WPForms</td></tr></table>")
    assert form_of(html=html).fields == {"description": "A leírás."}


def test_html_used_when_the_text_part_has_no_labels() -> None:
    html = HTML_LAYOUTS["td-strong-td"]
    form = form_of("Az üzenet megtekintéséhez HTML-képes levelezőprogram szükséges.\n", html)
    assert form.fields == EXPECTED_HTML


def test_text_part_preferred_when_it_has_the_labels() -> None:
    form = form_of(FULL, "<p><strong>Vezetéknév:</strong> Másik</p>")
    assert form.fields["last_name"] == "Kiss"


def test_hostile_html_does_not_raise() -> None:
    form = form_of(html="<table><tr><td><strong>Vezetéknév</td></strong><td>Kiss<<>></td></tr><!-- <td>x</td> --><tr")
    assert form.fields["last_name"].startswith("Kiss")


# --------------------------------------------------------------------------- match_category / match_area


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Hibabejelentés", "Hibabejelentés"),
        ("HIBABEJELENTES", "Hibabejelentés"),
        ("  általános   kérdés ", "Általános kérdés"),
        ("Billing question", "Számlázással kapcsolatos kérdés"),
        ("enquiry", "Érdeklődés"),
        ("egyeb", "Egyéb"),
        ("Panasz", None),
        ("", None),
    ],
)
def test_match_category(value: str, expected: str | None) -> None:
    assert match_category(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Crossec Norma", "Crossec Norma"),
        ("norma", "Crossec Norma"),
        ("GDPR materials", "GDPR Segédanyagok"),
        ("gdpr segedanyagok", "GDPR Segédanyagok"),
        ("Üzleti Tanácsadás", "Üzleti tanácsadás"),
        ("Hibabejelentés", None),
        ("", None),
    ],
)
def test_match_area(value: str, expected: str | None) -> None:
    assert match_area(value) == expected
