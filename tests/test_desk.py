"""The desk's scheduled mail (P7, P10): the agents' morning digest, the supervisors' Monday
report, and `mailbridge report --week` — real Dovecot in, real aiosmtpd out, a real SQLite file.

Days are found from the real clock and the real holiday calendar (`holidays`), never written
down: the next working morning, the next Sunday, the next Hungarian holiday on a weekday, the
Monday of this week. The week a report covers is built by setting its tickets' times in the
database, so every figure is known in advance.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest

from factory import simple_mail
from mailbridge.policy.deadline import is_working_day
from mailbridge.policy.desk import QueueTicket, WeekTicket, digest_day, order_queue, report_week, week_figures

BUDAPEST = ZoneInfo("Europe/Budapest")
UTC = timezone.utc

ANNA = "kiss.anna@crossec.com"
PETER = "szabo.peter@crossec.com"
BELA = "toth.bela@crossec.com"
AGENTS = [
    {"name": "Kiss Anna", "email": ANNA, "areas": ["Crossec Norma", "Egyéb", "Üzleti tanácsadás"], "fallback": True},
    {"name": "Szabó Péter", "email": PETER, "areas": ["GDPR Segédanyagok"]},
    {"name": "Tóth Béla", "email": BELA, "areas": []},
    {"name": "Régi Kolléga", "email": "regi@crossec.com", "areas": ["Egyéb"], "active": False},
]
SUPERVISORS = [{"name": "Nagy Éva", "email": "nagy.eva@crossec.com"},
               {"name": "Fekete Ádám", "email": "fekete.adam@crossec.com"}]


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), BUDAPEST)


def today() -> date:
    return datetime.now(BUDAPEST).date()


def next_day(where) -> date:  # type: ignore[no-untyped-def]
    day = today() + timedelta(days=1)
    while not where(day):
        day += timedelta(days=1)
    return day


def next_weekday_holiday() -> date:
    """The next Hungarian public holiday that falls on a weekday (not a working day)."""
    calendar = holidays.HU(years=range(today().year, today().year + 3))
    return next_day(lambda d: d.weekday() < 5 and d in calendar and not is_working_day(d, "HU"))


def stamp(value: datetime) -> str:
    """A time as the database stores it (UTC, without the offset)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def sql(desk, statement: str, *args) -> list[tuple]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(desk.config.parent / "mailbridge.db") as db:
        return db.execute(statement, args).fetchall()


def number(ticket_id: str) -> int:
    return int(ticket_id.rsplit("-", 1)[1])


def text_of(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("plain",)).get_content()


def html_of(message) -> str:  # type: ignore[no-untyped-def]
    return message.get_body(("html",)).get_content()


def to(sink, address: str) -> list:  # type: ignore[no-untyped-def]
    return [m for m in sink.messages if str(m["To"]) == address]


# ---------------------------------------------------------------------------
# Pure: when, in what order, what a week counts (fixed dates: the functions take `now`)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("moment, due", [
    ("2024-08-05T08:00", True),   # a Monday, at digest time
    ("2024-08-05T07:59", False),  # … a minute before
    ("2024-08-05T23:59", True),   # … still that day's, if no process sent it yet
    ("2024-08-04T09:00", False),  # Sunday
    ("2024-08-20T09:00", False),  # St Stephen's Day, a Tuesday
    ("2024-08-03T09:00", True),   # a transferred working Saturday
    ("2024-12-27T09:00", False),  # a bridge day given off (worked on 7 December)
])
def test_the_digest_is_due_on_working_mornings(moment, due):
    now = datetime.fromisoformat(moment).replace(tzinfo=BUDAPEST)
    day = digest_day(now, "08:00", "Europe/Budapest", "HU")
    assert (day is not None) == due
    if due:
        assert day.first == now.date() and day.start == local(now.date(), 0)


