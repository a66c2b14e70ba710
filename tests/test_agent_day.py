"""The agent's day by mail (SPEC "The agent's day by mail"): follow-ups reach the assignee with
their files, `#open` / `#log` / `#mine` by mail, refused agent mail is not silent, and the
story of one agent's day. Real Dovecot in, real aiosmtpd out, a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from factory import simple_mail

ANNA = "kiss.anna@crossec.com"
PETER = "szabo.peter@crossec.com"
CUSTOMER = "kovacs.jozsef@example.hu"
AGENTS = [
    {"name": "Kiss Anna", "email": ANNA, "areas": ["Crossec Norma", "Egyéb"], "fallback": True},
    {"name": "Szabó Péter", "email": PETER, "areas": ["GDPR Segédanyagok"]},
]
SUPERVISORS = [{"name": "Nagy Éva", "email": "nagy.eva@crossec.com"}]
TRUSTED = {"trusted_authserv_ids": ["mx.crossec.com"]}
SIGNED = "Authentication-Results: mx.crossec.com; dkim=pass header.d=crossec.com header.i=@crossec.com\r\n"


def mail(body: str, *, sender: str = CUSTOMER, name: str = "Kovács József", subject: str = "Re: [CRX-000001] Export",
         files: tuple[tuple[str, bytes], ...] = (), signed: bool = False, in_reply_to: str = "",
         headers: str = "") -> bytes:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        message["In-Reply-To"] = message["References"] = in_reply_to
    message.set_content(body)
    for filename, data in files:
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    raw = bytes(message)
    return (headers.encode() + (SIGNED.encode() if signed else b"") + raw)


def agent_mail(body: str, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    kwargs.setdefault("signed", True)
    return mail(body, sender=kwargs.pop("sender", ANNA), name=kwargs.pop("name", "Kiss Anna"), **kwargs)


def to(sink, address: str) -> list:  # type: ignore[no-untyped-def]
    return [m for m in sink.messages if str(m["To"]) == address]


def text_of(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("plain",)).get_content()


def sql(desk, statement: str, *args) -> list[tuple]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(desk.config.parent / "mailbridge.db") as db:
        return db.execute(statement, args).fetchall()


@pytest.fixture
def team(mailbox, smtp_sink, mailbridge_for):
    """Anna has CRX-000001 from a customer; the mail so far (ack, assignment) is delivered and cleared."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, supervisors=SUPERVISORS, security=TRUSTED)
    mailbox.deliver(simple_mail(1, sender=CUSTOMER, subject="Export"))
    desk("poll", "--once")
    desk("tick")
    smtp_sink.clear()
    return desk


# ---------------------------------------------------------------------------
# Follow-ups reach the assignee
# ---------------------------------------------------------------------------


def test_a_customers_follow_up_reaches_the_assignee_with_its_file_in_the_tickets_thread(mailbox, smtp_sink, team):
    [first_id] = [m["message_id"] for m in team.ticket("CRX-000001")["messages"] if m["direction"] == "in"]
    pdf = b"%PDF-1.4 szamla" + b"x" * 1000
    mailbox.deliver(mail("Csatolom a számlát.\n\n> Tisztelt Ügyfelünk! régi idézet\n", in_reply_to=first_id,
                         files=(("számla.pdf", pdf),)))
    assert "1 reply" in team("poll", "--once").stdout
    team("tick")
    [update] = to(smtp_sink, ANNA)
    assert "[CRX-000001]" in update["Subject"] and update["Auto-Submitted"] == "auto-generated"
    assert first_id in update["References"]  # the ticket's thread: it sits in Anna's conversation
    text = text_of(update)
    assert "Csatolom a számlát." in text and "régi idézet" not in text and CUSTOMER in text
    [attached] = list(update.iter_attachments())
    assert attached.get_filename() == "számla.pdf" and attached.get_payload(decode=True) == pdf
    notices = json.loads(team("notifications", "--agent", ANNA, "--json").stdout)
    assert "follow_up" in [n["kind"] for n in notices]
    assert to(smtp_sink, CUSTOMER) == []  # the customer gets no copy of her own mail

    # Anna answers the forward: an ordinary agent reply, relayed to the customer.
    smtp_sink.clear()
    mailbox.deliver(agent_mail("Köszönjük, a számlát javítjuk.", subject="Re: " + str(update["Subject"]),
                               in_reply_to=update["Message-ID"]))
    assert "1 agent_reply" in team("poll", "--once").stdout
    team("tick")
    [relay] = to(smtp_sink, CUSTOMER)
    assert "a számlát javítjuk" in text_of(relay)
    assert to(smtp_sink, ANNA) == []  # her own reply is not forwarded back to her


