"""Notification templates (P7, P8, P11, P12): every template, both languages.

Rendered exactly as the mailer renders them: the Environment below, the two
filters it registers (`date`, `filesize`; simple stand-ins here), and each
block called on its own with ``template.blocks[name](template.new_context(vars))``,
so a template may use only the variables its notification is given.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jinja2
import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LANGUAGES = ("hu", "en")
NAMES = (
    "ack",
    "agent_assigned",
    "agent_relay",
    "escalation",
    "outcome",
    "sla_warning",
    "command_failed",
    "attachment_rejected",
    "ticket_update",
)
CUSTOMER = {"ack", "agent_relay", "outcome", "attachment_rejected"}
WITH_HTML = {"ack", "outcome"}
# The desk's mails about many tickets (no subject tag, their own variables): tests/test_desk.py.
DESK_NAMES = ("agent_digest", "supervisor_report")
DESK_WITH_HTML = {"supervisor_report"}
# About an agent's mail, maybe on no ticket (their own variables): tested below.
AGENT_MAIL_NAMES = ("agent_refused",)
TAG = "[CRX-000042]"
BUDAPEST = timezone(timedelta(hours=2))

# ---------------------------------------------------------------------------
# The filters the mailer registers (test stand-ins)
# ---------------------------------------------------------------------------
HU_MONTHS = ("január", "február", "március", "április", "május", "június", "július",
             "augusztus", "szeptember", "október", "november", "december")
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July",
             "August", "September", "October", "November", "December")


@pass_context
def date_filter(context, value: datetime) -> str:
    """A datetime in the ticket's language; midnight reads as 24:00 of the day before."""
    time = f"{value:%H:%M}"
    if time == "00:00":
        value, time = value - timedelta(days=1), "24:00"
    if context["ticket"]["language"] == "hu":
        return f"{value.year}. {HU_MONTHS[value.month - 1]} {value.day}. {time}"
    return f"{value.day} {EN_MONTHS[value.month - 1]} {value.year}, {time}"


def filesize_filter(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def env() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=()),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["date"] = date_filter
    environment.filters["filesize"] = filesize_filter
    environment.filters["day"] = environment.filters["duration"] = str  # the desk's mails (test_desk.py)
    return environment


def render(env: Environment, name: str, lang: str, context: dict) -> dict[str, str]:
    template = env.get_template(f"{lang}/{name}.j2")
    return {
        block: "".join(template.blocks[block](template.new_context(context)))
        for block in ("subject", "text", "html")
        if block in template.blocks
    }


# ---------------------------------------------------------------------------
# Sample contexts: only the variables the contract gives each notification
# ---------------------------------------------------------------------------
SAMPLE_TEXT = {
    "hu": {
        "subject": "Nem indul a Crossec Norma frissítés után",
        "reporter": "Kovács József",
        "customer_text": (
            "Jó napot!\n\nA tegnapi frissítés óta a Crossec Norma indításkor hibaüzenettel leáll.\n"
            "Csatoltam a képernyőképet.\n\nKöszönöm,\nKovács József"
        ),
        "agent_text": "A hibát reprodukáltuk, a javítást a következő kiadás tartalmazza.",
        "note": "Adatbázis-hiba, a fejlesztők hatásköre.",
        "outcome": "A 4.2.1-es javítócsomag telepítése után a program ismét hibátlanul indul.",
        "history": [
            ("in", "kovacs.jozsef@példa.hu", "A frissítés óta a program nem indul."),
            ("out", "support@crossec.com", "Bejelentését rögzítettük."),
            ("in", "nagy.anna@crossec.com", "Kérem, küldje el a naplófájlt."),
        ],
        "errors": [
            {"line": "#stauts folyamatban", "reason": "ismeretlen utasítás: #stauts"},
            {"line": 3, "reason": "nincs ilyen divízió: Pénzügy"},
        ],
    },
    "en": {
        "subject": "Crossec Norma does not start after the update",
        "reporter": "József Kovács",
        "customer_text": (
            "Hello,\n\nSince yesterday's update Crossec Norma stops with an error at start-up.\n"
            "Screenshot attached.\n\nThanks,\nJózsef Kovács"
        ),
        "agent_text": "We have reproduced the fault; the fix ships in the next release.",
        "note": "Database fault, needs the developers.",
        "outcome": "After installing patch 4.2.1 the program starts normally again.",
        "history": [
            ("in", "jozsef.kovacs@example.com", "Since the update the program does not start."),
            ("out", "support@crossec.com", "We have recorded your request."),
            ("in", "anna.nagy@crossec.com", "Please send us the log file."),
        ],
        "errors": [
            {"line": "#stauts in_progress", "reason": "unknown command: #stauts"},
            {"line": 3, "reason": "no such division: Finance"},
        ],
    },
}


