"""Hostile input on the command line and in the config (issue 12): one line, exit 2 (or 1), nothing written.

Every case runs the real entry point; a few run as a process of their own so that
what a user's terminal shows is what is asserted (no traceback reaches it).
"""

from __future__ import annotations

import json
import resource
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Mailbridge
from factory import simple_mail
from test_workflow import AGENTS, DIVISIONS

EVIL = "evil@example"


def dump(database: Path) -> list[str]:
    """Every row of a SQLite database, as SQL: equal dumps mean nothing was written."""
    conn = sqlite3.connect(f"file:{database}?mode=rw", uri=True)  # read-write only to tidy up the WAL on close
    try:
        conn.execute("PRAGMA query_only = ON")
        return list(conn.iterdump())
    finally:
        conn.close()


def one_line(result: subprocess.CompletedProcess) -> str:
    """The single line a refused command prints on stderr, checked to be single and traceback-free."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and lines[0].startswith("mailbridge"), result.stderr
    return lines[0]


def open_phone(desk: Mailbridge, subject: str) -> None:
    desk("ticket", "open", "--channel", "phone", "--name", "Tóth Ákos", "--category", "Egyéb", "--area", "Egyéb",
         "--subject", subject)


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    """An initialised SQLite desk with two tickets: CRX-000001 has LIKE's wildcards in its subject."""
    bridge = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS)
    open_phone(bridge, "Kedvezmény 100% a_b")
    open_phone(bridge, "Számla")
    return bridge


# --------------------------------------------------------------------------- values on the command line