def test_files_over_the_cap_are_listed_not_attached_and_odd_names_stay_safe(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, security=TRUSTED, desk={"forward_attachment_bytes": 5000})
    mailbox.deliver(simple_mail(1, sender=CUSTOMER, subject="Export"))
    desk("poll", "--once")
    smtp_sink.clear()
    files = (("nagy.pdf", b"%PDF" + b"n" * 6000), ("kicsi.pdf", b"%PDF" + b"k" * 100), ("ures.pdf", b""),
             ("../../etc/passwd", b"%PDF evil"), ("C:\\Windows\\win.ini", b"%PDF win"))
    mailbox.deliver(mail("Itt vannak a fájlok.", files=files))
    desk("poll", "--once")
    desk("tick")
    [update] = [m for m in to(smtp_sink, ANNA) if "Új üzenet" in str(m["Subject"])]
    names = [p.get_filename() for p in update.iter_attachments()]
    assert "nagy.pdf" not in names and "kicsi.pdf" in names and len(names) == 4
    assert all("/" not in n and "\\" not in n and n not in ("", ".", "..") for n in names)
    listed = text_of(update).split("Nem fért a levélbe")[1]
    assert "nagy.pdf (5,9 KB)" in listed
    [empty] = [p for p in update.iter_attachments() if p.get_filename().startswith("ures")]
    assert empty.get_payload(decode=True) == b""


def test_the_assignment_notice_carries_the_first_mails_files(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, desk={"forward_attachment_bytes": 5000})
    mailbox.deliver(mail("Hibás az export, csatolom.", subject="Export hiba",
                         files=(("hiba.pdf", b"%PDF hiba"), ("naplo.pdf", b"%PDF" + b"n" * 8000))))
    desk("poll", "--once")
    desk("tick")
    [notice] = to(smtp_sink, ANNA)
    assert [p.get_filename() for p in notice.iter_attachments()] == ["hiba.pdf"]
    assert "naplo.pdf" in text_of(notice).split("Nem fért a levélbe")[1]


def test_an_unassigned_tickets_follow_up_goes_to_the_fallback_agent_and_an_outsider_is_forwarded_too(
        mailbox, smtp_sink, team):
    sql(team, "UPDATE ticket SET assignee = NULL")
    mailbox.deliver(mail("Én is érintett vagyok.", sender="idegen@example.com", name="Idegen"))
    assert "1 outsider" in team("poll", "--once").stdout
    team("tick")
    [update] = to(smtp_sink, ANNA)  # the fallback agent
    assert "idegen@example.com" in text_of(update) and "Én is érintett vagyok." in text_of(update)


def test_a_bounce_of_a_forward_triggers_no_more_mail(mailbox, smtp_sink, team):
    mailbox.deliver(mail("Még egy kérdés."))
    team("poll", "--once")
    team("tick")
    [update] = to(smtp_sink, ANNA)
    smtp_sink.clear()
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.crossec.com>\r\nTo: support@crossec.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-9@mx.crossec.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\n{ANNA}: mailbox full\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.crossec.com\r\n\r\n"
        f"Final-Recipient: rfc822; {ANNA}\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {update['Message-ID']}\r\nTo: {ANNA}\r\n"
        "--b--\r\n"
    ).encode()
    mailbox.deliver(dsn)
    assert "1 bounce" in team("poll", "--once").stdout
    team("tick")
    assert smtp_sink.messages == []
    assert sql(team, "SELECT status FROM outbox WHERE template = 'ticket_update'") == [("bounced",)]


# ---------------------------------------------------------------------------
# #open, #log, #mine by mail
# ---------------------------------------------------------------------------


