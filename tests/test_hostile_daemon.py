"""Issue 12, "no thread of the daemon ever dies": poisoned outbox rows, internationalised
addresses, a read-only or unreachable database, a clock run ahead, and a daemon that
goes on through all of it (real Dovecot, aiosmtpd and SQLite files; nothing mocked)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from factory import simple_mail
from servers import SmtpSink
from test_scale_out import _wait

AGENTS = [{"name": "Kiss Anna", "email": "kiss.anna@crossec.com", "areas": ["Egyéb"], "fallback": True}]
IDN = "user@árvíz.hu"  # an internationalised domain, ASCII local part
IDN_A_LABEL = "user@xn--rvz-dla6d.hu"  # the same mailbox, its domain in IDNA 2008 A-label form
UTF8_LOCAL = "józsef@example.hu"  # a local part only SMTPUTF8 can carry
POISONED = "template = 'agent_assigned' AND ticket_id = 1"  # the row the tests spoil (queued at intake)


def mail_from(n: int, address: str) -> bytes:
    """A customer's mail from `address`, the header in raw UTF-8 as an SMTPUTF8 (RFC 6532) mail has it."""
    return simple_mail(n).replace(f"customer{n}@example.hu".encode(), address.encode("utf-8"))


def rows(desk, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(desk.config.parent / "mailbridge.db") as db:
        return db.execute(sql, args).fetchall()


def write(desk, sql: str, *args) -> None:
    with sqlite3.connect(desk.config.parent / "mailbridge.db") as db:
        db.execute(sql, args)


def later(**delta) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.fixture
def plain_sink():
    """An SMTP server that does not offer SMTPUTF8."""
    with SmtpSink(smtputf8=False) as sink:
        yield sink


# --- internationalised addresses ---------------------------------------------------------------


def test_an_idn_customer_is_acknowledged_over_smtputf8(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(mail_from(1, IDN))
    desk("poll", "--once")
    result = desk("tick", check=False)
    no_traceback(result)
    assert result.returncode == 0 and "1 acknowledged" in result.stdout
    [ack] = [e for e in smtp_sink.envelopes if IDN in e.rcpt_tos]
    assert ack.rcpt_tos == [IDN]
    assert f"To: {IDN}".encode() in ack.raw  # readable (RFC 6532), not an encoded word around an address
    [ticket] = desk.tickets()
    assert ticket["status"] == "acknowledged"


def test_without_smtputf8_an_idn_domain_is_sent_as_its_a_label(mailbox, plain_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, plain_sink, agents=AGENTS)
    mailbox.deliver(mail_from(1, IDN))
    desk("poll", "--once")
    result = desk("tick", check=False)
    no_traceback(result)
    assert result.returncode == 0
    [ack] = [e for e in plain_sink.envelopes if IDN_A_LABEL in e.rcpt_tos]
    assert f"To: {IDN_A_LABEL}".encode() in ack.raw and max(ack.raw) < 128
    assert desk.tickets()[0]["status"] == "acknowledged"


def test_without_smtputf8_a_non_ascii_local_part_fails_once_with_its_reason(mailbox, plain_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, plain_sink, agents=AGENTS)
    mailbox.deliver(mail_from(1, UTF8_LOCAL))
    desk("poll", "--once")
    result = desk("tick", check=False)
    no_traceback(result)
    assert result.returncode == 0 and "1 failed" in result.stdout
    assert len(plain_sink.messages) == 1 and plain_sink.messages[0]["To"] == "kiss.anna@crossec.com"  # the notice
    [(status, attempts, error)] = rows(desk, "SELECT status, attempts, last_error FROM outbox WHERE template = 'ack'")
    assert (status, attempts) == ("failed", 1) and "SMTPUTF8" in error
    notes = json.loads(desk("notifications", "--json").stdout)
    assert "outbox_failed" in [n["kind"] for n in notes]  # the assignee is told
    assert rows(desk, "SELECT undeliverable FROM reporter") == [(0,)]  # our server's limit, not their address
    desk("tick", "--at", later(days=1))
    assert rows(desk, "SELECT attempts FROM outbox WHERE template = 'ack'") == [(1,)]  # not tried again
    assert len(plain_sink.messages) == 1


# --- poisoned outbox rows ----------------------------------------------------------------------


def test_a_poisoned_row_fails_after_its_tries_and_the_round_goes_on(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, outbox={"max_attempts": 3})
    mailbox.deliver_many([simple_mail(1), simple_mail(2)])
    desk("poll", "--once")
    # The first ticket's notice to its agent cannot be built (its stored headers are no JSON).
    write(desk, f"UPDATE outbox SET headers = '{{not json' WHERE {POISONED}")
    result = desk("tick", check=False)
    no_traceback(result)
    assert result.returncode == 0
    assert len(smtp_sink.messages) == 3  # every other row of the round went out
    for n, at in enumerate((later(minutes=2), later(minutes=10)), start=2):
        desk("tick", "--at", at)
        assert rows(desk, f"SELECT attempts FROM outbox WHERE {POISONED}") == [(n,)]
    [(status, error)] = rows(desk, f"SELECT status, last_error FROM outbox WHERE {POISONED}")
    assert status == "failed" and "JSONDecodeError" in error
    desk("tick", "--at", later(days=2))
    assert rows(desk, f"SELECT attempts FROM outbox WHERE {POISONED}") == [(3,)]  # done: never tried again
    assert "outbox.failed" in [e["type"] for e in desk.ticket("CRX-000001")["events"]]
    notes = json.loads(desk("notifications", "--json").stdout)
    assert [n["ticket"] for n in notes if n["kind"] == "outbox_failed"] == ["CRX-000001"]


def test_a_row_with_a_header_injecting_address_fails_at_once(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    write(desk, f"UPDATE outbox SET recipients = ? WHERE {POISONED}", "a@example.hu\r\nBcc: b@example.hu")
    result = desk("tick", check=False)
    no_traceback(result)
    assert result.returncode == 0 and "1 failed" in result.stdout
    assert [str(m["To"]) for m in smtp_sink.messages] == ["customer1@example.hu"]  # the acknowledgement
    [(status, error)] = rows(desk, f"SELECT status, last_error FROM outbox WHERE {POISONED}")
    assert status == "failed" and "not a valid address" in error


def test_an_unreadable_row_fails_after_its_tries_and_does_not_block_the_rest(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, outbox={"max_attempts": 2})
    mailbox.deliver_many([simple_mail(1), simple_mail(2)])
    desk("poll", "--once")
    # Bytes that are no UTF-8 in a text column (a damaged file, a foreign writer): the row cannot be read.
    write(desk, f"UPDATE outbox SET body_text = CAST(X'FFFE41' AS TEXT) WHERE {POISONED}")
    result = desk("tick", check=False)
    no_traceback(result)
    assert result.returncode == 0 and len(smtp_sink.messages) == 3
    desk("tick", "--at", later(minutes=5))
    [(status, attempts, error)] = rows(desk, f"SELECT status, attempts, last_error FROM outbox WHERE {POISONED}")
    assert (status, attempts) == ("failed", 2) and "cannot be read" in error


# --- the clock ---------------------------------------------------------------------------------


def test_a_tick_a_year_ahead_does_not_park_mail_for_a_year(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    smtp_sink.stop()
    assert "retrying" in desk("tick", "--at", later(days=365)).stdout
    smtp_sink.start()
    desk("tick", "--at", later(minutes=5))  # the real clock, a few minutes on: the back-off is over
    # The acknowledgement and the assignment notice; and, since a year on the acknowledgement was
    # still not sent (SMTP down), the assignee's missed-deadline warning from that tick.
    assert sorted(str(m["To"]) for m in smtp_sink.messages) == ["customer1@example.hu"] + ["kiss.anna@crossec.com"] * 2
    assert [m["Subject"].startswith("[CRX-000001] Lejárt a kapcsolatfelvételi határidő")
            for m in smtp_sink.messages].count(True) == 1


# --- the database ------------------------------------------------------------------------------


def read_only(folder: Path) -> list[str]:
    """A command prefix that runs a process with `folder` read-only (EROFS, as under
    ProtectSystem=strict without a StateDirectory): a private read-only bind mount as root
    (root writes through file modes), plain file modes otherwise."""
    if os.geteuid() != 0:
        for path in [folder, *folder.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a folder read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount read-only here: {probe.stderr.decode(errors='replace').strip()}")
    return ["unshare", "-m", "sh", "-c", script, str(folder)]


def run(prefix: list[str], desk, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *desk.command(*args)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_tick_on_a_read_only_database_says_one_line_and_exits_1(mailbox, smtp_sink, mailbridge_for, tmp_path):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, retention={"closed_ticket_days": 30},
                          storage={"path": str(tmp_path / "files")})
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    state = tmp_path / "state"  # the database alone in a folder that turns read-only
    state.mkdir()
    for path in tmp_path.glob("mailbridge.db*"):
        path.rename(state / path.name)
    desk.config.write_text(desk.config.read_text().replace(f"{tmp_path}/mailbridge.db", f"{state}/mailbridge.db"))
    before = b"".join(p.read_bytes() for p in sorted(state.iterdir()))
    result = run(read_only(state), desk, "tick")
    no_traceback(result)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mailbridge: ")
    assert "read" in result.stderr.strip().splitlines()[-1]  # says why: the database is read-only
    failed = [json.loads(line)["job"] for line in result.stderr.splitlines()
              if line.startswith("{") and json.loads(line)["event"] == "job.failed"]
    assert failed == ["acknowledge", "send"]  # retention (nothing to purge) ran, and the sender was tried
    assert b"".join(p.read_bytes() for p in sorted(state.iterdir())) == before  # nothing written


def test_tick_and_run_with_a_database_that_cannot_be_opened_say_one_line(mailbox, smtp_sink, mailbridge_for, tmp_path):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, init=False)
    state = tmp_path / "state"
    state.mkdir()
    (state / "placeholder").write_text("")
    desk.config.write_text(desk.config.read_text().replace(f"{tmp_path}/mailbridge.db", f"{state}/mailbridge.db"))
    prefix = read_only(state)
    for command in ("tick", "run"):
        result = run(prefix, desk, command)
        no_traceback(result)
        assert result.returncode == 1, (command, result.stderr)
        [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
        assert line.startswith("mailbridge: ") and "database" in line
    assert sorted(p.name for p in state.iterdir()) == ["placeholder"]


# --- the daemon --------------------------------------------------------------------------------


class WatchdogSocket:
    """systemd's notify socket, standing in: counts the WATCHDOG=1 pings the daemon sends."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.pings: list[float] = []
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, OSError):
                continue
            if b"WATCHDOG=1" in data:
                self.pings.append(time.monotonic())

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_the_daemon_goes_on_past_a_poisoned_row_and_an_idn_customer(mailbox, smtp_sink, mailbridge_for, tmp_path,
                                                                   monkeypatch):
    """The fault test: a poisoned outbox row and an IDN customer, then an ordinary mail."""
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, outbox={"max_attempts": 1},
                          imap={"poll_interval": 1, "timeout": 3})
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    write(desk, f"UPDATE outbox SET headers = '{{not json' WHERE {POISONED}")  # (a) poisoned
    watchdog = WatchdogSocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")  # a ping every 2 s
    log = tmp_path / "daemon.log"
    daemon = desk.start("run", output=log)
    try:
        _wait(lambda: rows(desk, f"SELECT status FROM outbox WHERE {POISONED}") == [("failed",)], 60,
              "the poisoned row to fail")
        mailbox.deliver(mail_from(2, IDN))  # (b) an internationalised address writes in
        _wait(lambda: any(IDN in e.rcpt_tos for e in smtp_sink.envelopes), 60, "the IDN customer's acknowledgement")
        mailbox.deliver(simple_mail(3))  # and the next ordinary mail
        _wait(lambda: any("customer3@example.hu" in e.rcpt_tos for e in smtp_sink.envelopes), 60,
              "the next customer's acknowledgement")
        assert daemon.poll() is None  # alive
        pings = len(watchdog.pings)
        time.sleep(5)
        assert len(watchdog.pings) > pings  # its loops still turn: the watchdog is petted
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
        watchdog.close()
    assert mailbox.count("INBOX") == 0
    [(error,)] = rows(desk, f"SELECT last_error FROM outbox WHERE {POISONED}")
    assert "JSONDecodeError" in error
    text = log.read_text()
    assert "Traceback" not in text and "Exception in thread" not in text
    events = [e["event"] for e in journal(log)]
    assert events.count("outbox.poisoned") == 1 and events.count("outbox.failed") == 1  # each incident once
    assert "watchdog.withheld" not in events
    assert IDN not in text and "árvíz" not in text  # no address in the log


def test_the_intake_loop_survives_a_fault_and_recovers_when_it_is_mended(mailbox, smtp_sink, mailbridge_for, tmp_path):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, imap={"poll_interval": 1, "timeout": 3})
    # Where intake notes its last poll (for `check` and the alarm) cannot be written: every poll
    # fails after its mail is stored, with an error no adapter turned into ours (OSError).
    state = tmp_path / "storage" / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.write_text("not a folder")
    log = tmp_path / "daemon.log"
    daemon = desk.start("run", output=log)
    try:
        mailbox.deliver(simple_mail(1))
        _wait(lambda: sum(e["event"] == "intake.failed" for e in journal(log)) >= 1, 60, "the fault")
        time.sleep(6)  # several retries with back-off
        state.unlink()  # ops mend it
        mailbox.deliver(simple_mail(2))
        _wait(lambda: any("customer2@example.hu" in e.rcpt_tos for e in smtp_sink.envelopes), 60,
              "the next mail to be taken in and acknowledged")
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    text = log.read_text()
    assert "Traceback" not in text and "Exception in thread" not in text
    events = [e for e in journal(log)]
    [failed] = [e for e in events if e["event"] == "intake.failed"]  # once per incident, not per retry
    assert failed["mailbox"] == "default" and failed["error_type"] == "FileExistsError" and "raised_at" in failed
    assert "intake.recovered" in [e["event"] for e in events]


# --- the pieces --------------------------------------------------------------------------------


def test_a_job_that_raises_anything_is_logged_once_per_incident_and_counted():
    from mailbridge import jobs, metrics

    calls = iter([ValueError("one"), ValueError("two"), None, KeyError("three")])

    def flaky(_now):
        error = next(calls)
        if error is not None:
            raise error
        return {"done": 1}

    flaky.__name__ = "flaky_job_for_test"
    before = metrics.REGISTRY.get_sample_value("mailbridge_errors_total", {"job": "flaky_job_for_test"}) or 0
    with capture_logs() as logs:
        results = [jobs._guarded(flaky) for _ in range(4)]
    assert results == [None, None, {"done": 1}, None]
    assert [e["event"] for e in logs] == ["job.failed", "job.recovered", "job.failed"]
    assert logs[0]["error_type"] == "ValueError" and "one" not in json.dumps(logs[0])  # no message: it may quote data
    after = metrics.REGISTRY.get_sample_value("mailbridge_errors_total", {"job": "flaky_job_for_test"})
    assert after - before == 3


def test_the_watchdog_is_withheld_when_a_loop_stops_turning():
    from mailbridge import jobs, service

    clock = [0.0]
    intake = service.Heartbeat(5, clock=lambda: clock[0])
    sender = service.Heartbeat(60, clock=lambda: clock[0])
    alive = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True)
    alive.start()
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    assert jobs.stuck_loops({"intake-default": (intake, alive), "outbox": (sender, None)}) == []
    assert jobs.stuck_loops({"intake-default": (intake, dead)}) == ["intake-default"]  # its thread died
    clock[0] = 16.0
    assert jobs.stuck_loops({"intake-default": (intake, alive), "outbox": (sender, None)}) == ["intake-default"]
    clock[0] = 200.0
    intake.beat()
    assert jobs.stuck_loops({"intake-default": (intake, alive), "outbox": (sender, None)}) == ["outbox"]


def test_run_with_its_metrics_port_taken_says_one_line(mailbox, smtp_sink, mailbridge_for):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, metrics={"listen": f"127.0.0.1:{port}"})
        result = desk("run", subprocess_=True, check=False, timeout=60)
    no_traceback(result)
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert line.startswith("mailbridge: metrics.listen: cannot listen on")


def _catches_sigterm(pid: int) -> bool:
    """Has the process installed its own SIGTERM handler yet (Linux: SigCgt in /proc)?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def _target(fd: Path) -> str:
    """What an open file descriptor names ("" if it was closed since it was listed: the
    starting daemon opens and closes its modules' files all the while)."""
    try:
        return os.readlink(fd)
    except FileNotFoundError:
        return ""


def test_a_sigterm_while_the_daemon_still_starts_is_a_clean_stop(mailbox, smtp_sink, mailbridge_for, tmp_path):
    # systemd may stop a unit that is still starting; the test that kills and restarts daemons does too.
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS)
    journal = tmp_path / "daemon.log"
    daemon = desk.start("run", output=journal)
    deadline = time.monotonic() + 30
    while not _catches_sigterm(daemon.pid) and daemon.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    # Caught before the daemon even opens its database: no moment of its start dies by the signal.
    open_files = [_target(fd) for fd in Path(f"/proc/{daemon.pid}/fd").iterdir()]
    daemon.send_signal(signal.SIGTERM)  # at once: the daemon is still loading and connecting
    assert not any("mailbridge.db" in path for path in open_files), open_files
    assert daemon.wait(timeout=30) == 0
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines() if line.startswith("{")]
    assert "daemon.stopping" in events and "Traceback" not in journal.read_text()