def test_the_report_is_due_on_mondays_for_the_week_before_across_a_clock_change():
    monday = datetime(2024, 4, 1, 8, 0, tzinfo=BUDAPEST)  # summer time began on Sunday 31 March
    week = report_week(monday, "08:00", "Europe/Budapest")
    assert (week.first, week.last) == (date(2024, 3, 25), date(2024, 3, 31))
    assert week.start.utcoffset() == timedelta(hours=1) and week.end.utcoffset() == timedelta(hours=2)
    assert week.end - week.start == timedelta(days=7) and week.end.astimezone(UTC) - week.start.astimezone(UTC) == timedelta(days=7, hours=-1)
    assert report_week(monday - timedelta(minutes=1), "08:00", "Europe/Budapest") is None
    assert report_week(monday + timedelta(days=1), "08:00", "Europe/Budapest") is None


def test_a_queue_puts_missed_deadlines_first_then_the_nearest_then_those_in_hand():
    now = datetime(2024, 8, 5, 8, 0, tzinfo=UTC)
    made = now - timedelta(days=5)

    def ticket(n: int, deadline_hours: float | None, acknowledged: bool = False) -> QueueTicket:
        deadline = now + timedelta(hours=deadline_hours) if deadline_hours is not None else None
        return QueueTicket(n, f"t{n}", "", "", "new", ANNA, made + timedelta(minutes=n), deadline,
                           made if acknowledged else None)

    queue = [ticket(1, 30, acknowledged=True), ticket(2, 40), ticket(3, -2), ticket(4, 3), ticket(5, -30),
             ticket(6, None), ticket(7, -5, acknowledged=True), ticket(8, 0)]
    assert [t.id for t in order_queue(queue, now)] == [5, 3, 8, 4, 2, 1, 6, 7]  # in hand: the oldest first


def test_a_week_counts_what_happened_in_it():
    monday = datetime(2024, 8, 5, tzinfo=BUDAPEST)
    week = report_week(monday + timedelta(days=7, hours=9), "08:00", "Europe/Budapest")
    hour, day = timedelta(hours=1), timedelta(days=1)

    def ticket(n, category, channel, created, deadline=None, acknowledged=None, resolved=None) -> WeekTicket:
        return WeekTicket(n, category, "Egyéb", channel, ANNA, created, deadline, acknowledged, resolved)

    tickets = [
        ticket(1, "Hibabejelentés", "email", monday + 9 * hour, monday + 3 * day, monday + 10 * hour, monday + day + 9 * hour),
        ticket(2, "Hibabejelentés", "phone", monday + day + 9 * hour, monday + 4 * day, monday + day + 12 * hour),
        ticket(3, "Egyéb", "post", monday + 2 * day, monday + 5 * day),  # never acknowledged: missed
        ticket(4, "Egyéb", "email", monday - 3 * day, monday - day, monday - 2 * day, monday + 2 * day),  # only closed
        ticket(5, "Egyéb", "email", monday + 7 * day, monday + 9 * day),  # the next week: not counted
    ]
    figures = week_figures(tickets, week)
    assert (figures.opened, figures.closed) == (3, 2)
    assert {c.label: (c.opened, c.closed) for c in figures.by_category}["Hibabejelentés"] == (2, 1)
    assert {c.label: (c.opened, c.closed) for c in figures.by_channel}["email"] == (1, 2)
    assert (figures.deadlines, figures.in_time, figures.share_in_time) == (3, 2, 2 / 3)
    assert figures.median_ack_seconds == 2 * 3600  # 1 h and 3 h
    assert figures.median_resolve_seconds == (day + 5 * day).total_seconds() / 2  # 1 and 5 days
    assert [t.id for t in figures.missed] == [3]


