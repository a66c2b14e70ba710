"""Statuses that tell the truth (SPEC, Outgoing mail): a ticket is acknowledged only once the
SMTP server accepted its acknowledgement, and a mailbox's history is not acknowledged on go-live.

Real parts: Dovecot in, aiosmtpd out (stopped for an outage, refusing on cue), SQLite files
and a throwaway PostgreSQL. Ticks are dated from the ticket's own deadline, never a calendar day.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from factory import simple_mail
from test_workflow import TRUSTED, agent_mail

AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Crossec Norma", "Egyéb"],
           "fallback": True}]
CUSTOMER = "customer1@example.hu"


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, mailbox, smtp_sink, mailbridge_for):
    sections: dict = {"agents": AGENTS}
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        sections["database"] = {"url": server.create_database(f"ack_{abs(hash(request.node.name)) % 10**8}")}
    return mailbridge_for(mailbox, smtp_sink, **sections)


def utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def to(sink, address: str) -> list:
    return [m for m in sink.messages if str(m["To"]) == address]


def events(desk, ticket_id: str) -> list[str]:
    return [e["type"] for e in desk.ticket(ticket_id)["events"]]


def test_an_acknowledgement_waiting_out_an_smtp_outage_is_not_an_acknowledgement(mailbox, smtp_sink, desk):
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    [ticket] = desk.tickets()
    deadline = utc(ticket["ack_deadline"])
    smtp_sink.stop()

    queued = desk("tick", "--at", (deadline - timedelta(hours=30)).isoformat()).stdout
    assert "1 acknowledgements queued" in queued and "0 sent" in queued and "0 acknowledged" in queued
    [ticket] = desk.tickets()
    assert (ticket["status"], ticket["acknowledged_at"]) == ("new", None)  # queued is not told
    assert "ack.queued" in events(desk, "CRX-000001") and "ack.sent" not in events(desk, "CRX-000001")

    # Still down when the deadline nears and passes: the watcher warns, then raises the alarm,
    # and the acknowledgement job queues no second one beside the one retrying.
    desk("tick", "--at", (deadline - timedelta(hours=2)).isoformat())
    desk("tick", "--at", (deadline + timedelta(hours=1)).isoformat())
    seen = events(desk, "CRX-000001")
    assert seen.count("sla.warning") == 1 and seen.count("sla.breached") == 1 and seen.count("ack.queued") == 1
    notes = json.loads(desk("notifications", "--agent", "kiss.anna@crossec.com", "--json").stdout)
    assert {"sla.warning", "sla.breached"} <= {n["kind"] for n in notes}

    # SMTP is back: the row goes out, and only now is the ticket acknowledged, at that tick.
    smtp_sink.start()
    back = (deadline + timedelta(hours=2)).replace(microsecond=0)
    desk("tick", "--at", back.isoformat())
    [ack] = to(smtp_sink, CUSTOMER)
    assert "[CRX-000001]" in ack["Subject"]
    [ticket] = desk.tickets()
    assert ticket["status"] == "acknowledged" and utc(ticket["acknowledged_at"]) == back
    desk("tick", "--at", (back + timedelta(hours=1)).isoformat())
    assert len(to(smtp_sink, CUSTOMER)) == 1  # once, and no second acknowledgement after it


def test_an_acknowledgement_refused_for_good_leaves_the_ticket_new_overdue_and_the_assignee_told(
        mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    [ticket] = desk.tickets()
    deadline = utc(ticket["ack_deadline"])
    # The agent's notice (queued at intake) and the acknowledgement: both refused for good.
    smtp_sink.refuse_next(2, code=550, text="5.1.1 No such user here")
    assert "2 failed" in desk("tick", "--at", (deadline - timedelta(hours=30)).isoformat()).stdout
    [ticket] = desk.tickets()
    assert (ticket["status"], ticket["acknowledged_at"]) == ("new", None)
    notes = json.loads(desk("notifications", "--agent", "kiss.anna@crossec.com", "--json").stdout)
    assert any(n["kind"] == "outbox_failed" and "CRX-000001" in n["text"] and "No such user" in n["text"]
               for n in notes), notes

    desk("tick", "--at", (deadline + timedelta(hours=1)).isoformat())
    seen = events(desk, "CRX-000001")
    assert seen.count("ack.queued") == 1 and "ack.sent" not in seen  # not sent again to a refused address
    assert "sla.breached" in seen
    assert to(smtp_sink, CUSTOMER) == []
    [ticket] = desk.tickets()
    assert (ticket["status"], ticket["acknowledged_at"]) == ("new", None)


def test_an_agents_reply_before_any_acknowledgement_acknowledges_once_the_server_took_it(mailbox, smtp_sink,
                                                                                          mailbridge_for):
    """The relay tells the customer the ticket ID: no acknowledgement is queued beside it, and
    the ticket counts as acknowledged when the server accepted the relay, not when it was queued."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, security=TRUSTED)
    mailbox.deliver(simple_mail(1, subject="Crossec Norma export hiba"))
    desk("poll", "--once")
    mailbox.deliver(agent_mail("Tisztelt Ügyfelünk!\n\nA hibát a 2026.3.2-es verzió javítja.\n"))
    assert "1 agent_reply" in desk("poll", "--once").stdout
    [ticket] = desk.tickets()
    assert ticket["acknowledged_at"] is None  # the relay waits in the outbox
    sent_at = (utc(ticket["ack_deadline"]) - timedelta(hours=12)).replace(microsecond=0)
    desk("tick", "--at", sent_at.isoformat())
    [relay] = to(smtp_sink, CUSTOMER)
    assert "2026.3.2-es verzió" in relay.get_body(("plain",)).get_content()
    [ticket] = desk.tickets()
    assert utc(ticket["acknowledged_at"]) == sent_at and ticket["status"] == "in_progress"
    assert "ack.queued" not in events(desk, "CRX-000001")


