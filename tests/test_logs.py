"""Logs (issue 17): no log lines among a command's output on a terminal unless `-v`, and the
libraries' records (alembic, APScheduler) as JSON lines like ours, so a journal holds JSON only.

The terminal is a real pseudo-terminal; the daemon a real process stopped by SIGTERM.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from factory import simple_mail

from mailbridge.logs import command_level


def on_terminal(command: list[str], timeout: float = 120) -> str:
    """What a command prints on a terminal (stdout and stderr both on one pseudo-terminal)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    seen, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the command ended and closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, seen.decode(errors="replace")
    finally:
        os.close(leader)
    return seen.decode("utf-8", "replace")


def test_a_command_on_a_terminal_prints_no_log_lines_unless_verbose(mailbox, mailbridge):
    mailbox.deliver(simple_mail(1))
    quiet = on_terminal(mailbridge.command("poll", "--once"))
    assert "fetched 1: 1 new_ticket" in quiet
    assert "mail.fetching" not in quiet and "intake.polled" not in quiet and "info" not in quiet
    listing = on_terminal(mailbridge.command("tickets", "list"))
    assert "CRX-000001" in listing and "[info" not in listing

    mailbox.deliver(simple_mail(2))
    verbose = on_terminal(mailbridge.command("-v", "poll", "--once"))
    assert "fetched 1: 1 new_ticket" in verbose
    assert "mail.fetching" in verbose and "intake.polled" in verbose


def test_off_a_terminal_the_configured_level_holds(mailbox, mailbridge):
    """A journal, a file or cron's mail keeps what logging.level asks for, as before."""
    mailbox.deliver(simple_mail(1))
    result = mailbridge("poll", "--once", subprocess_=True)
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert {"mail.fetching", "intake.polled"} <= set(events)


def test_init_logs_alembic_s_steps_as_json_lines(mailbox, mailbridge_for):
    desk = mailbridge_for(mailbox, init=False, logging={"format": "json"})
    result = desk("init", subprocess_=True)
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    steps = [r for r in records if r.get("logger", "").startswith("alembic")]
    assert any(r["event"].startswith("Running upgrade") for r in steps), result.stderr
    assert all(r["level"] == "info" and r["timestamp"].endswith("Z") for r in steps)


def test_the_daemon_s_journal_holds_json_lines_only_the_scheduler_s_too(mailbox, smtp_sink, mailbridge_for,
                                                                         tmp_path):
    desk = mailbridge_for(mailbox, smtp_sink, logging={"level": "debug", "format": "json"},
                          imap={"poll_interval": 1, "timeout": 3})
    mailbox.deliver(simple_mail(1))
    # A delivery report whose text/rfc822-headers part mail-parser warns about in the parse worker.
    mailbox.deliver((Path(__file__).parent / "corpus" / "bounce_dsn_postfix.eml").read_bytes())
    journal = tmp_path / "journal.log"
    daemon = desk.start("run", output=journal)
    try:
        deadline = time.monotonic() + 60
        while "intake.polled" not in journal.read_text() and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    lines = journal.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # stdout and stderr: not one plain line
    assert "intake.polled" in {r["event"] for r in records}
    assert any(r.get("logger", "").startswith("apscheduler") for r in records), lines[:20]


class _Stream:
    def __init__(self, terminal: bool):
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("configured, verbose, terminal, level", [
    ("info", 0, True, "warning"),     # a person at a terminal: only what needs them
    ("error", 0, True, "error"),      # quieter still if ops asked for it
    ("debug", 0, True, "warning"),
    ("info", 1, True, "info"),        # -v
    ("error", 1, True, "info"),
    ("debug", 1, True, "debug"),
    ("warning", 2, True, "debug"),    # -vv
    ("info", 0, False, "info"),       # a journal, a file, cron: as configured
    ("debug", 0, False, "debug"),
    ("warning", 1, False, "info"),
])
def test_the_level_of_a_command(configured, verbose, terminal, level):
    assert command_level(configured, verbose, _Stream(terminal)) == level


class _Writes:
    """A stream that keeps each write() call apart, as the journal's file sees them."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_each_record_is_one_write_of_one_whole_line_ours_and_the_libraries():
    # Two writes a record (structlog's print: the text, then its line end) let another thread's
    # record land between them: the daemon's journal once held two JSON records on one line.
    import logging

    from mailbridge.logs import configure_logging, get_logger

    stream = _Writes()
    configure_logging("info", "json", stream=stream)  # type: ignore[arg-type]
    try:
        get_logger("mailbridge.test").info("intake.polled", fetched=3)
        logging.getLogger("apscheduler.executors.default").warning("Running job %s", "outbox")
        get_logger("mailbridge.test").warning("job.failed", job="sla")
    finally:
        configure_logging("warning", "json")
    assert len(stream.writes) == 3
    for text in stream.writes:
        assert text.endswith("\n") and text.count("\n") == 1
        json.loads(text)