def test_open_by_mail_opens_a_phone_ticket_assigned_to_the_sender_and_acknowledges_the_caller(
        mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#open phone\n#reporter Varga Tünde <tunde@example.hu>\n#category hibabejelentés\n\n"
                               "Telefonon jelezte, hogy nem indul az export.\n", subject="Fwd: Export nem indul"))
    assert "1 agent_opened" in team("poll", "--once").stdout
    team("tick")
    tickets = {t["id"]: t for t in team.tickets()}
    assert len(tickets) == 2  # the phone ticket, and no ticket of the agent's own mail
    opened = tickets["CRX-000002"]
    assert (opened["channel"], opened["assignee"], opened["category"], opened["subject"]) == (
        "phone", ANNA, "Hibabejelentés", "Export nem indul")
    [ack] = to(smtp_sink, "tunde@example.hu")
    assert "[CRX-000002]" in ack["Subject"]
    detail = team.ticket("CRX-000002")
    assert any("nem indul az export" in m["text"] for m in detail["messages"])
    assert "CRX-000002" in str(to(smtp_sink, ANNA)[0]["Subject"])  # her assignment notice


def test_open_by_mail_with_assign_and_a_caller_without_an_address(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#open post\n#reporter Horváth Ödön\n#phone +36 1 234 5678\n#assign Szabó Péter\n"
                               "#area gdpr\n\nLevélben kéri a sablonokat.\n", subject="Sablonok postán"))
    assert "1 agent_opened" in team("poll", "--once").stdout
    opened = team.ticket("CRX-000002")
    assert (opened["channel"], opened["assignee"], opened["area"]) == ("post", PETER, "GDPR Segédanyagok")
    assert any("+36 1 234 5678" in m["text"] for m in opened["messages"])


def test_log_by_mail_records_a_contact_on_the_ticket(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#log phone out\nVisszahívtam, holnapra ígértem a javítást.\n"))
    assert "1 agent_logged" in team("poll", "--once").stdout
    team("tick")
    detail = team.ticket("CRX-000001")
    [contact] = [m for m in detail["messages"] if m["kind"] == "contact"]
    assert (contact["channel"], contact["direction"], contact["internal"]) == ("phone", "out", True)
    assert "holnapra ígértem" in contact["text"]
    assert to(smtp_sink, CUSTOMER) == []  # a logged contact is internal


def test_mine_sends_the_agents_queue_at_once(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#mine\n", subject="queue"))
    assert "1 agent_queue" in team("poll", "--once").stdout
    team("tick")
    [digest] = to(smtp_sink, ANNA)
    assert "CRX-000001" in text_of(digest) and digest["Auto-Submitted"] == "auto-generated"
    assert len(team.tickets()) == 1


@pytest.mark.parametrize("body, subject, why", [
    ("#open phone\n\nValaki telefonált.\n", "Hívás", "#open needs #reporter"),
    ("#open fax\n#reporter Kiss Béla <bela@example.hu>\n\nFaxon jött.\n", "Fax", "#open needs a channel"),
    ("#open phone\n#reporter Kiss Béla\n\nNincs címe.\n", "Hívás", "needs #phone"),
    ("#log phone out\nVisszahívtam.\n", "Re: [CRX-000777] Nincs ilyen", "#log needs a reply to the ticket"),
])
def test_a_bad_desk_command_changes_nothing_and_the_agent_is_told_why_once(mailbox, smtp_sink, team, body, subject,
                                                                           why):
    before = sql(team, "SELECT count(*) FROM ticket UNION ALL SELECT count(*) FROM event WHERE type LIKE 'ticket.%'")
    mailbox.deliver(agent_mail(body, subject=subject))
    assert "1 agent_command_failed" in team("poll", "--once").stdout
    team("tick")
    [told] = to(smtp_sink, ANNA)
    assert why in text_of(told)
    assert [str(m["To"]) for m in smtp_sink.messages] == [ANNA]
    assert sql(team, "SELECT count(*) FROM ticket UNION ALL SELECT count(*) FROM event WHERE type LIKE 'ticket.%'") \
        == before


@pytest.mark.parametrize("body", ["#mine\n", "#open phone\n#reporter Kiss Béla <bela@example.hu>\n\nx\n"])
def test_a_desk_command_from_a_non_agent_does_nothing_and_gets_nothing(mailbox, smtp_sink, team, body):
    mailbox.deliver(mail(body, subject="Kérem a listát"))
    assert "1 refused" in team("poll", "--once").stdout
    team("tick")
    assert smtp_sink.messages == [] and len(team.tickets()) == 1


# ---------------------------------------------------------------------------
# Refused agent mail is not silent
# ---------------------------------------------------------------------------


def test_a_forged_mail_in_an_agents_name_changes_nothing_and_she_is_told_once_an_hour(mailbox, smtp_sink, team):
    failing = "Authentication-Results: mx.crossec.com; dkim=fail header.d=crossec.com\r\n"
    mailbox.deliver(agent_mail("#resolve\nMegoldva.\n", signed=False, headers=failing))
    mailbox.deliver(agent_mail("#mine\n", signed=False, subject="lista"))
    team("poll", "--once")
    team("tick")
    assert team.tickets()[0]["status"] == "acknowledged"
    [told] = to(smtp_sink, ANNA)  # two refused mails, one notice
    assert told["Auto-Submitted"] == "auto-generated"
    assert "dkim" in text_of(told).lower() and "mx.crossec.com" in text_of(told)
    assert to(smtp_sink, CUSTOMER) == []
    assert sql(team, "SELECT count(*) FROM event WHERE type = 'agent.refused'") == [(1,)]


def test_check_says_whether_the_trusted_authserv_ids_are_seen_on_recent_mail(mailbox, smtp_sink, mailbridge_for):
    right = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, security=TRUSTED)
    assert "ok   agent auth" in right("check", check=False).stdout  # nothing taken in yet
    mailbox.deliver(mail("Hello", subject="Első", headers="Authentication-Results: mx.crossec.com; spf=pass "
                                                         "smtp.mailfrom=example.hu\r\n"))
    right("poll", "--once")
    assert "mx.crossec.com on top of 1 of the last 1 mails" in right("check", check=False).stdout
    wrong = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, init=False,
                           security={"trusted_authserv_ids": ["mx.elgepelt.example"]})
    line = [l for l in wrong("check", check=False).stdout.splitlines() if "agent auth" in l][0]
    assert line.startswith("FAIL") and "mx.crossec.com (1)" in line