@pytest.mark.parametrize("language", ["hu", "en"])
def test_the_desk_templates_render_in_each_language_and_escape_what_they_quote(language):
    """The shipped templates through the real renderer (its filters: dates, days, durations)."""
    from mailbridge.outbox.render import Renderer
    from mailbridge.policy.desk import Count, WeekFigures
    from mailbridge.workflow.desk import figures_as_dict

    renderer = Renderer("", "Europe/Budapest")
    now = datetime(2024, 8, 5, 6, 30, tzinfo=UTC)
    hostile = "<script>alert(1)</script> & Kovács"
    ticket = {"id": "CRX-000042", "subject": hostile, "reporter": {"name": "Kovács József", "email": "k@example.hu"},
              "status": "new", "ack_deadline": now + timedelta(hours=5), "acknowledged": False}
    digest = renderer.render("agent_digest", language, {
        "agent": {"name": "Kiss Anna", "email": ANNA}, "groups": [("due", [ticket])], "total": 1, "missed": 0,
        "left_out": 0, "day": now.date(), "company": {"name": "Crossec", "support_address": "support@crossec.com"}})
    week = report_week(now + timedelta(days=7), "08:00", "Europe/Budapest")
    figures = WeekFigures(week, 3, 1, (Count(hostile, 3, 1),), (Count("Egyéb", 3, 1),), (Count("phone", 3, 1),),
                          2, 1, 3600.0, 2 * 86400.0 + 7200, ())
    report = renderer.render("supervisor_report", language, {
        "figures": figures_as_dict(figures, "CRX"), "week": {"first": week.first, "last": week.last}, "scale": 3,
        "missed": [], "supervisor": {"name": "Nagy Éva", "email": "nagy.eva@crossec.com"},
        "company": {"name": "Crossec", "support_address": "support@crossec.com"}})
    for rendered in (digest, report):
        assert "\n" not in rendered.subject and rendered.subject == rendered.subject.strip()
        for leftover in ("{{", "}}", "{%", "%}"):
            assert leftover not in rendered.text + rendered.html
    assert digest.html == "" and "CRX-000042" in digest.text and hostile in digest.text
    assert "<script>" not in report.html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Kovács" in report.html
    words = (re.compile(r"\b(dear|hello|ticket|deadline|opened|closed|week|report)\b", re.I) if language == "hu"
             else re.compile(r"Kedves|nyitott|határidő|ügy|heti|lezárt"))
    for rendered in (digest, report):
        prose = re.sub(r"<[^>]+>|mailbridge report --week|CRX-\d+", " ", rendered.subject + rendered.text + rendered.html)
        assert not words.findall(prose), words.findall(prose)
    expected = "1 óra" if language == "hu" else "1 h"
    assert expected in report.text and ("2 nap 2 óra" if language == "hu" else "2 d 2 h") in report.text


# ---------------------------------------------------------------------------
# The morning digest, end to end
# ---------------------------------------------------------------------------


@pytest.fixture
def desk(mailbox, smtp_sink, mailbridge_for):
    return mailbridge_for(mailbox, smtp_sink, agents=AGENTS, supervisors=SUPERVISORS,
                          desk={"agent_digest": True, "digest_time": "08:00"})


def open_by_phone(desk, subject: str, name: str, email: str = "", area: str = "Egyéb",  # type: ignore[no-untyped-def]
                  channel: str = "phone", category: str = "Egyéb") -> str:
    args = ["ticket", "open", "--channel", channel, "--name", name, "--category", category, "--area", area,
            "--subject", subject, "--body", "Telefonon jelezte.", "--json"]
    if email:
        args += ["--email", email]
    return json.loads(desk(*args).stdout)["id"]