@pytest.mark.parametrize("args, said", [
    (["tickets", "list", "--limit", "99999999999999999999"], "--limit"),
    (["tickets", "list", "--limit", "-1"], "--limit"),
    (["sla", "deadline", "9999-12-31T23:00"], "9999-12-31T23:00"),
    (["sla", "deadline", "0001-01-01T00:00"], "0001-01-01T00:00"),
    (["gdpr", "retention", "--dry-run", "--at", "0001-01-01T00:00"], "0001-01-01T00:00"),
    (["tickets", "show", "99999999999999999999"], "99999999999999999999"),
    (["tickets", "show", "CRX-١"], "not a ticket ID: 'CRX-١'"),   # Arabic-Indic one
    (["tickets", "show", "１"], "not a ticket ID: '１'"),           # full-width one
    (["ticket", "status", "CRX-٢", "closed"], "not a ticket ID"),
    (["ticket", "status", "CRX-000001", "in_progress", "--by", EVIL], f"unknown agent: {EVIL}"),
    (["ticket", "assign", "CRX-000001", "Kiss Anna", "--by", EVIL], f"unknown agent: {EVIL}"),
    (["ticket", "escalate", "CRX-000001", "Fejlesztés", "--by", EVIL], f"unknown agent: {EVIL}"),
    (["ticket", "merge", "CRX-000002", "CRX-000001", "--by", EVIL], f"unknown agent: {EVIL}"),
    (["ticket", "resolve", "CRX-000001", "--outcome", "Kész.", "--by", EVIL], f"unknown agent: {EVIL}"),
    (["quarantine", "retry", "99999999999999999999"], "99999999999999999999"),
    (["tickets", "search", ""], "search"),
    (["tickets", "search", "  "], "search"),
    # An argument that is not UTF-8 (argv bytes 0xff) reaches Python as a lone surrogate.
    (["ticket", "open", "--channel", "phone", "--name", "T\udcffth", "--category", "Egyéb", "--area", "Egyéb",
      "--subject", "s"], "not valid UTF-8"),
])
def test_a_bad_value_is_one_line_exit_2_and_nothing_is_written(desk, tmp_path, args, said):
    before = dump(tmp_path / "mailbridge.db")
    result = desk(*args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in one_line(result)
    assert dump(tmp_path / "mailbridge.db") == before


def test_a_real_process_shows_one_line_for_a_bad_value(desk, tmp_path):
    before = dump(tmp_path / "mailbridge.db")
    for args in (["tickets", "list", "--limit", "99999999999999999999"], ["sla", "deadline", "9999-12-31T23:00"],
                 ["ticket", "status", "CRX-000001", "closed", "--by", EVIL]):
        result = desk(*args, check=False, subprocess_=True)
        assert result.returncode == 2, result.stderr
        one_line(result)
    # Bytes that are not UTF-8, as a shell passes them.
    raw = subprocess.run([*desk.command("tickets", "search"), b"\xff\xfe"], capture_output=True, text=True)
    assert raw.returncode == 2 and "not valid UTF-8" in one_line(raw)
    assert dump(tmp_path / "mailbridge.db") == before


@pytest.mark.parametrize("words, found", [("%", ["CRX-000001"]), ("100%", ["CRX-000001"]), ("a_b", ["CRX-000001"]),
                                          ("a%b", []), ("Kedvezm_ny", []), ("Sz_mla", []), ("Sz%a", [])])
def test_search_matches_like_wildcards_literally(desk, words, found):
    # As wildcards, each of the last four would match a subject ("a_b", "Kedvezmény", "Számla").
    assert [t["id"] for t in json.loads(desk("tickets", "search", words, "--json").stdout)] == found


def test_subject_tags_and_ids_take_ascii_digits_only(desk, mailbox):
    mailbox.deliver(simple_mail(1, subject="Re: [CRX-١] még mindig rossz"))
    mailbox.deliver(simple_mail(2, subject="Re: [CRX-１] még mindig rossz"))
    desk("poll", "--once")
    assert [t["id"] for t in desk.tickets()] == ["CRX-000001", "CRX-000002", "CRX-000003", "CRX-000004"]
    assert desk.ticket("CRX-000001")["message_count"] == 1  # neither mail joined the first ticket


def test_an_unexpected_fault_is_one_line_exit_1_and_its_frames_go_to_the_debug_log(desk, tmp_path):
    with sqlite3.connect(tmp_path / "mailbridge.db") as conn:  # a damaged row: no time where one must be
        conn.execute("UPDATE ticket SET created_at = 'kovacsne@example.hu' WHERE id = 1")
    result = desk("tickets", "list", check=False, subprocess_=True)
    assert result.returncode == 1 and "unexpected ValueError" in one_line(result)
    with desk.config.open("a", encoding="utf-8") as config:
        config.write('[logging]\nlevel = "debug"\nformat = "json"\n')
    result = desk("tickets", "list", check=False, subprocess_=True)
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [said] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert result.returncode == 1 and said.startswith("mailbridge: unexpected ValueError")
    [failed] = [event for event in logged if event["event"] == "cli.failed"]
    assert failed["error"] == "ValueError" and "views.py" in failed["frames"]
    assert "kovacsne" not in json.dumps(logged)  # the frames, never the message quoting the data
    assert "kovacsne" not in result.stderr  # nor on the terminal: the type and where, not the message


def test_output_piped_into_a_reader_that_stops_early_is_no_error(desk, tmp_path):
    for number in range(40):
        desk("ticket", "open", "--channel", "phone", "--name", f"Hívó {number}", "--category", "Egyéb",
             "--area", "Egyéb", "--subject", f"Telefonos megkeresés {number}")
    # `tickets list | head -1`: the pipe closes after the first line.
    pipeline = subprocess.run(" ".join(shlex.quote(a) for a in desk.command("tickets", "list", "--json"))
                              + " | head -c 10", shell=True, capture_output=True, text=True, timeout=120)
    assert pipeline.stdout.startswith("[") and "Traceback" not in pipeline.stderr and pipeline.stderr == ""


# --------------------------------------------------------------------------- the config file

DEEP_ARRAY = "a = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_TABLE = "a = " + "{ b = " * 3000 + "1" + " }" * 3000 + "\n"


@pytest.mark.parametrize("content, said", [
    (bytes(range(256)) * 4, "not UTF-8"),
    ("[database]\nurl = 'sqlite:///x.db' # ékezet\n".encode("latin-1"), "not UTF-8"),
    (DEEP_ARRAY.encode(), "nested too deeply"),
    (DEEP_TABLE.encode(), "nested too deeply"),
    (b"[retention]\nclosed_ticket_days = 9999999999999\n", "retention.closed_ticket_days"),
    (b"[policy]\nsla_warn_hours = inf\n", "policy.sla_warn_hours"),
    (b"[imap]\npoll_interval = 1e300\n", "imap.poll_interval"),
    (b"[tickets]\nreopen_days = 99999999999\n", "tickets.reopen_days"),
    (b"#" * (2 * 1024 * 1024), "larger than 1024 kB"),  # read in bounded: `--config /dev/zero` ends too
], ids=["binary", "latin-1", "deep-arrays", "deep-tables", "retention-days", "inf-hours",
        "huge-interval", "reopen-days", "two-megabytes"])
def test_a_bad_config_file_is_one_line_exit_2_and_nothing_is_written(tmp_path, content, said):
    config = tmp_path / "bad.toml"
    config.write_bytes(content)
    result = Mailbridge(config)("tickets", "list", check=False)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert said in line and str(config) in line
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


def test_a_deeply_nested_config_in_a_real_process(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text(DEEP_ARRAY, encoding="utf-8")
    result = Mailbridge(config)("tickets", "list", check=False, subprocess_=True)
    assert result.returncode == 2 and "nested too deeply" in one_line(result)


DEFAULT_DATABASE = Path("/var/lib/mailbridge/mailbridge.db")


def test_an_empty_config_creates_no_database_at_the_default_path(tmp_path):
    if DEFAULT_DATABASE.parent.exists():
        pytest.skip(f"{DEFAULT_DATABASE.parent} exists here (an installation): the test would prove nothing")
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    for args in (["tickets", "list"], ["notifications"], ["quarantine", "list"], ["tickets", "show", "CRX-1"]):
        result = Mailbridge(config)(*args, check=False)
        assert result.returncode == 1, result.stderr
        line = one_line(result)
        assert "mailbridge init" in line and str(DEFAULT_DATABASE) in line
    assert not DEFAULT_DATABASE.parent.exists()


def test_a_read_command_creates_no_database_file(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite:///{tmp_path}/sub/m.db'\n[storage]\npath = '{tmp_path}/s'\n")
    for args in (["tickets", "list"], ["tickets", "search", "x"], ["gdpr", "retention", "--dry-run"]):
        result = Mailbridge(config)(*args, check=False)
        assert result.returncode == 1 and "mailbridge init" in one_line(result)
    assert "needs `mailbridge init`" in Mailbridge(config)("check", check=False).stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_a_database_path_that_cannot_be_created_is_named(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite:////proc/mailbridge/x.db'\n[storage]\npath = '{tmp_path}/s'\n")
    result = Mailbridge(config)("init", check=False)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "database.url" in line and "/proc/mailbridge/x.db" in line
    result = Mailbridge(config)("tickets", "list", check=False, subprocess_=True)
    assert result.returncode == 1 and "/proc/mailbridge/x.db" in one_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def _full_disk() -> None:
    # A file-size limit of 16 KiB: SQLite cannot create its 32 KiB shared-memory index (-shm) or
    # grow its WAL, as on a full disk (EFBIG here, ENOSPC there: SQLite reports both alike).
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


def test_a_full_disk_at_connect_is_one_line_exit_1(tmp_path):
    from mailbridge.adapters.db import Database

    config = tmp_path / "c.toml"
    config.write_text(f"[database]\nurl = 'sqlite:///{tmp_path}/m.db'\n[storage]\npath = '{tmp_path}/s'\n")
    db = Database(f"sqlite:///{tmp_path}/m.db")
    db.migrate()
    before = dump(tmp_path / "m.db")
    db.engine.dispose()  # the last connection closed: the WAL and its index are gone, a connect must make them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "m.db"]
    for args in (["tickets", "list"], ["ticket", "open", "--channel", "post", "--name", "X", "--category", "Egyéb",
                                       "--area", "Egyéb", "--subject", "s"]):
        result = subprocess.run(Mailbridge(config).command(*args), capture_output=True, text=True,
                                preexec_fn=_full_disk, timeout=120)
        assert result.returncode == 1, result.stderr
        assert "database" in one_line(result)
    assert dump(tmp_path / "m.db") == before
    assert not (tmp_path / "s").exists()  # nor the attachment store


# --------------------------------------------------------------------------- PostgreSQL

@pytest.fixture
def pg_desk(mailbox, smtp_sink, mailbridge_for, postgres_server):
    url = postgres_server.create_database("hostile_cli")
    bridge = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, divisions=DIVISIONS, database={"url": url})
    open_phone(bridge, "Kedvezmény 100% a_b")
    open_phone(bridge, "Számla")
    return bridge


def test_out_of_range_ids_on_postgresql_are_usage_errors(pg_desk, mailbox):
    def state():
        return [pg_desk.ticket(t["id"]) for t in pg_desk.tickets()]

    before = state()
    for args, said in [
        (["tickets", "show", "2147483648"], "2147483648"),
        (["tickets", "show", "CRX-999999999999"], "CRX-999999999999"),
        (["ticket", "status", "CRX-999999999999", "in_progress"], "CRX-999999999999"),
        (["ticket", "merge", "CRX-000001", "2147483648"], "2147483648"),
        (["quarantine", "retry", "2147483648"], "2147483648"),
        (["tickets", "show", "CRX-١"], "not a ticket ID"),
        (["ticket", "status", "CRX-000001", "in_progress", "--by", EVIL], f"unknown agent: {EVIL}"),
    ]:
        result = pg_desk(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert said in one_line(result)
    assert state() == before
    # Full-text search: wildcards are no words, so they find nothing rather than everything.
    for words in ("%", "_", "a%"):
        assert json.loads(pg_desk("tickets", "search", words, "--json").stdout) == []
    # A subject tag no ticket can have is no tag: the mail opens a ticket, intake goes on.
    mailbox.deliver(simple_mail(1, subject="Re: [CRX-999999999999] hamis hivatkozás"))
    assert "1 new_ticket" in pg_desk("poll", "--once").stdout
    assert len(pg_desk.tickets()) == 3