def sample(name: str, lang: str, *, reporter_name: bool = True, deadline: bool = True,
           agent: bool = True, channel: str = "email", **overrides) -> dict:
    s = SAMPLE_TEXT[lang]
    created = datetime(2024, 8, 1, 10, 15, tzinfo=BUDAPEST)
    ctx: dict = {
        "ticket": {
            "id": "CRX-000042",
            "subject": s["subject"],
            "status": "new",
            "category": "Hibabejelentés",
            "area": "Crossec Norma",
            "channel": channel,
            "created_at": created,
            "ack_deadline": datetime(2024, 8, 4, 0, 0, tzinfo=BUDAPEST) if deadline else None,
            "language": lang,
        },
        "reporter": {"name": s["reporter"] if reporter_name else "", "email": "kovacs.jozsef@example.hu"},
        "agent": {"name": "Nagy Anna", "email": "nagy.anna@crossec.com"} if agent else None,
        "division": None,
        "company": {
            "name": "Crossec Solutions Kft.",
            "support_address": "support@crossec.com",
            "website": "https://crossec.com",
        },
    }
    if name in {"ack", "attachment_rejected"}:
        ctx["agent"] = None
    if name == "agent_assigned":
        ctx["text"] = s["customer_text"]
    elif name == "agent_relay":
        ctx["text"] = s["agent_text"]
    elif name == "escalation":
        ctx["text"] = s["note"]
        ctx["division"] = {"name": "Fejlesztés", "email": "fejlesztes@crossec.com"}
        ctx["history"] = [
            {"at": created + timedelta(hours=i), "direction": d, "sender": who, "text": t}
            for i, (d, who, t) in enumerate(s["history"])
        ]
    elif name == "outcome":
        ctx["text"] = s["outcome"]
        ctx["reopen_days"] = 14
    elif name == "sla_warning":
        ctx["missed"] = False
        ctx["hours_left"] = 5.6
    elif name == "command_failed":
        ctx["errors"] = s["errors"]
        ctx["commands"] = ["#note", "#status in_progress", "#category Hibabejelentés",
                           "#area Crossec Norma", "#assign nagy.anna@crossec.com",
                           "#escalate Fejlesztés", "#resolve"]
    elif name == "ticket_update":
        ctx["text"] = s["customer_text"]
        ctx["role"] = "reporter"
        ctx["sender"] = {"name": s["reporter"], "email": "kovacs.jozsef@example.hu"}
        ctx["attached"] = [{"filename": "képernyőkép.png", "size": 1_100_000}]
        ctx["listed"] = [{"filename": "naplo_teljes.zip", "size": 48_200_000}]
        ctx["cap_bytes"] = 10_000_000
    elif name == "attachment_rejected":
        ctx["rejected"] = [{"filename": "naplo_teljes.zip", "size": 48_200_000}]
        ctx["kept"] = [{"filename": "képernyőkép.png", "size": 1_100_000}]
        ctx["limit_bytes"] = 25_000_000
    for key, value in overrides.items():
        if key in ctx["ticket"] and key not in ctx:
            ctx["ticket"][key] = value
        else:
            ctx[key] = value
    return ctx


