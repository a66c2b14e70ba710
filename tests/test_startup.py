"""Commands import what they use (issue 16): agents and ops pay every import on every command.

Each case runs the real command line in a process of its own against a real SQLite
installation, then reads that process's `sys.modules`: what the command loaded, however
it loaded it. No wall-clock figures here (bench/startup.py measures those).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from factory import simple_mail

# Runs the command line as `mailbridge` does, then writes the names of the loaded modules
# to the file named by the first argument (stdout stays the command's own).
_RUN = (
    "import json, sys\n"
    "target, args = sys.argv[1], sys.argv[2:]\n"
    "from mailbridge.cli import main\n"
    "try:\n"
    "    main(args)\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "else:\n"
    "    code = 0\n"
    "with open(target, 'w') as out:\n"
    "    json.dump(sorted(sys.modules), out)\n"
    "sys.exit(code)\n"
)

# Never needed to read a ticket: intake (mail parsing), the daemon's schedule, the outbox's
# templates, migrations, and the mail servers' clients.
MAIL_AND_SCHEDULER = ["mailparser", "html2text", "charset_normalizer", "tnefparse", "flufl", "authres",
                      "apscheduler", "jinja2", "alembic", "imapclient", "aiosmtpd", "pymap", "prometheus_client",
                      "mailbridge.intake", "mailbridge.outbox", "mailbridge.jobs"]
# Never needed to print the usage or the version: no config model, database or logging either.
FOR_HELP = [*MAIL_AND_SCHEDULER, "pydantic", "sqlalchemy", "sqlmodel", "structlog", "holidays",
            "mailbridge.config", "mailbridge.models", "mailbridge.views", "mailbridge.adapters"]


def loaded(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    names = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", _RUN, str(names), *args], capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result, set(json.loads(names.read_text()))


def found(modules: set[str], packages: list[str]) -> list[str]:
    """The loaded modules that are, or are inside, one of `packages`."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_load_click_and_our_light_modules_only(tmp_path, option):
    result, modules = loaded(tmp_path, option)
    assert "tickets" in result.stdout if option == "--help" else result.stdout.startswith("mailbridge, version ")
    assert "click" in modules
    assert found(modules, FOR_HELP) == []


@pytest.fixture
def desk(mailbox, mailbridge, tmp_path):
    """A real installation (`init`, then a poll) holding two tickets taken in from mail."""
    for n in (1, 2):
        mailbox.deliver(simple_mail(n))
    mailbridge("poll", "--once")
    return mailbridge


def test_tickets_list_loads_no_parser_scheduler_or_holiday_tables(desk, tmp_path):
    result, modules = loaded(tmp_path, "--config", str(desk.config), "tickets", "list", "--json")
    assert [t["id"] for t in json.loads(result.stdout)] == ["CRX-000001", "CRX-000002"]
    assert {"sqlalchemy", "mailbridge.views"} <= modules  # it did read the database
    assert found(modules, [*MAIL_AND_SCHEDULER, "holidays"]) == []


def test_tickets_show_loads_the_configured_country_s_calendar_alone(desk, tmp_path):
    result, modules = loaded(tmp_path, "--config", str(desk.config), "tickets", "show", "CRX-000002", "--json")
    detail = json.loads(result.stdout)
    assert detail["id"] == "CRX-000002"
    assert detail["ack_deadline_explained"]["en"]  # the deadline was explained from the calendar
    assert found(modules, MAIL_AND_SCHEDULER) == []
    # holidays.countries is a package that imports every country's module (~250) when it runs.
    assert found(modules, ["holidays.countries"]) == ["holidays.countries.hungary"]


def test_reading_commands_do_not_wait_behind_a_write(mailbox, mailbridge_for):
    # A poll's batch holds SQLite's write lock for seconds: an agent's `tickets list` read the
    # last commit only once it ended (BEGIN IMMEDIATE), or gave up after the 60 s busy timeout.
    import sqlite3

    mailbox.deliver_many([simple_mail(i) for i in range(2)])
    desk = mailbridge_for(mailbox)
    desk("poll", "--once")
    writer = sqlite3.connect(desk.config.parent / "mailbridge.db", isolation_level=None, timeout=1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE ticket SET subject = 'not committed' WHERE id = 1")
        listed = json.loads(desk("tickets", "list", "--json", subprocess_=True, timeout=30).stdout)
        shown = json.loads(desk("tickets", "show", "CRX-000001", "--json", subprocess_=True, timeout=30).stdout)
        quarantine = desk("quarantine", "list", subprocess_=True, timeout=30)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert sorted(t["id"] for t in listed) == ["CRX-000001", "CRX-000002"]
    assert shown["subject"] != "not committed" and "not committed" not in json.dumps(listed)
    assert quarantine.returncode == 0