def test_each_working_morning_an_agent_gets_her_queue_once_missed_and_nearest_deadlines_first(
        mailbox, smtp_sink, desk):
    # Two customers write in; three cases come by phone (two without an address, so nobody
    # acknowledges them but the agent: their deadlines run); one for Péter, who closes it.
    mailbox.deliver_many([simple_mail(1, subject="Nem működik a Crossec Norma exportja"),
                          simple_mail(2, subject="Hibás számla érkezett", sender="kovacs.jozsef@example.hu")])
    desk("poll", "--once")
    desk("tick")  # their acknowledgements go out (poll only queues): acknowledged once the server took them
    far = open_by_phone(desk, "Visszahívást kér", "Horváth Ödön")
    near = open_by_phone(desk, "Szerződésmódosítás", "Varga Tünde")
    missed = open_by_phone(desk, "Panasz a tanácsadásra", "Molnár Kata", area="Üzleti tanácsadás")
    peters = open_by_phone(desk, "GDPR sablonok", "Németh Lilla", "lilla@example.hu", area="GDPR Segédanyagok")
    desk("ticket", "resolve", peters, "--outcome", "Elküldtük a frissített sablonokat.")
    mails = {t["id"]: t for t in desk.tickets()}
    assert {mails[i]["assignee"] for i in (far, near, missed)} == {ANNA} and mails[peters]["status"] == "resolved"

    morning = local(next_day(lambda d: is_working_day(d, "HU")), 8, 30)
    # Deadlines made to order around that morning: one passed a day ago, one in three hours, one in two days.
    for ticket_id, hours in ((missed, -24), (near, 3), (far, 48)):
        sql(desk, "UPDATE ticket SET ack_deadline = ? WHERE id = ?", stamp(morning + timedelta(hours=hours)),
            number(ticket_id))
    emailed = [t["id"] for t in desk.tickets() if t["channel"] == "email"]

    before = len(smtp_sink.messages)
    result = desk("tick", "--at", morning.isoformat())
    assert "1 digests" in result.stdout
    digests = [m for m in smtp_sink.messages[before:] if "Napi ügylista" in m["Subject"]]
    [digest] = digests  # Anna's: Péter has none open, Béla none at all, the inactive colleague is not asked
    assert str(digest["To"]) == ANNA and digest["Auto-Submitted"] == "auto-generated"
    assert "5 nyitott ügy, 1 lejárt határidővel" in digest["Subject"]
    text = text_of(digest)
    listed = re.findall(r"\[(CRX-\d{6})\]", text.split("Egy ügyön")[0])
    assert listed[:3] == [missed, near, far] and sorted(listed[3:]) == sorted(emailed)  # the acknowledged last
    assert peters not in text
    assert "Molnár Kata" in text and "kovacs.jozsef@example.hu" in text
    assert "Lejárt a kapcsolatfelvételi határidő (1)" in text and "Közeledő határidő (2)" in text
    deadline = morning + timedelta(hours=3)
    assert f"{deadline.day}. {deadline:%H}:{deadline:%M}" in text  # local time, as people at the desk read it
    assert "Állapot: új" in text and "Állapot: visszaigazolva" in text

    # A second tick that morning (a second host, a restart) sends nothing more.
    assert "0 digests" in desk("tick", "--at", (morning + timedelta(minutes=40)).isoformat()).stdout
    assert len([m for m in smtp_sink.messages if "Napi ügylista" in m["Subject"]]) == 1
    [(claims,)] = sql(desk, "SELECT count(*) FROM event WHERE type = 'agent_digest.queued'")
    assert claims == 1


def test_no_digest_on_a_sunday_or_a_hungarian_holiday(mailbox, smtp_sink, desk):
    open_by_phone(desk, "Visszahívást kér", "Horváth Ödön")
    for day in (next_day(lambda d: d.weekday() == 6), next_weekday_holiday()):
        assert "0 digests" in desk("tick", "--at", local(day, 9).isoformat()).stdout
    assert [m for m in smtp_sink.messages if "Napi ügylista" in m["Subject"]] == []
    assert sql(desk, "SELECT count(*) FROM event WHERE type = 'agent_digest.queued'") == [(0,)]


def test_no_digest_before_digest_time_and_none_when_switched_off(mailbox, smtp_sink, mailbridge_for):
    desk = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, desk={"agent_digest": True, "digest_time": "09:30"})
    open_by_phone(desk, "Visszahívást kér", "Horváth Ödön")
    morning = next_day(lambda d: is_working_day(d, "HU"))
    assert "0 digests" in desk("tick", "--at", local(morning, 9, 29).isoformat()).stdout
    assert "1 digests" in desk("tick", "--at", local(morning, 9, 30).isoformat()).stdout
    off = mailbridge_for(mailbox, smtp_sink, agents=AGENTS, init=False, desk={"agent_digest": False})
    later = next_day(lambda d: d > morning and is_working_day(d, "HU"))
    assert "0 digests" in off("tick", "--at", local(later, 10).isoformat()).stdout


def test_digest_for_gives_one_agent_the_same_list(mailbox, smtp_sink, desk):
    """What `#mine` calls: one agent's queue at once, the digest's order."""
    from mailbridge.adapters.db import Database
    from mailbridge.config import load_settings
    from mailbridge.workflow.desk import digest_for, open_queues

    first = open_by_phone(desk, "Első", "Horváth Ödön")
    second = open_by_phone(desk, "Második", "Varga Tünde")
    now = datetime.now(UTC) + timedelta(minutes=1)
    sql(desk, "UPDATE ticket SET ack_deadline = ? WHERE id = ?", stamp(now - timedelta(hours=1)), number(second))
    db = Database(load_settings(desk.config).database.url)
    with db.transaction() as conn:
        mine = digest_for(conn, ANNA, now)
        assert [t.id for t in mine] == [number(second), number(first)]
        assert [t.id for t in open_queues(conn, now, [ANNA, PETER])[ANNA]] == [t.id for t in mine]
        assert digest_for(conn, PETER, now) == []
    db.engine.dispose()


