"""Every channel of the policy (P3, P9) and the agents' everyday CLI, through the real CLI."""

from __future__ import annotations

import json

import pytest

from factory import simple_mail
from test_workflow import AGENTS, DIVISIONS, by_recipient


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    return mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS)


def open_phone(desk, *extra: str, check: bool = True):
    return desk("ticket", "open", "--channel", "phone", "--name", "Kovács Józsefné", "--email", "kovacsne@example.hu",
                "--category", "Hibabejelentés", "--area", "Crossec Norma", "--subject", "Nem nyomtat a Norma",
                "--body", "Telefonon jelezte: a havi kimutatás nyomtatása leáll.", *extra, check=check)


def test_a_phone_ticket_is_created_assigned_and_acknowledged_like_a_mail(desk, smtp_sink, tmp_path):
    scan = tmp_path / "hibaüzenet.png"
    scan.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    result = open_phone(desk, "--attach", str(scan), "--json")
    ticket = json.loads(result.stdout)
    assert ticket["id"] == "CRX-000001" and ticket["channel"] == "phone"
    assert (ticket["reporter_name"], ticket["reporter_email"]) == ("Kovács Józsefné", "kovacsne@example.hu")
    assert ticket["assignee"] == "kiss.anna@crossec.com" and ticket["ack_deadline"]
    assert [a["filename"] for a in ticket["attachments"]] == ["hibaüzenet.png"]
    [message] = [m for m in ticket["messages"] if m["direction"] == "in"]
    assert message["channel"] == "phone" and "nyomtatása leáll" in message["text"]
    desk("tick")
    assert "[CRX-000001]" in by_recipient(smtp_sink)["kovacsne@example.hu"][0]["Subject"]


def test_without_an_address_the_agent_is_reminded_to_acknowledge_by_hand(desk, smtp_sink):
    desk("ticket", "open", "--channel", "post", "--name", "Szabó Ödön", "--category", "Egyéb", "--area", "Egyéb",
         "--subject", "Levélben érkezett panasz")
    desk("tick")
    assert all("example" not in str(m["To"]) for m in smtp_sink.messages)
    notes = json.loads(desk("notifications", "--json").stdout)
    assert "ack_by_hand" in [n["kind"] for n in notes]


def test_a_logged_call_is_listed_in_time_order_with_the_mails(mailbox, desk):
    mailbox.deliver(simple_mail(1, sender="anna@example.hu"))
    desk("poll", "--once")
    desk("ticket", "log", "CRX-000001", "--channel", "phone", "--direction", "out", "--by", "kiss.anna@crossec.com",
         "--note", "Visszahívtam, a frissítés után újra próbálja.")
    shown = desk.ticket("CRX-000001")
    incoming = [m for m in shown["messages"] if m["direction"] == "in"]
    assert [(m["kind"], m["channel"]) for m in shown["messages"] if m["kind"] in ("customer", "contact")] == [
        ("customer", "email"), ("contact", "phone")]
    contact = shown["messages"][-1]
    assert contact["direction"] == "out" and contact["sender"] == "kiss.anna@crossec.com"
    assert "contact.logged" in [e["type"] for e in shown["events"]]
    assert incoming


@pytest.mark.parametrize("args, said", [
    (["ticket", "open", "--channel", "phone", "--name", "X", "--category", "Panasz", "--area", "Egyéb",
      "--subject", "s"], "unknown category: 'Panasz'"),
    (["ticket", "open", "--channel", "phone", "--name", "X", "--category", "Egyéb", "--area", "Norma2",
      "--subject", "s"], "unknown area: 'Norma2'"),
    (["ticket", "open", "--channel", "fax", "--name", "X", "--category", "Egyéb", "--area", "Egyéb",
      "--subject", "s"], "'fax' is not one of"),
    (["ticket", "open", "--channel", "phone", "--name", "X", "--category", "Egyéb", "--area", "Egyéb",
      "--subject", "s", "--by", "senki@crossec.com"], "unknown agent: senki@crossec.com"),
    (["ticket", "log", "CRX-000099", "--channel", "phone", "--direction", "in", "--by", "kiss.anna@crossec.com",
      "--note", "x"], "no such ticket: CRX-000099"),
    (["ticket", "log", "CRX-000001", "--channel", "phone", "--direction", "in", "--by", "senki",
      "--note", "x"], "unknown agent: senki"),
    (["ticket", "assign", "CRX-000001", "senki"], "unknown agent"),
    (["ticket", "status", "CRX-000001", "alszik"], "'alszik' is not one of"),
    (["ticket", "escalate", "CRX-000001", "Marketing"], "unknown division: Marketing (choices: Fejlesztés)"),
    (["tickets", "list", "--category", "Nincs ilyen"], "unknown category"),
])
def test_unknown_values_are_one_line_exit_2_and_nothing_is_written(desk, args, said):
    open_phone(desk)
    before = desk("tickets", "show", "CRX-000001", "--json").stdout
    result = desk(*args, check=False)
    assert result.returncode == 2
    assert said in result.stderr, result.stderr
    assert said in result.stderr.strip().splitlines()[-1]  # one line says it (click puts its usage above)
    assert desk("tickets", "show", "CRX-000001", "--json").stdout == before
    assert len(desk.tickets()) == 1


