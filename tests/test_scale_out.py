"""Several daemons on one PostgreSQL database and one mailbox (#7): nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from factory import simple_mail

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
