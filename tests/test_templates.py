"""Notification templates (P7, P8, P11, P12): every shipped template, in every shipped language,
as customers and agents get them.

Nothing here renders by hand: a day at the help desk runs through the real product (Dovecot in,
aiosmtpd out, a real SQLite file, the CLI), so each mail is rendered by the real
`mailbridge.outbox.render.Renderer` from the context the real workflow builds
(`mailbridge/outbox/context.py` and what each notice adds). The tests read the outbox rows,
which are what goes on the wire, and assert what a reader would notice: the ticket ID in the
subject and body, their name, the deadline in their words, no template syntax, no "None".
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import Mailbridge, write_config
from servers import SmtpSink
from test_workflow import TRUSTED, agent_mail

from mailbridge.config import settings_from_dict
from mailbridge.outbox.context import ticket_context
from mailbridge.outbox.render import SHIPPED, Renderer, TemplateFault
from mailbridge.policy.deadline import is_working_day

LANGUAGES = ("hu", "en")
TICKET_NAMES = ("ack", "agent_assigned", "agent_relay", "escalation", "outcome", "sla_warning", "command_failed",
                "attachment_rejected", "ticket_update", "agent_refused")
DESK_NAMES = ("agent_digest", "supervisor_report")  # about many tickets: no subject tag
NAMES = TICKET_NAMES + DESK_NAMES
CUSTOMER = {"ack", "agent_relay", "outcome", "attachment_rejected"}
WITH_HTML = {"ack", "outcome", "supervisor_report"}
BUDAPEST = ZoneInfo("Europe/Budapest")
TAG = "[CRX-000001]"

AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Crossec Norma", "Egyéb"],
           "fallback": True}]
DIVISIONS = [{"name": "Fejlesztés", "email": "fejlesztes@crossec.com", "areas": ["Crossec Norma"]}]
SUPERVISORS = [{"name": "Tóth Márta", "email": "toth.marta@crossec.com"}]

# What the people of the day write, in each language.
SAID = {
    "hu": {
        "name": "Kovács József", "email": "kovacs.jozsef@example.hu",
        "subject": "Nem indul a Crossec Norma <frissítés> & hiba",
        "text": ("Jó napot!\n\nA tegnapi frissítés óta a Crossec Norma indításkor hibaüzenettel leáll.\n"
                 "Csatoltam a képernyőképet és a naplót.\n\nKöszönöm,\nKovács József\n"),
        "follow_up": "Közben azt is észrevettem, hogy a mentés sem fut le.",
        "relay": "Tisztelt Kovács Úr!\n\nA hibát reprodukáltuk, a javítást a következő kiadás tartalmazza.\n",
        "note": "Adatbázis-hiba, a fejlesztők hatásköre.",
        "outcome": "A 4.2.1-es javítócsomag telepítése után a program ismét hibátlanul indul.",
        "greeting": "Tisztelt Kovács József!\n",
        "months": ("január", "február", "március", "április", "május", "június", "július", "augusztus",
                   "szeptember", "október", "november", "december"),
    },
    "en": {
        "name": "József Kovács", "email": "jozsef.kovacs@example.com",
        "subject": "Crossec Norma does not start after the <update> & more",
        "text": ("Hello,\n\nSince yesterday's update Crossec Norma stops with an error at start-up.\n"
                 "I attached a screenshot and the log.\n\nThanks,\nJózsef Kovács\n"),
        "follow_up": "I have also noticed that the backup does not run any more.",
        "relay": "Dear Mr Kovács,\n\nWe have reproduced the fault; the fix ships in the next release.\n",
        "note": "Database fault, needs the developers.",
        "outcome": "After installing patch 4.2.1 the program starts normally again.",
        "greeting": "Dear József Kovács,\n",
        "months": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                   "October", "November", "December"),
    },
}
CALLER = "Szőke Éva"  # a phone case without an address: never acknowledged, so the SLA watcher speaks


@dataclass(frozen=True)
class Sent:
    template: str
    recipients: str
    subject: str
    text: str
    html: str
    ticket: str  # "CRX-000001", or "" for a mail about no one ticket


@dataclass(frozen=True)
class Day:
    lang: str
    config: Path
    database: Path
    mails: list[Sent]
    deadlines: dict[str, datetime]  # ticket ID -> its acknowledgement deadline

    def of(self, template: str, ticket: str | None = None) -> list[Sent]:
        return [m for m in self.mails if m.template == template and (ticket is None or m.ticket == ticket)]

    def one(self, template: str, ticket: str | None = None) -> Sent:
        found = self.of(template, ticket)
        assert found, f"no {template} mail in the {self.lang} day; got {sorted({m.template for m in self.mails})}"
        return found[0]


def customer_mail(lang: str) -> bytes:
    said = SAID[lang]
    message = EmailMessage()
    message["From"] = f"{said['name']} <{said['email']}>"
    message["To"] = "Crossec ügyfélszolgálat <support@crossec.com>"
    message["Subject"] = said["subject"]
    message["Message-ID"] = f"<first.{lang}@example.hu>"
    message["Date"] = "Fri, 04 Dec 2026 09:15:00 +0100"
    message.set_content(said["text"])
    message.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(2000), maintype="image", subtype="png",
                           filename="képernyőkép.png")
    message.add_attachment(bytes(150_000), maintype="application", subtype="zip", filename="naplo_teljes.zip")
    return bytes(message)


def follow_up_mail(lang: str) -> bytes:
    said = SAID[lang]
    message = EmailMessage()
    message["From"] = f"{said['name']} <{said['email']}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = f"Re: {TAG} {said['subject']}"
    message["Message-ID"] = f"<second.{lang}@example.hu>"
    message["In-Reply-To"] = f"<first.{lang}@example.hu>"
    message.set_content(said["follow_up"] + "\n")
    return bytes(message)


def next_working_monday(after: datetime, country: str = "HU") -> datetime:
    day = after.astimezone(BUDAPEST).date() + timedelta(days=1)
    while day.weekday() != 0 or not is_working_day(day, country):
        day += timedelta(days=1)
    return datetime.combine(day, time(9, 30), BUDAPEST)


def run_a_day(dovecot_server, folder: Path, lang: str) -> Day:
    """One day at the desk, every notice caused the way it is caused in production."""
    box = dovecot_server.new_mailbox()
    sink = SmtpSink()
    sink.start()
    try:
        config = write_config(folder / "mailbridge.toml", box.imap_settings(), sink, agents=AGENTS,
                              divisions=DIVISIONS, supervisors=SUPERVISORS, security=TRUSTED,
                              tickets={"default_language": lang}, desk={"agent_digest": True})
        desk = Mailbridge(config)
        desk("init")
        subject = f"Re: {TAG} {SAID[lang]['subject']}"

        box.deliver(customer_mail(lang))  # CRX-000001: assigned, one file too big
        desk("poll", "--once")
        desk("tick")  # acknowledged
        desk("ticket", "open", "--channel", "phone", "--name", CALLER, "--category", "Egyéb", "--area", "Egyéb",
             "--subject", "Visszahívást kér", "--body", "Telefonon jelezte, hogy nem tud belépni.")  # CRX-000002
        box.deliver(follow_up_mail(lang))  # the assignee gets a copy
        desk("poll", "--once")
        for body, signed in ((SAID[lang]["relay"], True), ("#stauts kesz\nKész.\n", True),
                             (f"#escalate Fejlesztés\n{SAID[lang]['note']}\n", True),
                             (f"#resolve\n{SAID[lang]['outcome']}\n", True),
                             ("Hamisított levél a nevemben.\n", False)):
            box.deliver(agent_mail(body, subject=subject, signed=signed))
            desk("poll", "--once")
        deadlines = {t["id"]: datetime.fromisoformat(t["ack_deadline"]) for t in desk.tickets()}
        phone = deadlines["CRX-000002"]
        desk("tick", "--at", (phone - timedelta(hours=2)).isoformat())  # near
        desk("tick", "--at", (phone + timedelta(hours=3)).isoformat())  # missed
        desk("tick", "--at", next_working_monday(phone).isoformat())  # the digest and the Monday report
    finally:
        sink.stop()
    database = folder / "mailbridge.db"
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT template, recipients, subject, body_text, body_html, ticket_id FROM outbox "
                          "ORDER BY id").fetchall()
    mails = [Sent(t, r, s, text, html, f"CRX-{ticket:06d}" if ticket else "") for t, r, s, text, html, ticket in rows]
    return Day(lang, config, database, mails, deadlines)


@pytest.fixture(scope="module", params=LANGUAGES)
def day(request, dovecot_server, tmp_path_factory) -> Day:
    return run_a_day(dovecot_server, tmp_path_factory.mktemp(f"day-{request.param}"), request.param)


# ---------------------------------------------------------------------------
# What every mail must be
# ---------------------------------------------------------------------------
ENGLISH_LEFTOVERS = re.compile(
    r"\b(dear|hello|hi|ticket|tickets|subject|category|customer|regards|thank|thanks|please|"
    r"reply|attachment|deadline|request)\b", re.IGNORECASE)
HUNGARIAN_LEFTOVERS = re.compile(r"Tisztelt|Kedves|Üdvözlettel|Ügyfelünk|Köszönjük|Tájékoztatjuk|Kérjük")


def test_every_shipped_template_is_a_file_per_language_with_its_blocks():
    found = {p.relative_to(SHIPPED).as_posix() for p in SHIPPED.rglob("*.j2")}
    assert found == {f"{lang}/{name}.j2" for lang in LANGUAGES for name in NAMES}
    env = Renderer().env
    for lang in LANGUAGES:
        for name in NAMES:
            blocks = set(env.get_template(f"{lang}/{name}.j2").blocks)
            assert blocks == ({"subject", "text", "html"} if name in WITH_HTML else {"subject", "text"}), name


@pytest.mark.parametrize("name", NAMES)
def test_each_notice_reads_right(day, name):
    mails = day.of(name)
    assert mails, f"the {day.lang} day sent no {name}; it sent {sorted({m.template for m in day.mails})}"
    for mail in mails:
        where = f"{day.lang}/{name}.j2 to {mail.recipients}"
        assert mail.subject and mail.subject == " ".join(mail.subject.split()), where
        if name in TICKET_NAMES:  # the refusal is about CRX-000001's thread, though its row is on no ticket
            assert f"[{mail.ticket or 'CRX-000001'}]" in mail.subject, where
        assert mail.text.strip(), where
        assert bool(mail.html) == (name in WITH_HTML), where
        if mail.html:
            assert mail.html.startswith("<!DOCTYPE html>") and mail.html.rstrip().endswith("</html>"), where
        for block, out in (("subject", mail.subject), ("text", mail.text), ("html", mail.html)):
            for leftover in ("{{", "}}", "{%", "%}", "{#", "#}"):
                assert leftover not in out, f"{where} [{block}] has {leftover!r}:\n{out}"
            assert not re.search(r"\bNone\b", out), f"{where} [{block}] says None:\n{out}"
            assert "\n\n\n" not in out, f"{where} [{block}] has a double blank line:\n{out}"
        everything = "\n".join((mail.subject, mail.text, mail.html))
        if day.lang == "hu":
            # Markup, reply commands (#category …) and what people wrote are not the template's prose.
            prose = re.sub(r"<[^>]+>|#\w+", " ", everything)
            for said in SAID["en"].values():
                prose = prose.replace(said, " ") if isinstance(said, str) else prose
            found = ENGLISH_LEFTOVERS.findall(prose)
            assert not found, f"{where} has English words {found}:\n{everything}"
        else:
            prose = everything
            for said in (*SAID["hu"].values(), "Fejlesztés", "Egyéb", "Visszahívást kér", "Hamisított"):
                prose = prose.replace(said, " ") if isinstance(said, str) else prose
            found = HUNGARIAN_LEFTOVERS.findall(prose)
            assert not found, f"{where} has Hungarian words {found}:\n{everything}"


# ---------------------------------------------------------------------------
# What the customer notices
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CUSTOMER))
def test_the_customer_is_greeted_by_name_and_told_the_ticket_id(day, name):
    mail = day.one(name, "CRX-000001")
    said = SAID[day.lang]
    assert mail.recipients == said["email"]
    assert "CRX-000001" in mail.text
    if name == "agent_relay":  # the agent's own greeting, signed with her name
        assert mail.text.startswith(said["relay"].rstrip("\n")) and "Kiss Anna" in mail.text
    else:
        assert mail.text.startswith(said["greeting"]), mail.text
    if mail.html:
        assert "CRX-000001" in mail.html and said["name"] in mail.html


def test_the_acknowledgement_gives_the_id_the_tag_to_keep_and_the_support_address(day):
    ack = day.one("ack", "CRX-000001")
    for out in (ack.text, ack.html):
        assert "CRX-000001" in out and TAG in out and "support@crossec.com" in out


def test_what_the_customer_wrote_is_escaped_in_html_and_kept_in_text(day):
    ack = day.one("ack", "CRX-000001")
    assert "<frissítés>" not in ack.html and "<update>" not in ack.html and "<b>" not in ack.html
    assert "&lt;" in ack.html and "&amp;" in ack.html
    assert SAID[day.lang]["subject"] in ack.text  # plain text is not HTML


def test_the_outcome_says_what_was_done_and_how_to_reopen(day):
    outcome = day.one("outcome", "CRX-000001")
    for out in (outcome.text, outcome.html):
        assert SAID[day.lang]["outcome"] in out and "14" in out  # reopen_days


def test_the_rejected_file_is_named_with_its_size_and_the_kept_one_too(day):
    text = day.one("attachment_rejected", "CRX-000001").text
    assert "naplo_teljes.zip" in text and "képernyőkép.png" in text
    size = re.search(r"naplo_teljes\.zip \(([^)]*)\)", text)
    assert size and re.search(r"\d", size.group(1)), text  # a size a person reads, not bytes in a row


def test_no_notice_asks_for_a_confirming_reply(day):
    pattern = re.compile(r"confirm|megerősít|visszaigazol", re.IGNORECASE)
    for mail in day.mails:
        if mail.template in CUSTOMER | {"agent_assigned", "escalation", "sla_warning"}:
            assert not pattern.search(mail.text), f"{day.lang}/{mail.template}.j2"


# ---------------------------------------------------------------------------
# What the agent and the division notice
# ---------------------------------------------------------------------------
def deadline_in_words(deadline: datetime, lang: str) -> str:
    """The end of a day as people say it: 24:00 of that day, not 00:00 of the next."""
    day = (deadline.astimezone(BUDAPEST) - timedelta(minutes=1)).date()
    month = SAID[lang]["months"][day.month - 1]
    return f"{day.year}. {month} {day.day}. 24:00" if lang == "hu" else f"{day.day} {month} {day.year}, 24:00"


def test_the_assignment_gives_the_deadline_in_words_the_first_mail_and_the_commands(day):
    text = day.one("agent_assigned", "CRX-000001").text
    assert deadline_in_words(day.deadlines["CRX-000001"], day.lang) in text
    assert "A tegnapi frissítés óta" in text if day.lang == "hu" else "Since yesterday's update" in text
    assert SAID[day.lang]["email"] in text and SAID[day.lang]["name"] in text
    for command in ("#note", "#status", "#category", "#area", "#assign", "#escalate", "#resolve"):
        assert command in text


def test_the_sla_warnings_give_the_deadline_and_differ_before_and_after_it(day):
    near, missed = day.of("sla_warning", "CRX-000002")
    assert near.subject != missed.subject
    words = deadline_in_words(day.deadlines["CRX-000002"], day.lang)
    assert words in missed.text and words in near.text
    assert ("2 óra" if day.lang == "hu" else "2 hours") in near.text
    assert ("3 órája" if day.lang == "hu" else "3 hours ago") in missed.text
    assert CALLER in near.text


def test_the_escalation_carries_the_note_and_the_history(day):
    text = day.one("escalation", "CRX-000001").text
    assert "Fejlesztés" in text and SAID[day.lang]["note"] in text
    assert SAID[day.lang]["email"] in text and SAID[day.lang]["follow_up"] in text


def test_the_assignee_gets_the_customers_follow_up_with_who_wrote_it(day):
    update = day.one("ticket_update", "CRX-000001")
    assert update.recipients == "kiss.anna@crossec.com"
    assert SAID[day.lang]["follow_up"] in update.text and SAID[day.lang]["name"] in update.text


def test_a_failed_command_names_the_line_and_the_commands_that_work(day):
    text = day.one("command_failed", "CRX-000001").text
    assert "#stauts" in text
    for command in ("#note", "#status", "#escalate", "#resolve"):
        assert command in text


def test_a_refused_mail_in_the_agents_name_says_why(day):
    refused = day.one("agent_refused")
    assert refused.recipients == "kiss.anna@crossec.com"
    assert "mx.crossec.com" in refused.text  # the trusted server ops configured


def test_the_digest_and_the_report_list_the_overdue_phone_case(day):
    digest = day.one("agent_digest")
    assert digest.recipients == "kiss.anna@crossec.com" and "CRX-000002" in digest.text and CALLER in digest.text
    report = day.one("supervisor_report")
    assert report.recipients == "toth.marta@crossec.com" and report.html


# ---------------------------------------------------------------------------
# The real Renderer: ops' own templates, and a variable the context lacks
# ---------------------------------------------------------------------------
def contexts_of(day: Day) -> tuple[object, dict]:
    """The settings of the day and CRX-000001's context, as the real code builds it."""
    import tomllib

    import sqlalchemy as sa

    settings = settings_from_dict(tomllib.loads(day.config.read_text(encoding="utf-8")))
    engine = sa.create_engine(f"sqlite:///{day.database}")
    try:
        with engine.connect() as conn:
            return settings, ticket_context(conn, settings, 1)
    finally:
        engine.dispose()


