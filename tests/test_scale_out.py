"""Several daemons on one PostgreSQL database and one mailbox (#7): nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from factory import simple_mail
from mailbridge.policy.deadline import is_working_day

AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Egyéb"], "fallback": True}]


def _poller_pid(engine: sa.Engine) -> int | None:
    """The process holding a mailbox's advisory lock, from its application_name."""
    with engine.connect() as connection:
        name = connection.execute(sa.text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted")).scalar()
    return int(name.rsplit(" ", 1)[1]) if name else None


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_three_daemons_one_killed_every_mail_and_acknowledgement_once(mailbox, smtp_sink, mailbridge_for,
                                                                      postgres_server, tmp_path):
    url = postgres_server.create_database("mailbridge_three_daemons")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url}, agents=AGENTS,
                          imap={"poll_interval": 1, "batch_size": 20})
    engine = sa.create_engine(url)

    def count(sql: str) -> int:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()

    total = 300
    journals = iter(tmp_path / f"daemon{n}.log" for n in range(10))  # one each: lines never interleave
    daemons = [desk.start("run", output=next(journals)) for _ in range(3)]
    try:
        _wait(lambda: _poller_pid(engine) is not None, 30, "one daemon to take the mailbox")
        mailbox.deliver_many([simple_mail(i) for i in range(total)])
        _wait(lambda: count("SELECT count(*) FROM ticket") >= 40, 60, "intake to start")
        kills = 0
        for moment in ("mid-intake", "mid-send"):  # SIGKILL the poller while it takes mail in, then sends
            if moment == "mid-send":
                _wait(lambda: count("SELECT count(*) FROM outbox WHERE status = 'sent'") >= total // 2, 120,
                      "half the notices to be sent")
            victim_pid = _poller_pid(engine)
            [victim] = [d for d in daemons if d.pid == victim_pid]
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            kills += 1
            daemons.remove(victim)
            _wait(lambda: _poller_pid(engine) not in (None, victim_pid), 30, "another daemon to take over")
            daemons.append(desk.start("run", output=next(journals)))  # back, as systemd would restart it
            if moment == "mid-intake":
                _wait(lambda: count("SELECT count(*) FROM intake_log WHERE state = 'moved'") == total, 120,
                      "every mail to be taken in")
        _wait(lambda: count("SELECT count(*) FROM outbox WHERE status <> 'sent'") == 0
              and count("SELECT count(*) FROM outbox") >= 2 * total, 120, "every notice to be sent")
        assert f"pid {_poller_pid(engine)}" in desk("check", check=False).stdout  # ops see who polls
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            assert daemon.wait(timeout=20) == 0
        engine.dispose()
    lines = [line for path in tmp_path.glob("daemon*.log") for line in path.read_text().splitlines()]
    events = Counter(json.loads(line)["event"] for line in lines if line.startswith("{"))
    assert events["intake.took_over"] >= 1 and events["intake.standby"] >= 2

    # Every mail recorded once, on a ticket of its own with an ID handed out once.
    with engine.connect() as connection:
        received = connection.execute(sa.text("SELECT message_id FROM message WHERE direction = 'in'")).scalars().all()
        acks = connection.execute(sa.text("SELECT ticket_id, message_id FROM outbox WHERE template = 'ack'")).all()
    assert len(received) == total == len(set(received))
    tickets = desk.tickets()
    assert len(tickets) == total == len({t["id"] for t in tickets})
    assert mailbox.count("INBOX") == 0

    # Every acknowledgement queued once per ticket and received: a second copy only of
    # the one message in hand when the sender was killed, under the same Message-ID.
    assert len(acks) == total == len({ticket for ticket, _ in acks})
    arrived = Counter(m["Message-ID"] for m in smtp_sink.messages if m["Message-ID"] in {mid for _, mid in acks})
    assert set(arrived) == {mid for _, mid in acks}
    assert sum(n - 1 for n in arrived.values()) <= kills