def test_going_live_on_a_mailbox_with_history_acknowledges_only_the_new_mail(mailbox, smtp_sink, mailbridge_for):
    zone = ZoneInfo("Europe/Budapest")
    today = datetime.now(zone).date()
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, tickets={"acknowledge_since": today.isoformat()})
    now = datetime.now(timezone.utc)
    # Received by our server three and ten days ago (IMAP INTERNALDATE), and just now; every
    # Date header says November: what counts is when our server took the mail in.
    mailbox.deliver(simple_mail(1, sender="old1@example.hu"), msg_time=now - timedelta(days=10))
    mailbox.deliver(simple_mail(2, sender="old2@example.hu"), msg_time=now - timedelta(days=3))
    mailbox.deliver(simple_mail(3, sender="new@example.hu"))
    desk("poll", "--once")
    desk("tick")
    desk("tick", "--at", (now + timedelta(days=20)).isoformat())  # long past any deadline

    customers = [m for m in smtp_sink.messages if not str(m["To"]).endswith("@crossec.com")]
    assert [str(m["To"]) for m in customers] == ["new@example.hu"]
    tickets = {t["reporter_email"]: t for t in desk.tickets()}
    assert len(tickets) == 3
    for old in ("old1@example.hu", "old2@example.hu"):
        ticket = tickets[old]
        assert (ticket["status"], ticket["ack_deadline"], ticket["acknowledged_at"]) == ("new", None, None)
        assert ticket["assignee"] == "kiss.anna@crossec.com"  # someone still reads the old mail
        shown = desk.ticket(ticket["id"])
        [why] = [e for e in shown["events"] if e["type"] == "ack.before_go_live"]
        assert today.isoformat() in json.dumps(why["detail"])
        seen = [e["type"] for e in shown["events"]]
        assert "ack.queued" not in seen and "sla.warning" not in seen and "sla.breached" not in seen
    assert tickets["new@example.hu"]["status"] == "acknowledged"
    # The assignee heard of all three, as of any new ticket.
    notices = to(smtp_sink, "kiss.anna@crossec.com")
    assert sorted(re.search(r"CRX-\d+", m["Subject"]).group() for m in notices
                  if "CRX" in m["Subject"]) == ["CRX-000001", "CRX-000002", "CRX-000003"]
    # ... and the notice of an old one says the customer was not acknowledged, the new one's gives its deadline.
    said = {re.search(r"CRX-\d+", m["Subject"]).group(): m.get_content() for m in notices
            if "New ticket" in m["Subject"] or "Új" in m["Subject"]}
    assert "acknowledge_since" in said[tickets["old1@example.hu"]["id"]]
    assert "acknowledge_since" not in said[tickets["new@example.hu"]["id"]]


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "1.12.2026"])
def test_a_bad_acknowledge_since_is_a_config_error_naming_the_key(mailbox, mailbridge_for, value):
    desk = mailbridge_for(mailbox, init=False, tickets={"acknowledge_since": value})
    result = desk("check", check=False)
    assert result.returncode == 2
    assert "tickets.acknowledge_since" in result.stderr and "YYYY-MM-DD" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tickets_told_missed_for_good_do_not_crowd_out_the_next_ones(mailbox, smtp_sink, mailbridge_for,
                                                                     monkeypatch):
    """A ticket can stay `new` for good (no address; an acknowledgement refused for good): once
    its assignee was told the deadline passed, the watcher's batch goes on to the others."""
    from mailbridge.workflow import acknowledge

    monkeypatch.setattr(acknowledge, "BATCH", 1)  # one ticket per round: the point, with two
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    for name in ("Horváth Ödön", "Varga Tünde"):
        desk("ticket", "open", "--channel", "phone", "--name", name, "--category", "Egyéb", "--area", "Egyéb",
             "--subject", "Visszahívást kér", "--body", "Telefonon jelezte.")
    missed = max(utc(t["ack_deadline"]) for t in desk.tickets()) + timedelta(hours=1)
    desk("tick", "--at", missed.isoformat())
    desk("tick", "--at", (missed + timedelta(minutes=5)).isoformat())
    assert [events(desk, t).count("sla.breached") for t in ("CRX-000001", "CRX-000002")] == [1, 1]
