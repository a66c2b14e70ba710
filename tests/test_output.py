"""Output for people (issue 17): tables that fit the terminal, `--sort`, one language per output.

Through the real command line on real SQLite (and PostgreSQL for the order), as an agent
at an 80- or 200-column terminal sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from factory import simple_mail


LONG_SUBJECT = ("Nem tudok belépni a Crossec Normába, és a jelszó-visszaállító levél sem érkezik meg "
                "már harmadik napja, pedig a spam mappát is néztem")
LONG_SENDER = "kovacsne.szabo-nagy.erzsebet.ugyvezeto@nagyon-hosszu-cegnev-kft.example.hu"


@pytest.fixture
def desk(mailbox, mailbridge):
    """Three tickets from mail: one with a long subject and address (a table ~190 columns wide)."""
    mailbox.deliver_many([simple_mail(1, sender=LONG_SENDER, subject=LONG_SUBJECT), simple_mail(2), simple_mail(3)])
    mailbridge("poll", "--once")
    return mailbridge


def listed(desk, *args: str, columns: int | None, lang: str | None = "en") -> list[str]:
    """`tickets list` as printed into a pipe, with COLUMNS as a terminal of that width sets it."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    language = ["--lang", lang] if lang else []  # else tickets.default_language: hu
    result = subprocess.run(desk.command("tickets", "list", *language, *args), capture_output=True, text=True,
                            timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize("lang", [None, "en"])
def test_tickets_list_fits_the_terminal_with_ids_statuses_and_times_whole(desk, columns, lang):
    lines = listed(desk, columns=columns, lang=lang)
    assert len(lines) == 4  # (every character here is one column wide: len() is the width)
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    status = {"en": "new", None: "új"}[lang]
    for n, line in enumerate(lines[1:], 1):
        cells = line.split()
        assert cells[0] == f"CRX-{n:06d}" and cells[1] == status  # whole, not cut
        assert datetime.strptime(f"{cells[2]} {cells[3]}", "%Y-%m-%d %H:%M")  # the time whole
    first = lines[1]
    assert "…" in first  # the subject (or the address) was cut, not wrapped
    assert first.split()[4:] != []  # and something of the free text is left


def test_a_wide_terminal_shows_more_of_the_ticket_than_a_narrow_one(desk):
    narrow, wide = listed(desk, columns=80), listed(desk, columns=200)
    assert len(wide[0].split()) > len(narrow[0].split())  # columns left out at 80 are back at 200
    assert {"ASSIGNEE", "SUBJECT", "REPORTER"} <= set(wide[0].split())
    assert "ID" in narrow[0].split() and "STATUS" in narrow[0].split() and "SUBJECT" in narrow[0].split()


def test_piped_without_columns_nothing_is_cut(desk):
    lines = listed(desk, columns=None)
    assert LONG_SUBJECT in lines[1] and LONG_SENDER in lines[1] and "…" not in "\n".join(lines)


def test_a_subject_that_would_drive_the_terminal_is_printed_inert(mailbox, mailbridge):
    mailbox.deliver(simple_mail(1, subject="Számla\x1b[2J\u202e kérdés"))
    mailbridge("poll", "--once")
    out = mailbridge("tickets", "list").stdout + mailbridge("tickets", "show", "CRX-000001").stdout
    assert "\x1b[2J" not in out and "\u202e" not in out
    assert "Számla" in out


def test_an_empty_list_says_so_in_the_output_s_language(mailbridge):
    assert mailbridge("tickets", "list", "--lang", "hu").stdout.strip() == "(nincs jegy)"
    assert mailbridge("tickets", "list", "--lang", "en").stdout.strip() == "(no tickets)"


# --- one language per output -------------------------------------------------------------------

ENGLISH_LABELS = ("status", "category", "area", "channel", "reporter", "created", "deadline", "flags")


def fields(show_output: str) -> list[str]:
    """The labelled field lines of `tickets show`, before its first message."""
    lines = show_output.split("\n\n")[0].splitlines()[1:]
    assert lines and all(line.startswith("  ") for line in lines)
    return lines


def test_show_and_list_speak_the_default_language_hungarian(desk):
    shown = desk("tickets", "show", "CRX-000002").stdout
    labels = " ".join(line.split("  ")[1] for line in fields(shown))
    assert "állapot" in labels and "határidő, miért" in labels
    assert not any(word in labels for word in ENGLISH_LABELS), labels
    assert "Rögzítve" in shown and "Recorded on" not in shown  # the deadline explained in Hungarian too
    header = desk("tickets", "list").stdout.splitlines()[0].split()
    assert header[:3] == ["AZONOSÍTÓ", "ÁLLAPOT", "LÉTREHOZVA"] and "TÁRGY" in header


def test_lang_en_gives_english_throughout(desk):
    shown = desk("tickets", "show", "CRX-000002", "--lang", "en").stdout
    lines = fields(shown)
    labels = " ".join(line.split("  ")[1] for line in lines)
    assert "status" in labels and "deadline, why" in labels
    assert "Recorded on" in shown and "Rögzítve" not in shown
    status = next(line for line in lines if "status" in line)
    assert status.split()[-1] == "new"
    listing = desk("tickets", "list", "--lang", "en").stdout
    assert listing.splitlines()[0].split()[:3] == ["ID", "STATUS", "CREATED"]
    assert "Hibabejelentés" not in listing and "Egyéb" not in listing  # categories and areas by English names


def test_times_in_people_s_output_are_in_policy_timezone(mailbox, mailbridge_for):
    desk = mailbridge_for(mailbox, policy={"timezone": "America/New_York", "country": "HU"})
    mailbox.deliver(simple_mail(1))
    desk("poll", "--once")
    created = datetime.fromisoformat(desk.ticket("CRX-000001")["created_at"]).replace(tzinfo=timezone.utc)
    local = created.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    row = desk("tickets", "list").stdout.splitlines()[1].split()
    assert f"{row[2]} {row[3]}" == f"{local:%Y-%m-%d %H:%M}"
    shown = desk("tickets", "show", "CRX-000001").stdout
    assert f"{local:%Y-%m-%d %H:%M} {local:%Z}" in shown


# --- --sort ------------------------------------------------------------------------------------


def _arrange(url: str) -> None:
    """Four tickets given creation times, statuses, assignees and deadlines in different orders."""
    from sqlmodel import select

    from mailbridge.adapters.db import Database
    from mailbridge.models import Ticket

    now = datetime.now(timezone.utc).replace(microsecond=0)
    plan = {  # id: (days ago created, status, assignee, deadline in days)
        1: (1, "closed", None, 2),
        2: (3, "in_progress", "bodnar.bela@crossec.com", None),
        3: (2, "new", None, 1),
        4: (4, "acknowledged", "kiss.anna@crossec.com", 3),
    }
    db = Database(url)
    with db.session() as session:
        for ticket in session.exec(select(Ticket)).all():
            ago, status, assignee, deadline = plan[ticket.id]
            ticket.created_at = now - timedelta(days=ago)
            ticket.status, ticket.assignee = status, assignee
            ticket.ack_deadline = now + timedelta(days=deadline) if deadline is not None else None
            session.add(ticket)
        session.commit()
    db.engine.dispose()


ORDERS = [
    ([], [1, 2, 3, 4]),
    (["--sort", "id"], [1, 2, 3, 4]),
    (["--sort", "-id"], [4, 3, 2, 1]),
    (["--sort", "created"], [4, 2, 3, 1]),
    (["--sort", "-created"], [1, 3, 2, 4]),
    (["--sort", "status"], [3, 4, 2, 1]),  # the workflow's order: new, acknowledged, in progress, closed
    (["--sort", "deadline"], [3, 1, 4, 2]),  # no deadline: last
    (["--sort", "-deadline"], [4, 1, 3, 2]),  # last either way
    (["--sort", "assignee"], [2, 4, 1, 3]),  # nobody: last
    (["--sort", "-created", "--limit", "2"], [1, 3]),  # the limit takes the first of the order
]


def _check_orders(desk) -> None:
    for args, expected in ORDERS:
        ids = [f"CRX-{n:06d}" for n in expected]
        assert [t["id"] for t in json.loads(desk("tickets", "list", "--json", *args).stdout)] == ids, args
        table = desk("tickets", "list", *args).stdout.splitlines()[1:]
        assert [line.split()[0] for line in table] == ids, args


def test_sort_orders_the_list_and_its_json_on_sqlite(mailbox, mailbridge):
    mailbox.deliver_many([simple_mail(n) for n in range(1, 5)])
    mailbridge("poll", "--once")
    _arrange(f"sqlite:///{mailbridge.config.parent}/mailbridge.db")
    _check_orders(mailbridge)
    bad = mailbridge("tickets", "list", "--sort", "subject", check=False)
    assert bad.returncode == 2 and "created" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_sort_orders_the_list_on_postgresql(mailbox, mailbridge_for, postgres_server):
    url = postgres_server.create_database("mailbridge_sort")
    desk = mailbridge_for(mailbox, database={"url": url})
    mailbox.deliver_many([simple_mail(n) for n in range(1, 5)])
    desk("poll", "--once")
    _arrange(url)
    _check_orders(desk)


def test_quarantine_and_report_read_as_the_desk_does(mailbox, mailbridge_for):
    """The quarantine's times in policy.timezone (not stored UTC); the report in one language."""
    from zoneinfo import ZoneInfo

    desk = mailbridge_for(mailbox, policy={"timezone": "Asia/Tokyo", "country": "HU"})
    mailbox.deliver(b"\xff\xfe not a mail at all")
    desk("poll", "--once")
    [entry] = json.loads(desk("quarantine", "list", "--json").stdout)
    stored = datetime.fromisoformat(entry["created_at"]).replace(tzinfo=timezone.utc)
    row = desk("quarantine", "list").stdout.splitlines()[1]
    assert f"{stored.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m-%d %H:%M}" in row
    report = desk("report", "--week").stdout
    assert "Fault report" in report and "Business consulting" in report and "phone" in report
    assert "Hibabejelentés" not in report and "Üzleti tanácsadás" not in report