# What each language must not contain once rendered.
ENGLISH_LEFTOVERS = re.compile(
    r"\b(dear|hello|hi|ticket|tickets|subject|category|customer|regards|thank|thanks|please|"
    r"reply|attachment|deadline|request)\b",
    re.IGNORECASE,
)
HUNGARIAN_LEFTOVERS = re.compile(r"Tisztelt|Kedves|Üdvözlettel|Ügyfelünk|Köszönjük|Tájékoztatjuk|Kérjük")


def check(parts: dict[str, str], name: str, lang: str) -> None:
    subject, text = parts["subject"], parts["text"]
    assert TAG in subject
    assert "\n" not in subject and "\r" not in subject and subject == subject.strip()
    assert text.strip()
    assert ("html" in parts) == (name in WITH_HTML)
    if "html" in parts:
        assert parts["html"].startswith("<!DOCTYPE html>")
        assert parts["html"].rstrip().endswith("</html>")
    for block, out in parts.items():
        for leftover in ("{{", "}}", "{%", "%}", "{#", "#}"):
            assert leftover not in out, f"{lang}/{name}.j2 [{block}] has {leftover!r}:\n{out}"
        assert "\n\n\n" not in out, f"{lang}/{name}.j2 [{block}] has a double blank line:\n{out}"
    everything = "\n".join(parts.values())
    if lang == "hu":
        # Markup and reply commands (#category …) are not prose.
        prose = re.sub(r"<[^>]+>|#\w+", " ", everything)
        found = ENGLISH_LEFTOVERS.findall(prose)
        assert not found, f"hu/{name}.j2 has English words {found}:\n{everything}"
    else:
        found = HUNGARIAN_LEFTOVERS.findall(everything)
        assert not found, f"en/{name}.j2 has Hungarian words {found}:\n{everything}"


# ---------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------
def test_one_file_per_notification_and_language(env):
    found = {p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2")}
    assert found == {f"{lang}/{name}.j2" for lang in LANGUAGES for name in NAMES + DESK_NAMES + AGENT_MAIL_NAMES}
    for lang in LANGUAGES:
        for name in NAMES + DESK_NAMES + AGENT_MAIL_NAMES:
            blocks = set(env.get_template(f"{lang}/{name}.j2").blocks)
            assert blocks == ({"subject", "text", "html"} if name in WITH_HTML | DESK_WITH_HTML else {"subject", "text"})


# ---------------------------------------------------------------------------
# Every template, both languages, the usual variants
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"reporter_name": False, "deadline": False},
        {"channel": "form"},
        {"channel": "phone", "reporter": {"name": "Szőke Éva", "email": ""}},
        {"subject": ""},
    ],
    ids=["full", "no-name-no-deadline", "form", "phone-no-email", "no-subject"],
)
def test_renders(env, name, lang, variant):
    check(render(env, name, lang, sample(name, lang, **variant)), name, lang)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    "name, variant",
    [
        ("outcome", {"agent": False}),
        ("escalation", {"agent": False}),
        ("escalation", {"history": [], "text": ""}),
        ("sla_warning", {"missed": True, "hours_left": -3.0}),
        ("sla_warning", {"missed": True, "hours_left": 0.0}),
        ("sla_warning", {"missed": False, "hours_left": 0.4}),
        ("sla_warning", {"missed": True, "deadline": False}),
        ("command_failed", {"errors": [{"line": "#frobnicate", "reason": "?"}]}),
        ("attachment_rejected", {"kept": []}),
        ("attachment_rejected", {"rejected": [{"filename": "a.iso", "size": 4_000_000_000},
                                              {"filename": "b.iso", "size": 30_000_000}]}),
        ("agent_assigned", {"text": ""}),
    ],
)
def test_renders_special_cases(env, name, lang, variant):
    check(render(env, name, lang, sample(name, lang, **variant)), name, lang)