def test_jobs_in_several_processes_at_once_act_on_each_ticket_once(mailbox, smtp_sink, mailbridge_for,
                                                                   postgres_server):
    """The SLA watcher, acknowledgements and retention run in every daemon: a ticket is claimed first."""
    url = postgres_server.create_database("mailbridge_jobs_at_once")
    # Acknowledgements only 08:00-08:01: the tickets stay unacknowledged, so the SLA watcher has work.
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url}, agents=AGENTS,
                          policy={"ack_hours": "08:00-08:01"}, retention={"closed_ticket_days": 30},
                          imap={"batch_size": 200})
    total = 60
    mailbox.deliver_many([simple_mail(i) for i in range(total)])
    desk("poll", "--once")
    engine = sa.create_engine(url)

    def at_once(*args: str) -> None:
        processes = [desk.start(*args) for _ in range(2)]
        for process in processes:
            _out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err

    def count(sql: str) -> int:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar()

    # Dated from today, as the mails were recorded: two weeks on is past every deadline.
    budapest = ZoneInfo("Europe/Budapest")
    late = datetime.now(budapest).replace(hour=12, minute=0, second=0, microsecond=0) + timedelta(days=14)
    at_once("tick", "--at", late.isoformat())  # past every deadline, outside the ack hours
    assert count("SELECT count(*) FROM event WHERE type = 'sla.breached'") == total
    assert count("SELECT count(*) FROM outbox WHERE template = 'sla_warning'") == total
    morning = late.replace(hour=8, minute=0, second=30) + timedelta(days=1)
    while not is_working_day(morning.date(), "HU"):
        morning += timedelta(days=1)
    at_once("tick", "--at", morning.isoformat())  # inside the ack hours, a working day
    assert count("SELECT count(*) FROM outbox WHERE template = 'ack'") == total
    assert count("SELECT count(*) FROM event WHERE type = 'ack.queued'") == total
    assert count("SELECT count(*) FROM outbox WHERE status <> 'sent'") == 0
    closed = morning + timedelta(days=1)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE ticket SET status = 'closed', updated_at = :at"), {"at": closed})
    at_once("gdpr", "retention", "--at", (closed + timedelta(days=62)).isoformat())
    assert count("SELECT count(*) FROM event WHERE type = 'retention.purged'") == total
    assert len({m["Message-ID"] for m in smtp_sink.messages}) == len(smtp_sink.messages)  # nothing sent twice
    engine.dispose()


def test_poll_once_leaves_a_mailbox_another_process_polls(mailbox, mailbridge_for, postgres_server):
    from mailbridge.adapters.db import Database
    from mailbridge.config import load_settings
    from mailbridge.intake.watch import mailbox_identity

    url = postgres_server.create_database("mailbridge_poll_once_lock")
    desk = mailbridge_for(mailbox, database={"url": url})
    mailbox.deliver(simple_mail(1))
    db = Database(url)
    daemon = db.poller_lock(mailbox_identity(load_settings(desk.config).intake_mailboxes[0]))
    assert daemon.acquire()  # as a running daemon on another host holds it
    try:
        assert "skipped: another mailbridge process is polling this mailbox" in desk("poll", "--once").stdout
        assert mailbox.count("INBOX") == 1
    finally:
        daemon.release()
    assert "1 new_ticket" in desk("poll", "--once").stdout
    db.engine.dispose()


def test_hosts_starting_together_each_run_init(mailbox, mailbridge_for, postgres_server):
    """systemd runs `init` before every start: two hosts booting at once must both come up."""
    url = postgres_server.create_database("mailbridge_init_together")
    desk = mailbridge_for(mailbox, database={"url": url}, init=False)
    processes = [desk.start("init") for _ in range(3)]
    results = [process.communicate(timeout=120) + (process.returncode,) for process in processes]
    assert [code for _out, _err, code in results] == [0, 0, 0], results
    assert sum("database: created" in out for out, _err, _code in results) == 1


def test_a_postgresql_restart_under_a_running_daemon_loses_nothing(mailbox, smtp_sink, mailbridge_for,
                                                                   postgres_server, tmp_path):
    url = postgres_server.create_database("mailbridge_pg_restart")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url}, agents=AGENTS, imap={"poll_interval": 1})
    engine = sa.create_engine(url)

    def tickets() -> int:
        with engine.connect() as connection:
            return connection.execute(sa.text("SELECT count(*) FROM ticket")).scalar()

    journal = tmp_path / "daemon.log"
    daemon = desk.start("run", output=journal)
    try:
        mailbox.deliver(simple_mail(1))
        _wait(lambda: tickets() == 1, 60, "the first mail")
        postgres_server.restart()  # every session cut, the mailbox lock's too
        engine.dispose()
        mailbox.deliver(simple_mail(2))
        _wait(lambda: tickets() == 2, 90, "the mail after the restart")
        _wait(lambda: len(smtp_sink.messages) >= 4, 60, "both acknowledgements and notices")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        engine.dispose()
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines() if line.startswith("{")]
    assert "intake.lock_lost" in events or "intake.unavailable" in events
    assert mailbox.count("INBOX") == 0
    # A restart in the middle of a send may repeat the one message in hand, under its Message-ID.
    assert len({m["Message-ID"] for m in smtp_sink.messages}) == 4 and len(smtp_sink.messages) <= 5