# ---------------------------------------------------------------------------
# The supervisors' Monday report and `report --week`
# ---------------------------------------------------------------------------


def test_the_monday_report_counts_the_week_before_and_report_week_prints_the_same(mailbox, smtp_sink, desk):
    this_monday = today() - timedelta(days=today().weekday())
    monday = this_monday - timedelta(days=7)  # the week the report covers: Monday to Sunday before this one
    hour, day = timedelta(hours=1), timedelta(days=1)
    start = local(monday, 0).astimezone(UTC)  # in UTC: a clock change in the week moves no duration

    mailbox.deliver(simple_mail(1, subject="Nem működik a Crossec Norma exportja"))
    desk("poll", "--once")
    [emailed] = [t["id"] for t in desk.tickets()]
    by_phone = open_by_phone(desk, "Hibás export", "Horváth Ödön", category="Hibabejelentés")
    by_post = open_by_phone(desk, "Számla másolat", "Varga Tünde", channel="post",
                            category="Számlázással kapcsolatos kérdés")
    late = open_by_phone(desk, "Visszahívás", "Molnár Kata", channel="social")
    open_only = open_by_phone(desk, "Kérdés", "Tóth Ákos", category="Hibabejelentés")
    older = open_by_phone(desk, "Régebbi ügy", "Kiss Béla", channel="other", category="Érdeklődés")
    untouched = open_by_phone(desk, "E heti ügy", "Szabó Ödön")  # recorded this week: not in the report

    week = {  # created, deadline, acknowledged, resolved (None: not)
        emailed: (start + 9 * hour, start + 3 * day, start + 10 * hour, start + day + 9 * hour),  # 1 h; 1 day
        by_phone: (start + day + 9 * hour, start + 4 * day, start + day + 12 * hour, start + 4 * day + 9 * hour),  # 3 h; 3 days
        by_post: (start + 2 * day + 9 * hour, start + 5 * day, None, None),  # never acknowledged: missed
        late: (start + 10 * hour, start + 3 * day, start + 4 * day + 10 * hour, None),  # 4 days late: missed
        open_only: (start + 3 * day + 9 * hour, start + 7 * day + day, start + 3 * day + 14 * hour, None),  # 5 h
        older: (start - 3 * day + 9 * hour, start - day, start - 2 * day, start + 2 * day + 9 * hour),  # closed: 5 days
    }
    for ticket_id, (created, deadline, acknowledged, resolved) in week.items():
        sql(desk, "UPDATE ticket SET created_at = ?, ack_deadline = ?, acknowledged_at = ?, resolved_at = ?, "
                  "status = ? WHERE id = ?", stamp(created), stamp(deadline),
            stamp(acknowledged) if acknowledged else None, stamp(resolved) if resolved else None,
            "resolved" if resolved else "acknowledged" if acknowledged else "new", number(ticket_id))
    tickets = {t["id"]: t for t in desk.tickets()}
    opened = [emailed, by_phone, by_post, late, open_only]
    closed = [emailed, by_phone, older]

    sending = local(this_monday, 8, 5)
    before = len(smtp_sink.messages)
    assert "2 reports" in desk("tick", "--at", sending.isoformat()).stdout
    reports = [m for m in smtp_sink.messages[before:] if "Heti jelentés" in m["Subject"]]
    assert sorted(str(m["To"]) for m in reports) == sorted(s["email"] for s in SUPERVISORS)
    assert "(5 új, 3 lezárt ügy)" in reports[0]["Subject"]

    figures = json.loads(desk("report", "--week", "--json", "--at", sending.isoformat()).stdout)
    assert (figures["week"]["first_day"], figures["week"]["last_day"]) == (monday.isoformat(),
                                                                          (monday + 6 * day).isoformat())
    assert (figures["opened"], figures["closed"]) == (5, 3)
    for key in ("category", "area", "channel"):
        expected_opened = Counter(tickets[i][key] for i in opened)
        expected_closed = Counter(tickets[i][key] for i in closed)
        assert {r[key]: (r["opened"], r["closed"]) for r in figures[f"by_{key}"] if r["opened"] or r["closed"]} == {
            label: (expected_opened[label], expected_closed[label]) for label in expected_opened | expected_closed}
    assert {r["channel"]: r["opened"] for r in figures["by_channel"]} == {
        "email": 1, "form": 0, "phone": 2, "post": 1, "social": 1, "other": 0}
    # Deadlines in the week: emailed, by_phone, by_post, late; kept by the first two.
    assert (figures["acknowledgement_deadlines"], figures["acknowledged_in_time"]) == (4, 2)
    assert figures["share_acknowledged_in_time"] == 0.5
    assert figures["median_seconds_to_acknowledge"] == 4 * 3600  # 1 h, 3 h, 5 h, 96 h
    assert figures["median_seconds_to_resolve"] == 3 * 86400  # 1, 3 and 5 days
    assert [t["id"] for t in figures["missed"]] == [late, by_post]  # by deadline
    assert untouched not in json.dumps(figures)

    for report in reports:
        assert report["Auto-Submitted"] == "auto-generated"
        text, html = text_of(report), html_of(report)
        assert re.search(r"Új ügy:\s+5\n", text) and re.search(r"Lezárt ügy:\s+3\n", text)
        assert re.search(r"Határidőben visszaigazolva:\s+2 / 4 \(50%\)", text)
        assert re.search(r"Visszaigazolásig \(medián\):\s+4 óra\n", text)
        assert re.search(r"Megoldásig \(medián\):\s+3 nap\n", text)
        for row in figures["by_category"] + figures["by_area"]:  # the mail shows what `report` prints
            label = row.get("category") or row["area"]
            assert re.search(rf"\n  {re.escape(label)}\s+{row['opened']}\s+{row['closed']}\n", text)
        assert re.search(r"\n  telefon\s+2\s+1\n", text) and re.search(r"\n  posta\s+1\s+0\n", text)
        missed_part = text.split("Lejárt kapcsolatfelvételi határidő (2)")[1]
        assert missed_part.index(late) < missed_part.index(by_post)
        # The HTML part: tables whose bars are cells of a width, nothing to fetch.
        assert "<table" in html and "<img" not in html and "http" not in html.split("<body")[1]
        widths = [int(w) for w in re.findall(r'<td width="(\d+)" height="10" bgcolor', html)]
        assert max(widths) == 160 and min(widths) >= 2  # the largest count fills the bar
        assert "<strong>2 / 4</strong> (50%)" in html and f">{late}<" in html
        [name] = [s["name"] for s in SUPERVISORS if s["email"] == str(report["To"])]
        assert f"Kedves {name}!" in text and f"Kedves {name}!" in html

    # Once a week: a second tick that Monday, or on Tuesday, sends nothing more.
    assert "0 reports" in desk("tick", "--at", (sending + hour).isoformat()).stdout
    assert "0 reports" in desk("tick", "--at", (sending + day).isoformat()).stdout
    assert len([m for m in smtp_sink.messages if "Heti jelentés" in m["Subject"]]) == 2