# ---------------------------------------------------------------------------
# The story of one agent's day
# ---------------------------------------------------------------------------


def test_an_agents_whole_day_from_her_mail_client(mailbox, smtp_sink, mailbridge_for):
    import re
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from mailbridge.policy.deadline import is_working_day

    budapest = ZoneInfo("Europe/Budapest")
    today = datetime.now(budapest).date()

    def after_today(where):  # type: ignore[no-untyped-def]
        day = today + timedelta(days=1)
        while not where(day):
            day += timedelta(days=1)
        return day

    def at(day, hour: int, minute: int = 0) -> str:  # type: ignore[no-untyped-def]
        return datetime.combine(day, time(hour, minute), budapest).isoformat()

    def listed(message) -> list[str]:  # type: ignore[no-untyped-def]
        return re.findall(r"\[(CRX-\d{6})\]", text_of(message).split("Egy ügyön")[0])  # the list, not its help

    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, supervisors=SUPERVISORS, security=TRUSTED,
                          desk={"agent_digest": True, "digest_time": "08:00"})

    # A customer writes; Anna is assigned and the customer acknowledged.
    mailbox.deliver(simple_mail(1, sender=CUSTOMER, subject="Export"))
    desk("poll", "--once")
    desk("tick")
    [ack] = to(smtp_sink, CUSTOMER)
    [assigned] = to(smtp_sink, ANNA)
    assert "[CRX-000001]" in ack["Subject"] and "[CRX-000001]" in assigned["Subject"]
    smtp_sink.clear()

    # The customer follows up with a PDF: Anna gets it in the same thread, the file attached.
    pdf = b"%PDF-1.4 a hibas export kepe"
    mailbox.deliver(mail("Csatolom a hibás exportot.", subject="Re: " + str(ack["Subject"]),
                         in_reply_to=ack["Message-ID"], files=(("export.pdf", pdf),)))
    desk("poll", "--once")
    desk("tick")
    [update] = to(smtp_sink, ANNA)
    assert assigned["In-Reply-To"] in update["References"]  # the customer's first mail: one conversation
    assert [(p.get_filename(), p.get_payload(decode=True)) for p in update.iter_attachments()] == [("export.pdf", pdf)]
    assert "Csatolom a hibás exportot." in text_of(update)

    # She answers it from her client: relayed to the customer.
    smtp_sink.clear()
    mailbox.deliver(agent_mail("Köszönjük, megnéztük: a javítás holnap érkezik.",
                               subject="Re: " + str(update["Subject"]), in_reply_to=update["Message-ID"]))
    assert "1 agent_reply" in desk("poll", "--once").stdout
    desk("tick")
    [relay] = to(smtp_sink, CUSTOMER)
    assert "a javítás holnap érkezik" in text_of(relay)

    # A caller phones; she opens the ticket by mail, and the caller's acknowledgement carries the new ID.
    smtp_sink.clear()
    mailbox.deliver(agent_mail("#open phone\n#reporter Varga Tünde <tunde@example.hu>\n\n"
                               "Visszahívást kér a számlája miatt.\n", subject="Számla visszahívás"))
    assert "1 agent_opened" in desk("poll", "--once").stdout
    desk("tick")
    [caller_ack] = to(smtp_sink, "tunde@example.hu")
    assert "[CRX-000002]" in caller_ack["Subject"] and "CRX-000002" in text_of(caller_ack)
    [notice] = to(smtp_sink, ANNA)

    # She calls back and logs it with #log, replying to the ticket's notice.
    smtp_sink.clear()
    mailbox.deliver(agent_mail("#log phone out\nVisszahívtam, a számlát újraküldjük.\n",
                               subject="Re: " + str(notice["Subject"]), in_reply_to=notice["Message-ID"]))
    assert "1 agent_logged" in desk("poll", "--once").stdout
    contacts = [m for m in desk.ticket("CRX-000002")["messages"] if m["kind"] == "contact"]
    assert [(c["channel"], c["direction"]) for c in contacts] == [("phone", "out")]

    # A forged mail in her name changes nothing, and she is told once within the hour, not twice.
    failing = "Authentication-Results: mx.crossec.com; dkim=fail header.d=crossec.com\r\n"
    for body in ("#resolve\nLezárva.\n", "#status closed\n"):
        mailbox.deliver(agent_mail(body, signed=False, headers=failing, subject="Re: [CRX-000001] Export"))
        desk("poll", "--once")
    desk("tick")
    assert desk.ticket("CRX-000001")["status"] == "in_progress"
    refusals = [m for m in to(smtp_sink, ANNA) if "nem fogadta el" in str(m["Subject"])]
    assert len(refusals) == 1 and "dkim" in text_of(refusals[0]).lower()
    assert to(smtp_sink, CUSTOMER) == []

    # #mine: both tickets at once, in deadline order.
    smtp_sink.clear()
    mailbox.deliver(agent_mail("#mine\n", subject="Listám"))
    assert "1 agent_queue" in desk("poll", "--once").stdout
    desk("tick")
    [mine] = to(smtp_sink, ANNA)
    assert listed(mine) == ["CRX-000001", "CRX-000002"]

    # The morning digest: none on a Sunday, the same list on the next working morning.
    smtp_sink.clear()
    assert "0 digests" in desk("tick", "--at", at(after_today(lambda d: d.weekday() == 6), 9)).stdout
    assert "1 digests" in desk("tick", "--at", at(after_today(lambda d: is_working_day(d, "HU")), 8, 30)).stdout
    [digest] = [m for m in to(smtp_sink, ANNA) if "Napi ügylista" in str(m["Subject"])]
    assert listed(digest) == listed(mine)

    # The supervisor's Monday report counts the week: two opened, by e-mail and by phone, none late.
    monday = today + timedelta(days=7 - today.weekday())
    desk("tick", "--at", at(monday, 8, 5))
    [report] = [m for m in to(smtp_sink, SUPERVISORS[0]["email"]) if "Heti jelentés" in str(m["Subject"])]
    assert "(2 új, 0 lezárt ügy)" in report["Subject"]
    figures = json.loads(desk("report", "--week", "--json", "--at", at(monday, 8, 5)).stdout)
    assert {r["channel"]: r["opened"] for r in figures["by_channel"] if r["opened"]} == {"email": 1, "phone": 1}
    # Deadlines fall in this week or the next (two working days on): whichever it counts, all were kept.
    assert figures["acknowledged_in_time"] == figures["acknowledgement_deadlines"] and figures["missed"] == []
    assert figures["median_seconds_to_acknowledge"] is not None