def test_a_template_ops_dropped_in_shadows_the_shipped_one_and_only_it(day, tmp_path):
    override = tmp_path / "templates" / day.lang
    override.mkdir(parents=True)
    (override / "ack.j2").write_text(
        "{% block subject %}[{{ ticket.id }}] Saját{% endblock %}\n"
        "{% block text %}Saját szöveg {{ reporter.name }}: {{ ticket.id }}{% endblock %}\n", encoding="utf-8")
    _settings, context = contexts_of(day)
    renderer = Renderer(str(tmp_path / "templates"))
    ack = renderer.render("ack", day.lang, context)
    assert (ack.subject, ack.text) == (f"{TAG} Saját", f"Saját szöveg {SAID[day.lang]['name']}: CRX-000001\n")
    shipped = renderer.render("outcome", day.lang, {**context, "text": "x", "agent": None})
    assert shipped.text.startswith(SAID[day.lang]["greeting"]) and shipped.html


def test_a_variable_the_context_lacks_is_an_error_not_blank_text(day):
    _settings, context = contexts_of(day)
    del context["reopen_days"]
    with pytest.raises(TemplateFault, match=rf"{day.lang}/outcome.j2, line \d+: UndefinedError: 'reopen_days' is undefined"):
        Renderer().render("outcome", day.lang, {**context, "text": "x", "agent": None})