def test_report_week_for_people_and_its_bad_input(mailbox, smtp_sink, desk):
    result = desk("report", "--week")
    assert result.returncode == 0 and "opened 0, closed 0" in result.stdout
    assert "acknowledged within the deadline: 0 of 0" in result.stdout
    for args in (["report"], ["report", "--week", "--at", "tegnap"], ["report", "--week", "--at", "99999-01-01"]):
        bad = desk(*args, check=False)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("sections, named", [
    ({"desk": {"digest_time": "25:00"}}, "desk.digest_time"),
    ({"desk": {"digest_time": "８:00"}}, "desk.digest_time"),
    ({"desk": {"forward_attachment_bytes": "10 MB"}}, "desk.forward_attachment_bytes"),
    ({"desk": {"digest_hour": 8}}, "desk.digest_hour: unknown key"),
    ({"supervisors": [{"name": "Nagy Éva"}]}, "supervisors[0].email"),
    ({"supervisors": [{"name": "Nagy Éva", "email": "nagy.eva"}]}, "supervisors[0].email"),
    ({"supervisors": [{"name": "Nagy Éva", "email": "nagy.eva@crossec.com", "phone": "1"}]}, "supervisors[0].phone"),
])
def test_bad_desk_settings_name_the_key(mailbox, mailbridge_for, sections, named):
    desk = mailbridge_for(mailbox, init=False, **sections)
    result = desk("tickets", "list", check=False)
    assert result.returncode == 2 and named in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_two_hosts_ticking_at_once_send_each_digest_and_report_once(mailbox, smtp_sink, mailbridge_for,
                                                                     postgres_server):
    """Several hosts on one PostgreSQL: the day (and the week) is claimed before anything is queued."""
    url = postgres_server.create_database("mailbridge_desk_at_once")
    desk = mailbridge_for(mailbox, smtp_sink, database={"url": url}, agents=AGENTS, supervisors=SUPERVISORS,
                          desk={"agent_digest": True})
    open_by_phone(desk, "Visszahívást kér", "Horváth Ödön")
    open_by_phone(desk, "GDPR sablonok", "Németh Lilla", area="GDPR Segédanyagok")
    monday = next_day(lambda d: d.weekday() == 0 and is_working_day(d, "HU"))

    # Another host in the middle of queueing them (its transaction holds the claims): this one
    # leaves both alone, and does not take the day as done.
    import sqlalchemy as sa

    from mailbridge.adapters.db import claim_in_transaction
    from mailbridge.journal import EventKind

    engine = sa.create_engine(url)
    with engine.connect() as other:
        assert claim_in_transaction(other, EventKind.AGENT_DIGEST_QUEUED.value)
        assert claim_in_transaction(other, EventKind.SUPERVISOR_REPORT_QUEUED.value)
        busy = desk("tick", "--at", local(monday, 8, 1).isoformat())
        assert "0 digests" in busy.stdout and "0 reports" in busy.stdout
        other.rollback()  # it failed: nothing was queued, the claims are free again
    engine.dispose()
    for round_ in range(2):  # three hosts at once, then all again a little later
        at = local(monday, 8, 2 + 30 * round_).isoformat()
        processes = [desk.start("tick", "--at", at) for _ in range(3)]
        for process in processes:
            _out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
    digests = [str(m["To"]) for m in smtp_sink.messages if "Napi ügylista" in m["Subject"]]
    reports = [str(m["To"]) for m in smtp_sink.messages if "Heti jelentés" in m["Subject"]]
    assert sorted(digests) == sorted([ANNA, PETER])
    assert sorted(reports) == sorted(s["email"] for s in SUPERVISORS)