def test_an_out_of_office_reply_is_forwarded_but_the_agents_own_does_not_loop(mailbox, smtp_sink, team):
    mailbox.deliver(mail("Szabadságon vagyok jövő hétig.", subject="Automatikus válasz: [CRX-000001] Export",
                         headers="Auto-Submitted: auto-replied\r\n"))
    assert "1 auto_reply" in team("poll", "--once").stdout
    team("tick")
    [update] = to(smtp_sink, ANNA)
    assert "Szabadságon vagyok" in text_of(update)
    # Anna's own out-of-office answers the forward: recorded on the ticket, and nothing more goes out.
    smtp_sink.clear()
    mailbox.deliver(mail("Házon kívül vagyok.", sender=ANNA, name="Kiss Anna", subject="Házon kívül: "
                         + str(update["Subject"]), in_reply_to=update["Message-ID"],
                         headers="Auto-Submitted: auto-replied\r\n"))
    assert "1 auto_reply" in team("poll", "--once").stdout
    team("tick")
    assert smtp_sink.messages == []


def test_erasing_a_customer_empties_the_forwards_of_their_mail(mailbox, smtp_sink, team):
    mailbox.deliver(mail("A titkos ügyfélszámom 12345.", files=(("adat.pdf", b"%PDF adat"),)))
    team("poll", "--once")
    team("tick")
    assert len(to(smtp_sink, ANNA)) == 1
    team("gdpr", "erase", CUSTOMER, "--yes")
    rows = sql(team, "SELECT body_text, attachments FROM outbox WHERE template = 'ticket_update'")
    assert rows and all("12345" not in body and attachments == "[]" for body, attachments in rows)
    assert sql(team, "SELECT count(*) FROM message WHERE kind = 'ticket_update' AND text LIKE '%12345%'") == [(0,)]