def test_strict_undefined_trips_on_a_missing_variable(env):
    """Guards the guard: a variable the context lacks is an error, not blank text."""
    ctx = sample("outcome", "hu")
    del ctx["reopen_days"]
    with pytest.raises(jinja2.UndefinedError):
        render(env, "outcome", "hu", ctx)


# ---------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CUSTOMER))
def test_customer_greeting(env, name):
    hu = render(env, name, "hu", sample(name, "hu"))["text"]
    en = render(env, name, "en", sample(name, "en"))["text"]
    assert hu.startswith("Tisztelt Kovács József!\n\n")
    assert en.startswith("Dear József Kovács,\n\n")
    hu = render(env, name, "hu", sample(name, "hu", reporter_name=False))["text"]
    en = render(env, name, "en", sample(name, "en", reporter_name=False))["text"]
    assert hu.startswith("Tisztelt Ügyfelünk!\n\n")
    assert en.startswith("Dear Customer,\n\n")
    if name in WITH_HTML:
        assert "Tisztelt Ügyfelünk!" in render(env, name, "hu", sample(name, "hu", reporter_name=False))["html"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_relay_keeps_the_agents_own_greeting_and_signs_with_their_name(env, lang):
    own = "Tisztelt Kovács Úr!\n\nA javítás elkészült." if lang == "hu" else "Dear Mr Kovács,\n\nThe fix is ready."
    text = render(env, "agent_relay", lang, sample("agent_relay", lang, text=own))["text"]
    assert text.startswith(own)
    assert text.count("Tisztelt" if lang == "hu" else "Dear") == 1
    assert "\n-- \nNagy Anna\n" in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_ack_gives_the_id_and_the_tag_to_keep(env, lang):
    parts = render(env, "ack", lang, sample("ack", lang))
    for out in (parts["text"], parts["html"]):
        assert "CRX-000042" in out and TAG in out
        assert "support@crossec.com" in out


@pytest.mark.parametrize("lang", LANGUAGES)
def test_notices_do_not_ask_for_a_confirming_reply(env, lang):
    pattern = re.compile(r"confirm|megerősít|visszaigazol", re.IGNORECASE)
    for name in NAMES:
        for out in render(env, name, lang, sample(name, lang)).values():
            assert not pattern.search(out), f"{lang}/{name}.j2"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_assignment_shows_deadline_text_and_commands(env, lang):
    text = render(env, "agent_assigned", lang, sample("agent_assigned", lang))["text"]
    deadline = "2024. augusztus 3. 24:00" if lang == "hu" else "3 August 2024, 24:00"
    assert deadline in text
    assert SAMPLE_TEXT[lang]["customer_text"] in text
    assert "kovacs.jozsef@example.hu" in text
    for command in ("#note", "#status", "#category", "#area", "#assign", "#escalate", "#resolve"):
        assert command in text
    no_deadline = render(env, "agent_assigned", lang, sample("agent_assigned", lang, deadline=False))["text"]
    assert "24:00" not in no_deadline


@pytest.mark.parametrize("lang", LANGUAGES)
def test_escalation_has_division_reason_and_history(env, lang):
    text = render(env, "escalation", lang, sample("escalation", lang))["text"]
    assert "Fejlesztés" in text and SAMPLE_TEXT[lang]["note"] in text
    for _, sender, message in SAMPLE_TEXT[lang]["history"]:
        assert sender in text and message in text
    long = sample("escalation", lang, history=[{"at": datetime(2024, 8, 1, tzinfo=BUDAPEST),
                                                "direction": "in", "sender": "x@example.hu",
                                                "text": "szó " * 1000}])
    assert len(render(env, "escalation", lang, long)["text"]) < 3000


@pytest.mark.parametrize("lang", LANGUAGES)
def test_outcome_tells_how_to_reopen(env, lang):
    parts = render(env, "outcome", lang, sample("outcome", lang, reopen_days=30))
    for out in (parts["text"], parts["html"]):
        assert SAMPLE_TEXT[lang]["outcome"] in out
        assert "30" in out and TAG in out


@pytest.mark.parametrize("lang", LANGUAGES)
def test_sla_warning_variants_differ(env, lang):
    near = render(env, "sla_warning", lang, sample("sla_warning", lang, missed=False, hours_left=5.6))
    missed = render(env, "sla_warning", lang, sample("sla_warning", lang, missed=True, hours_left=-3.0))
    assert near["subject"] != missed["subject"]
    assert ("6 óra" if lang == "hu" else "6 hours") in near["text"]
    assert ("3 órája" if lang == "hu" else "3 hours ago") in missed["text"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_command_failed_names_lines_reasons_and_valid_commands(env, lang):
    ctx = sample("command_failed", lang)
    text = render(env, "command_failed", lang, ctx)["text"]
    for error in ctx["errors"]:
        assert error["reason"] in text
    assert ctx["errors"][0]["line"] in text
    assert ("3. sor" if lang == "hu" else "line 3") in text
    for command in ctx["commands"]:
        assert f"  {command}\n" in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_attachment_rejected_lists_files_and_limit(env, lang):
    text = render(env, "attachment_rejected", lang, sample("attachment_rejected", lang))["text"]
    assert "naplo_teljes.zip (48.2 MB)" in text
    assert "képernyőkép.png (1.1 MB)" in text
    assert "25.0 MB" in text


# ---------------------------------------------------------------------------
# Escaping and header safety
# ---------------------------------------------------------------------------
EVIL = '<script>alert("x")</script> & <b>'


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", sorted(WITH_HTML))
def test_html_escapes_customer_data(env, name, lang):
    ctx = sample(name, lang, subject=EVIL, reporter={"name": EVIL, "email": "x@example.hu"})
    if "text" in ctx:
        ctx["text"] = EVIL
    parts = render(env, name, lang, ctx)
    assert "<script" not in parts["html"] and "<b>" not in parts["html"]
    assert "&lt;script&gt;" in parts["html"] and "&amp;" in parts["html"]
    # The plain-text body is not HTML: it keeps the characters as they are.
    assert EVIL in parts["text"]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", NAMES)
def test_subject_stays_one_line_whatever_the_customer_subject(env, name, lang):
    ctx = sample(name, lang, subject="Első sor\r\nBcc: victim@example.com\n\tfolytatás")
    subject = render(env, name, lang, ctx)["subject"]
    assert "\n" not in subject and "\r" not in subject and "\t" not in subject
    assert TAG in subject


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("on_ticket", [True, False], ids=["on-a-ticket", "no-ticket"])
def test_agent_refused_and_a_desk_commands_failure_render_with_or_without_a_ticket(env, lang, on_ticket):
    base = sample("command_failed", lang)
    ticket = {"id": "CRX-000042", "subject": "Export"} if on_ticket else None
    refused = render(env, "agent_refused", lang, {
        "agent": base["agent"], "reason": "dkim=fail for crossec.com at mx.crossec.com", "ticket": ticket,
        "trusted": ["mx.crossec.com"], "every_minutes": 60, "company": base["company"]})
    failed = render(env, "command_failed", lang, {**base, "ticket": base["ticket"] if on_ticket else None})
    for parts in (refused, failed):
        assert "\n" not in parts["subject"] and (TAG in parts["subject"]) == on_ticket
        for leftover in ("{{", "}}", "{%", "%}", "\n\n\n"):
            assert leftover not in parts["text"]
    assert "dkim=fail for crossec.com" in refused["text"] and "mx.crossec.com" in refused["text"]
    assert "#stauts" in failed["text"]
    if lang == "en":
        assert not HUNGARIAN_LEFTOVERS.findall(refused["text"] + failed["text"])