def test_erasing_a_customer_takes_their_line_out_of_a_digest_and_leaves_the_others(mailbox, smtp_sink, desk):
    """SPEC, Data protection: digests are copies derived from the person's data too."""
    theirs = open_by_phone(desk, "Hibás számla Kovács Józsefnek", "Kovács József", "kovacs.jozsef@example.hu")
    other = open_by_phone(desk, "Visszahívást kér", "Horváth Ödön", "odon@example.hu")
    morning = local(next_day(lambda d: is_working_day(d, "HU")), 8, 30)
    assert "1 digests" in desk("tick", "--at", morning.isoformat()).stdout
    [(before,)] = sql(desk, "SELECT body_text FROM outbox WHERE template = 'agent_digest'")
    assert "Kovács József" in before and "Hibás számla" in before
    desk("gdpr", "erase", "kovacs.jozsef@example.hu", "--yes")
    [(after,)] = sql(desk, "SELECT body_text FROM outbox WHERE template = 'agent_digest'")
    assert "Kovács" not in after and "kovacs.jozsef" not in after and "Hibás számla" not in after
    assert f"[{theirs}]" in after  # the ticket stays countable, by its ID
    other_lines = [line for line in before.splitlines() if other in line or "Horváth" in line or "odon@" in line]
    assert other_lines and all(line in after.splitlines() for line in other_lines)