def test_a_new_mail_in_an_agents_name_that_fails_the_check_opens_nothing_and_she_is_told(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("Kérem utalják vissza a pénzemet erre a számlára.", signed=False,
                               subject="Visszautalás"))
    assert "1 refused" in team("poll", "--once").stdout
    team("tick")
    assert len(team.tickets()) == 1
    [told] = to(smtp_sink, ANNA)
    assert "no Authentication-Results" in text_of(told)
    # Her authenticated mail to the support address opens a ticket as anyone's does.
    mailbox.deliver(agent_mail("Saját gépem nem indul.", subject="Laptop"))
    assert "1 new_ticket" in team("poll", "--once").stdout


def test_forwards_desk_commands_refusals_and_check_on_postgresql(mailbox, smtp_sink, mailbridge_for, postgres_server):
    url = postgres_server.create_database("mailbridge_agent_day")
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, security=TRUSTED, database={"url": url})
    mailbox.deliver(simple_mail(1, sender=CUSTOMER, subject="Export"))
    desk("poll", "--once")
    mailbox.deliver_many([
        mail("Itt a fájl.", files=(("a.pdf", b"%PDF a"),)),
        agent_mail("#open phone\n#reporter Varga Tünde <tunde@example.hu>\n\nHívott.\n", subject="Hívás"),
        agent_mail("#log phone out\nVisszahívtam.\n"),
        agent_mail("#mine\n", subject="lista"),
        agent_mail("#resolve\nKész.\n", signed=False),
        agent_mail("#mine\n", signed=False, subject="lista"),
    ])
    out = desk("poll", "--once").stdout
    for kind in ("1 reply", "1 agent_opened", "1 agent_logged", "1 agent_queue", "1 outsider", "1 refused"):
        assert kind in out, out
    desk("tick")
    subjects = sorted(str(m["Subject"]) for m in to(smtp_sink, ANNA))
    assert sum("Új üzenet" in s for s in subjects) == 1 and sum("nem fogadta el" in s for s in subjects) == 1
    assert [p.get_filename() for m in to(smtp_sink, ANNA) if "Új üzenet" in str(m["Subject"])
            for p in m.iter_attachments()] == ["a.pdf"]
    assert "ok   agent auth" in desk("check", check=False).stdout
