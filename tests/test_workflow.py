"""The policy's workflow against real servers: Dovecot in, aiosmtpd out (P1, P2, P7, P8, P10)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from conftest import CORPUS
from factory import simple_mail

AGENTS = [
    {"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Crossec Norma", "Egyéb"]},
    {"name": "Szabó Péter", "email": "szabo.peter@crossec.com", "areas": ["Egyéb", "GDPR Segédanyagok"],
     "fallback": True},
]


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    return mailbridge_for(mailbox, smtp_sink, agents=AGENTS)


def by_recipient(sink) -> dict[str, list]:
    found: dict[str, list] = {}
    for message in sink.messages:
        found.setdefault(str(message["To"]), []).append(message)
    return found


def header_of(raw: bytes, name: str) -> str:
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def test_customer_gets_an_acknowledgement_with_the_ticket_id(mailbox, smtp_sink, desk):
    raw = (CORPUS / "hu_billing_iso8859_2.eml").read_bytes()
    mailbox.deliver(raw)
    desk("poll", "--once")
    result = desk("tick")
    assert "1 acknowledged" in result.stdout

    sent = by_recipient(smtp_sink)
    [ack] = sent["kovacs.jozsef@example.hu"]
    assert "[CRX-000001]" in ack["Subject"]
    assert "CRX-000001" in ack.get_body(("plain",)).get_content()
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Reply-To"] == "support@crossec.com"
    assert ack["In-Reply-To"] == header_of(raw, "Message-ID")
    # The agent who covers the area was told by mail, and in-system.
    [notice] = sent["kiss.anna@crossec.com"]
    assert "[CRX-000001]" in notice["Subject"]
    notes = json.loads(desk("notifications", "--agent", "kiss.anna@crossec.com", "--json").stdout)
    assert [n["ticket"] for n in notes] == ["CRX-000001"]

    [ticket] = desk.tickets()
    assert ticket["status"] == "acknowledged" and ticket["assignee"] == "kiss.anna@crossec.com"
    assert ticket["acknowledged_at"] and ticket["ack_deadline"]
    shown = desk.ticket("CRX-000001")
    assert [m["direction"] for m in shown["messages"]] == ["in", "out", "out"]
    assert "deadline" in shown["ack_deadline_explained"]["en"]


def test_the_customers_reply_to_the_acknowledgement_threads(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1, sender="anna@example.hu"))
    desk("poll", "--once")
    desk("tick")
    [ack] = by_recipient(smtp_sink)["anna@example.hu"]
    reply = simple_mail(2, sender="anna@example.hu", subject=f"Re: {ack['Subject']}", in_reply_to=ack["Message-ID"])
    mailbox.deliver(reply)
    assert "1 reply" in desk("poll", "--once").stdout
    [ticket] = desk.tickets()
    assert ticket["message_count"] == 2


def test_new_tickets_go_to_the_least_loaded_covering_agent(mailbox, smtp_sink, desk):
    for i in range(4):
        mailbox.deliver(simple_mail(i, subject=f"Egyszerű kérdés {i}", body="Jó napot, lenne egy kérdésem."))
    desk("poll", "--once")
    assignees = [t["assignee"] for t in desk.tickets()]
    # Both cover "Egyéb": they alternate, ties going to the one assigned least recently.
    assert sorted(assignees) == ["kiss.anna@crossec.com"] * 2 + ["szabo.peter@crossec.com"] * 2


def test_smtp_down_for_a_while_then_back_delivers_each_mail_once(mailbox, smtp_sink, desk):
    mailbox.deliver_many([simple_mail(i) for i in range(3)])
    desk("poll", "--once")
    smtp_sink.stop()
    start = datetime.now(timezone.utc)  # the mails were recorded just now: the clock moves on from there
    down = desk("tick", "--at", start.isoformat())
    assert "0 sent" in down.stdout and "retrying" in down.stdout
    desk("tick", "--at", (start + timedelta(seconds=10)).isoformat())  # not due yet: nothing tried
    smtp_sink.start()
    desk("tick", "--at", (start + timedelta(minutes=5)).isoformat())
    desk("tick", "--at", (start + timedelta(minutes=30)).isoformat())
    ids = [m["Message-ID"] for m in smtp_sink.messages]
    assert len(ids) == 6 == len(set(ids))  # 3 acks + 3 agent notices, once each


def test_a_refused_message_is_retried_with_back_off(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    smtp_sink.refuse_next(1, code=451)
    start = datetime.now(timezone.utc)  # the mail was recorded just now: the clock moves on from there
    desk("tick", "--at", start.isoformat())
    assert smtp_sink.messages == []  # refused: the rest of the round waits too
    desk("tick", "--at", (start + timedelta(seconds=30)).isoformat())
    assert len(smtp_sink.messages) == 1  # the one never tried; the refused one waits out its back-off
    desk("tick", "--at", (start + timedelta(minutes=3)).isoformat())
    assert len(smtp_sink.messages) == 2 == len({m["Message-ID"] for m in smtp_sink.messages})


def test_an_auto_responder_without_headers_gets_at_most_five_acknowledgements(mailbox, smtp_sink, desk):
    bot = "robot@example.com"
    for i in range(8):
        mailbox.deliver(simple_mail(i, sender=bot, subject=f"Köszönjük megkeresését ({i})"))
    desk("poll", "--once")
    desk("tick")
    acks = by_recipient(smtp_sink).get(bot, [])
    assert len(acks) == 5
    events = [e["type"] for t in desk.tickets() for e in desk.ticket(t["id"])["events"]]
    assert events.count("ack.rate_limited") == 3


def test_no_acknowledgement_to_automatic_mail(mailbox, smtp_sink, desk):
    mailbox.deliver((CORPUS / "ooo_subject_fr_reponse_automatique.eml").read_bytes())
    desk("poll", "--once")
    desk("tick")
    assert smtp_sink.messages == []


def test_sla_warning_and_breach_reach_the_assignee(mailbox, smtp_sink, mailbridge_for):
    # Acknowledgements only 08:00-08:01: the ticket stays unacknowledged.
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, policy={"ack_hours": "08:00-08:01"})
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    [ticket] = desk.tickets()
    deadline = datetime.fromisoformat(ticket["ack_deadline"])
    desk("tick", "--at", (deadline - timedelta(hours=2)).isoformat())
    desk("tick", "--at", (deadline - timedelta(hours=1)).isoformat())  # warned once only
    desk("tick", "--at", (deadline + timedelta(hours=1)).isoformat())
    events = [e["type"] for e in desk.ticket(ticket["id"])["events"]]
    assert events.count("sla.warning") == 1 and events.count("sla.breached") == 1
    to_agent = [m for m in smtp_sink.messages if "crossec.com" in str(m["To"])]
    assert len([m for m in to_agent if "[CRX-000001]" in m["Subject"]]) == 3  # assigned, warning, breach


def test_notifications_are_marked_read(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    assert len(json.loads(desk("notifications", "--json").stdout)) == 1
    desk("notifications", "--mark-read")
    assert json.loads(desk("notifications", "--json").stdout) == []
    bad = desk("notifications", "--agent", "nobody@crossec.com", check=False)
    assert bad.returncode == 2 and "kiss.anna@crossec.com" in bad.stderr


def test_sla_deadline_command_prints_the_spec_examples(desk):
    assert desk("sla", "deadline", "2024-08-01T10:00:00+02:00").stdout.strip() == "2024-08-04T00:00:00+02:00"
    assert desk("sla", "deadline", "2024-12-20T10:00:00+01:00").stdout.strip() == "2024-12-31T00:00:00+01:00"


def test_resolve_tells_the_customer_and_a_reply_reopens(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1, sender="anna@example.hu"))
    desk("poll", "--once")
    desk("tick")
    desk("ticket", "resolve", "CRX-1", "--outcome", "A hibát a 2026.3.2-es verzió javítja.")
    desk("tick")
    [ack, outcome] = by_recipient(smtp_sink)["anna@example.hu"]
    assert "[CRX-000001]" in outcome["Subject"]
    assert "2026.3.2-es verzió" in outcome.get_body(("plain",)).get_content()
    assert desk.tickets()[0]["status"] == "resolved"

    reply = simple_mail(2, sender="anna@example.hu", subject=f"Re: {outcome['Subject']}",
                        in_reply_to=outcome["Message-ID"])
    mailbox.deliver(reply)
    assert "1 reopened" in desk("poll", "--once").stdout
    assert desk.tickets()[0]["status"] == "in_progress"


def test_a_reply_after_the_reopen_window_opens_a_linked_ticket(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, tickets={"reopen_days": 0})
    mailbox.deliver(simple_mail(1, sender="anna@example.hu"))
    desk("poll", "--once")
    desk("ticket", "resolve", "CRX-000001", "--outcome", "Megoldva.")
    mailbox.deliver(simple_mail(2, sender="anna@example.hu", subject="Re: [CRX-000001] még egyszer"))
    assert "1 follow_up" in desk("poll", "--once").stdout
    old, new = desk.tickets()
    assert old["status"] == "resolved" and new["linked_ticket"] == "CRX-000001"


def test_resolve_rejects_unknown_values_and_writes_nothing(desk):
    for args, word in ((["ticket", "resolve", "CRX-000404", "--outcome", "x"], "no such ticket"),
                       (["ticket", "resolve", "nonsense", "--outcome", "x"], "not a ticket ID"),
                       (["ticket", "resolve", "CRX-1", "--outcome", "x", "--by", "x@y.hu"], "unknown agent")):
        result = desk(*args, check=False)
        assert result.returncode == 2 and word in result.stderr


def test_an_oversize_attachment_is_recorded_and_the_sender_told(mailbox, smtp_sink, desk):
    mailbox.deliver((CORPUS / "attach_oversize.eml").read_bytes())
    desk("poll", "--once")
    desk("tick")
    [ticket] = desk.tickets()
    assert any(a.get("rejected") for a in ticket["attachments"])
    notices = [m for m in smtp_sink.messages if m["To"] == ticket["reporter_email"]]
    assert len(notices) == 2  # what was kept and how to send the rest, and the acknowledgement
    events = [e["type"] for e in desk.ticket(ticket["id"])["events"]]
    assert "attachment.rejected" in events


def test_a_bounce_of_our_acknowledgement_marks_the_address_and_tells_the_assignee(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1, sender="nincs.ilyen@example.hu"))
    desk("poll", "--once")
    desk("tick")
    [ack] = by_recipient(smtp_sink)["nincs.ilyen@example.hu"]
    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.crossec.com>\r\nTo: support@crossec.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.crossec.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nnincs.ilyen@example.hu: user unknown\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.crossec.com\r\n\r\n"
        "Final-Recipient: rfc822; nincs.ilyen@example.hu\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {ack['Message-ID']}\r\nTo: nincs.ilyen@example.hu\r\n"
        "--b--\r\n"
    ).encode()
    mailbox.deliver(dsn)
    assert "1 bounce" in desk("poll", "--once").stdout
    events = [e["type"] for e in desk.ticket("CRX-000001")["events"]]
    assert "outbox.bounced" in events
    notes = json.loads(desk("notifications", "--json", "--all").stdout)
    assert [n["kind"] for n in notes].count("bounced") == 1
    # A later mail from the same address gets no acknowledgement: it would bounce again.
    mailbox.deliver(simple_mail(3, sender="nincs.ilyen@example.hu"))
    desk("poll", "--once")
    desk("tick")
    assert len(by_recipient(smtp_sink)["nincs.ilyen@example.hu"]) == 1


# --- agents working by mail ------------------------------------------------------------

DIVISIONS = [{"name": "Fejlesztés", "email": "fejlesztes@crossec.com", "areas": ["Crossec Norma"]}]
TRUSTED = {"trusted_authserv_ids": ["mx.crossec.com"]}
SIGNED = "Authentication-Results: mx.crossec.com; dkim=pass header.d=crossec.com header.i=@crossec.com\r\n"


@pytest.fixture
def team(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS, security=TRUSTED)
    mailbox.deliver(simple_mail(1, sender="anna@example.hu", subject="Crossec Norma export hiba"))
    desk("poll", "--once")
    desk("tick")
    smtp_sink.clear()
    return desk


def agent_mail(body: str, *, sender: str = "kiss.anna@crossec.com", signed: bool = True, attachment: bool = False,
               subject: str = "Re: [CRX-000001] Crossec Norma export hiba") -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = f"Kiss Anna <{sender}>"
    message["To"] = "support@crossec.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<agent-{abs(hash(body))}@crossec.com>"
    message.set_content(body)
    if attachment:
        message.add_attachment(b"%PDF-1.4 javitas", maintype="application", subtype="pdf", filename="javítás.pdf")
    raw = bytes(message)
    return (SIGNED.encode() + raw) if signed else raw


def test_an_agents_reply_reaches_the_customer_and_a_note_does_not(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("Tisztelt Ügyfelünk!\n\nA hibát a 2026.3.2-es verzió javítja.\n", attachment=True))
    assert "1 agent_reply" in team("poll", "--once").stdout
    team("tick")
    [relay] = by_recipient(smtp_sink)["anna@example.hu"]
    assert "support@crossec.com" in relay["From"] and "[CRX-000001]" in relay["Subject"]
    assert "2026.3.2-es verzió" in relay.get_body(("plain",)).get_content()
    assert [p.get_filename() for p in relay.iter_attachments()] == ["javítás.pdf"]
    assert team.tickets()[0]["status"] == "in_progress"

    smtp_sink.clear()
    mailbox.deliver(agent_mail("#note\nBelső: a fejlesztők már tudnak róla.\n"))
    assert "1 agent_note" in team("poll", "--once").stdout
    team("tick")
    assert smtp_sink.messages == []
    notes = [m for m in team.ticket("CRX-000001")["messages"] if m["kind"] == "agent"]
    assert [m["internal"] for m in notes] == [False, True]


def test_commands_change_the_ticket(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#category számlázással kapcsolatos kérdés\n#area gdpr\n#assign Szabó Péter\n"))
    assert "1 agent_commands" in team("poll", "--once").stdout
    [ticket] = team.tickets()
    assert (ticket["category"], ticket["area"], ticket["assignee"]) == (
        "Számlázással kapcsolatos kérdés", "GDPR Segédanyagok", "szabo.peter@crossec.com")
    team("tick")
    assert "szabo.peter@crossec.com" in by_recipient(smtp_sink)  # the new assignee is told


def test_a_failing_command_changes_nothing_and_the_agent_is_told_why(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#stauts resolved\nKész.\n"))
    assert "1 agent_command_failed" in team("poll", "--once").stdout
    team("tick")
    [reply] = by_recipient(smtp_sink)["kiss.anna@crossec.com"]
    assert "#stauts" in reply.get_body(("plain",)).get_content()
    assert "anna@example.hu" not in by_recipient(smtp_sink)
    assert team.tickets()[0]["status"] == "acknowledged"


def test_escalation_reaches_the_division_and_its_answer_stays_internal(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#escalate Fejlesztés\nKérlek nézzétek meg az exportot.\n"))
    assert "1 agent_escalated" in team("poll", "--once").stdout
    team("tick")
    [handover] = by_recipient(smtp_sink)["fejlesztes@crossec.com"]
    assert "[CRX-000001]" in handover["Subject"]
    assert "Kérlek nézzétek meg" in handover.get_body(("plain",)).get_content()
    assert team.tickets()[0]["status"] == "escalated"

    smtp_sink.clear()
    division = agent_mail("Megvan a hiba, holnap javítjuk.", sender="fejlesztes@crossec.com")
    mailbox.deliver(division.replace(b"Kiss Anna", b"Fejlesztes"))
    assert "1 division_note" in team("poll", "--once").stdout
    team("tick")
    # never relayed to the customer; the assignee gets the answer as a follow-up
    assert [str(m["To"]) for m in smtp_sink.messages] == ["kiss.anna@crossec.com"]
    assert "holnap javítjuk" in smtp_sink.messages[0].get_body(("plain",)).get_content()
    assert team.tickets()[0]["status"] == "in_progress"
    notes = json.loads(team("notifications", "--agent", "kiss.anna@crossec.com", "--json").stdout)
    assert "division_replied" in [n["kind"] for n in notes]


def test_resolve_by_mail_tells_the_customer_the_outcome(mailbox, smtp_sink, team):
    mailbox.deliver(agent_mail("#resolve\nA 2026.3.2-es frissítés megoldotta a hibát.\n"))
    assert "1 agent_resolved" in team("poll", "--once").stdout
    team("tick")
    [outcome] = by_recipient(smtp_sink)["anna@example.hu"]
    assert "megoldotta a hibát" in outcome.get_body(("plain",)).get_content()
    assert team.tickets()[0]["status"] == "resolved"


@pytest.mark.parametrize("headers", [
    "",  # no Authentication-Results at all
    "Authentication-Results: mx.crossec.com; dkim=fail header.d=crossec.com; spf=fail smtp.mailfrom=crossec.com\r\n",
    "Authentication-Results: evil.example; dkim=pass header.d=crossec.com\r\n",  # not a trusted server
])
def test_forged_agent_mail_changes_nothing(mailbox, smtp_sink, team, headers):
    forged = agent_mail("#resolve\nMegoldva, viszlát.\n", signed=False)
    mailbox.deliver(headers.encode() + forged)
    team("poll", "--once")
    team("tick")
    assert team.tickets()[0]["status"] == "acknowledged"
    assert smtp_sink.messages == [] or all("anna@example.hu" != str(m["To"]) for m in smtp_sink.messages)
    events = [e["type"] for e in team.ticket("CRX-000001")["events"]]
    assert "mail.forged_agent" in events and "ticket.resolved" not in events


def test_mail_queued_by_one_process_is_delivered_by_the_next(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once", subprocess_=True)  # queues the agent's notice and exits
    assert smtp_sink.messages == []
    desk("tick", subprocess_=True)
    assert {str(m["To"]) for m in smtp_sink.messages} == {"kiss.anna@crossec.com", "customer1@example.hu"}


def test_a_loop_with_an_auto_responder_ends_within_the_rate_limit(mailbox, smtp_sink, desk):
    """The responder answers everything, keeps no subject tag or References, and sets no headers."""
    bot = "valaszolo@example.com"
    mailbox.deliver(simple_mail(0, sender=bot, subject="Kérdés"))
    answered = 0
    for round_ in range(12):
        desk("poll", "--once")
        desk("tick")
        new = [m for m in smtp_sink.messages if str(m["To"]) == bot][answered:]
        answered += len(new)
        for i, _ in enumerate(new):
            mailbox.deliver(simple_mail(100 * round_ + i, sender=bot, subject="Köszönjük levelét!"))
        if not new:
            break
    assert answered == 5  # max_acks_per_sender_per_day, then silence
    assert round_ < 11


def test_ops_override_a_template_by_dropping_a_file(mailbox, smtp_sink, mailbridge_for, tmp_path):
    override = tmp_path / "my-templates" / "hu"
    override.mkdir(parents=True)
    (override / "ack.j2").write_text(
        "{% block subject %}[{{ ticket.id }}] Megkaptuk{% endblock %}\n"
        "{% block text %}Saját szöveg: {{ ticket.id }}{% endblock %}\n", encoding="utf-8")
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, outbox={"templates_path": str(tmp_path / "my-templates")})
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    desk("tick")
    [ack] = by_recipient(smtp_sink)["customer1@example.hu"]
    assert ack["Subject"] == "[CRX-000001] Megkaptuk"
    assert "Saját szöveg: CRX-000001" in ack.get_body(("plain",)).get_content()


def test_a_message_refused_for_good_is_failed_and_the_assignee_told(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    smtp_sink.refuse_next(1, code=550, text="No such user here")
    result = desk("tick")
    assert "1 failed" in result.stdout
    events = [e["type"] for e in desk.ticket("CRX-000001")["events"]]
    assert "outbox.failed" in events
    notes = json.loads(desk("notifications", "--json").stdout)
    assert "outbox_failed" in [n["kind"] for n in notes]


def test_the_daemon_runs_the_schedule_and_stops_cleanly_on_sigterm(mailbox, smtp_sink, mailbridge_for):
    # A poll interval far longer than the test: only IDLE can bring the mail in this fast.
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, imap={"poll_interval": 300})
    import signal
    import time

    daemon = desk.start("run")
    try:
        time.sleep(3)  # up, polled once, and idling
        mailbox.deliver(simple_mail(1))
        smtp_sink.wait_for(2, timeout=20)  # the agent's notice and the acknowledgement
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=10)  # SIGTERM ends it within 10 s
    assert daemon.returncode == 0, err
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert {"daemon.started", "intake.polled", "ack.queued", "outbox.sent", "daemon.stopped"} <= set(events)
    assert desk.tickets()[0]["status"] == "acknowledged"


def test_the_daemon_survives_an_imap_outage_and_says_so_once(mailbox, smtp_sink, mailbridge_for, dovecot_server):
    import signal
    import time

    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, imap={"poll_interval": 1, "timeout": 3})
    daemon = desk.start("run")
    try:
        time.sleep(3)
        dovecot_server.kill()
        time.sleep(8)  # several retries with back-off
        dovecot_server.start()
        mailbox.deliver(simple_mail(1))
        smtp_sink.wait_for(2, timeout=40)
    finally:
        dovecot_server.start()
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert events.count("intake.unavailable") == 1  # one line per incident, not per retry
    assert "intake.recovered" in events


def test_intake_silence_raises_the_alarm_in_check_metrics_and_the_ops_mailbox(mailbox, smtp_sink, mailbridge_for,
                                                                             dovecot_server):
    import signal
    import time
    import urllib.request

    from servers import free_port

    port = free_port()
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, imap={"poll_interval": 1, "timeout": 3},
                          alarm={"poll_stale_minutes": 0.05, "ops_address": "ops@crossec.com"},
                          metrics={"listen": f"127.0.0.1:{port}"})
    desk("poll", "--once")
    assert "ok   intake" in desk("check", check=False).stdout
    daemon = desk.start("run")
    try:
        time.sleep(3)
        dovecot_server.kill()
        [alarm] = smtp_sink.wait_for(1, timeout=60)
        assert alarm["To"] == "ops@crossec.com" and "Alarm" in alarm["Subject"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'mailbridge_alarm{kind="intake_stale"} 1.0' in page
        assert "mailbridge_last_successful_poll_timestamp_seconds" in page
        assert "FAIL intake" in desk("check", check=False).stdout
    finally:
        dovecot_server.start()
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=10)
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert events.count("intake.stale") == 1


def test_sighup_reloads_agents_without_a_restart(mailbox, smtp_sink, mailbridge_for):
    import signal
    import time

    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS[:1], imap={"poll_interval": 1})
    daemon = desk.start("run")
    try:
        time.sleep(3)
        text = desk.config.read_text(encoding="utf-8").replace("kiss.anna@crossec.com", "uj.kollega@crossec.com")
        desk.config.write_text(text.replace('name = "Kiss Anna"', 'name = "Új Kolléga"'), encoding="utf-8")
        daemon.send_signal(signal.SIGHUP)
        time.sleep(1)
        mailbox.deliver(simple_mail(1))
        smtp_sink.wait_for(2, timeout=20)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err
    assert "uj.kollega@crossec.com" in {str(m["To"]) for m in smtp_sink.messages}
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "config.reloaded" in events and events.count("daemon.started") == 1