def test_everyday_commands_and_filters(mailbox, smtp_sink, desk):
    open_phone(desk)
    desk("ticket", "open", "--channel", "social", "--name", "Tóth Ákos", "--category", "billing question",
         "--area", "gdpr", "--subject", "Facebookon írt a számláról")
    desk("ticket", "assign", "CRX-000001", "Szabó Péter")
    desk("ticket", "status", "CRX-000001", "in_progress")
    desk("ticket", "escalate", "CRX-000001", "Fejlesztés", "--note", "Kérem nézzétek meg.")
    first, second = desk.tickets()
    assert (first["assignee"], first["status"]) == ("szabo.peter@crossec.com", "escalated")
    assert (second["category"], second["area"]) == ("Számlázással kapcsolatos kérdés", "GDPR Segédanyagok")

    def ids(*args: str) -> list[str]:
        return [t["id"] for t in json.loads(desk("tickets", "list", "--json", *args).stdout)]

    assert ids("--assignee", "szabo.peter@crossec.com") == ["CRX-000001", "CRX-000002"]
    assert ids("--assignee", "Kiss Anna") == []
    assert ids("--category", "Számlázással kapcsolatos kérdés") == ["CRX-000002"]
    assert ids("--area", "Crossec Norma") == ["CRX-000001"]
    assert ids("--channel", "social") == ["CRX-000002"]
    assert ids("--status", "escalated") == ["CRX-000001"]
    assert ids("--overdue") == []
    found = json.loads(desk("tickets", "search", "nyomtatása", "--json").stdout)
    assert [t["id"] for t in found] == ["CRX-000001"]
    assert "CRX-000002" in desk("tickets", "search", "számláról").stdout


def test_mail_to_a_merged_ticket_follows_it(mailbox, desk):
    mailbox.deliver(simple_mail(1, sender="anna@example.hu", subject="Export hiba"))
    mailbox.deliver(simple_mail(2, sender="anna@example.hu", subject="Export hiba megint"))
    desk("poll", "--once")
    desk("ticket", "merge", "CRX-000002", "CRX-000001")
    mailbox.deliver(simple_mail(3, sender="anna@example.hu", subject="Re: [CRX-000002] Export hiba megint"))
    assert "1 reply" in desk("poll", "--once").stdout
    first, second = desk.tickets()
    assert first["message_count"] == 3 and second["status"] == "closed" and second["message_count"] == 0
    assert desk("ticket", "merge", "CRX-000001", "CRX-000001", check=False).returncode == 2


FORMS = __import__("pathlib").Path(__file__).parent / "forms"


def test_web_form_mail_becomes_a_ticket_of_the_forms_customer(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, forms={"senders": ["wordpress@crossec.com"]})
    mailbox.deliver((FORMS / "01-cf7-plain.eml").read_bytes())
    mailbox.deliver((FORMS / "05-missing-fields.eml").read_bytes())
    desk("poll", "--once")
    complete, incomplete = desk.tickets()
    assert complete["channel"] == "form" and complete["reporter_email"] == "szoke.ors@example.hu"
    assert complete["flags"] == [] and complete["category"] != "Egyéb"
    assert incomplete["flags"] == ["incomplete"]
    notes = json.loads(desk("notifications", "--json").stdout)
    assert any(n["kind"] == "form_incomplete" and "first_name" in n["text"] for n in notes)
    desk("tick")
    # The acknowledgement goes to the form's address, never to the web server.
    assert "szoke.ors@example.hu" in by_recipient(smtp_sink)
    assert "wordpress@crossec.com" not in by_recipient(smtp_sink)


def test_mail_rules_and_the_spam_verdict(mailbox, smtp_sink, mailbridge_for):
    rules = [
        {"name": "billing box", "header": {"To": "szamlazas@crossec\\.com"}, "category": "Számlázással kapcsolatos kérdés"},
        {"name": "blocklist", "sender": ["*@spammer.example"], "ignore": True},
        {"name": "partners", "sender": ["*@partner.example"], "no_ack": True},
    ]
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, mail_rules=rules)
    import re

    billing = re.sub(rb"(?m)^To: .*\r?\n", b"To: szamlazas@crossec.com\n", simple_mail(1, subject="Kérdés"))
    mailbox.deliver(billing)
    mailbox.deliver(simple_mail(2, sender="x@spammer.example"))
    mailbox.deliver(simple_mail(3, sender="y@partner.example"))
    mailbox.deliver(b"X-Spam-Flag: YES\r\nX-Spam-Score: 9.1\r\n" + simple_mail(4))
    result = desk("poll", "--once")
    assert "1 ignored" in result.stdout and "1 spam" in result.stdout and "2 new_ticket" in result.stdout
    first, partner = desk.tickets()
    assert first["category"] == "Számlázással kapcsolatos kérdés"
    desk("tick")
    customers = {k for k in by_recipient(smtp_sink) if "crossec.com" not in k}
    assert customers == {"customer1@example.hu"}  # no ack to partner, spam or blocked senders
