"""Acknowledgement deadline in Hungarian working days (SPEC "Schedule and working days", P7).

Expected dates were worked out by hand from the official Hungarian calendar as
`holidays.HU` (0.109) gives it:
  2024: bridge days off Mon 19 Aug, Tue 24 Dec, Fri 27 Dec; working Saturdays 3 Aug, 7 Dec, 14 Dec.
  2025: bridge days off Fri 2 May, Fri 24 Oct, Wed 24 Dec; working Saturdays 17 May, 18 Oct, 13 Dec.
  2026: bridge day off Fri 2 Jan; working Saturday 10 Jan.
The deadline is 00:00 of the day AFTER the last counted working day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest

from mailbridge.policy import deadline as deadline_module
from mailbridge.policy.deadline import (
    DeadlineExplanation,
    SkippedDay,
    ack_deadline,
    explain_deadline,
    hours_left,
    is_working_day,
)

BUD = ZoneInfo("Europe/Budapest")
UTC = timezone.utc


def local(text: str) -> datetime:
    """'2024-08-01 10:00' as an aware Budapest time."""
    return datetime.fromisoformat(text).replace(tzinfo=BUD)


def end_of(day: str) -> datetime:
    """The deadline for a last counted working day: 00:00 local of the next day."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), tzinfo=BUD)


# ---------------------------------------------------------------------------
# The SPEC's examples
# ---------------------------------------------------------------------------


def test_spec_example_working_saturday():
    # Thu 1 Aug 2024 -> Fri 2 Aug (1), Sat 3 Aug (2, transferred working Saturday).
    got = ack_deadline(local("2024-08-01 10:00"))
    assert got == datetime(2024, 8, 4, 0, 0, tzinfo=BUD)
    assert got.isoformat() == "2024-08-04T00:00:00+02:00"
    assert got.tzinfo == BUD


def test_spec_example_christmas_2024():
    # Fri 20 Dec 2024 -> Mon 23 Dec (1: an ordinary working day), then 24 (bridge day),
    # 25-26 (Christmas), 27 (bridge day), 28-29 (weekend) are off -> Mon 30 Dec (2).
    got = ack_deadline(local("2024-12-20 10:00"))
    assert got.isoformat() == "2024-12-31T00:00:00+01:00"


def test_the_calendar_the_spec_relies_on():
    hu = holidays.HU(years=2024, language="en_US")
    assert hu.is_working_day(date(2024, 12, 23))
    assert not hu.is_working_day(date(2024, 12, 24))
    assert hu.get(date(2024, 12, 24)).startswith("Day off (substituted from")
    assert {date(2024, 8, 3), date(2024, 12, 7), date(2024, 12, 14)} <= set(hu.weekend_workdays)


# ---------------------------------------------------------------------------
# Christmas weeks, every day 18-31 Dec
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded, last_day",
    [
        ("2024-12-18", "2024-12-20"),  # Wed -> Thu 19, Fri 20
        ("2024-12-19", "2024-12-23"),  # Thu -> Fri 20, (weekend), Mon 23
        ("2024-12-20", "2024-12-30"),  # Fri -> Mon 23, then 24-29 all off -> Mon 30 (SPEC)
        ("2024-12-21", "2024-12-30"),  # Sat -> same two days as from Friday
        ("2024-12-22", "2024-12-30"),  # Sun -> same
        ("2024-12-23", "2024-12-31"),  # Mon -> 24 bridge, 25-26 Christmas, 27 bridge, 28-29 weekend: Mon 30, Tue 31
        ("2024-12-24", "2024-12-31"),  # recorded on a day off: still counts from the next day -> 30, 31
        ("2024-12-25", "2024-12-31"),
        ("2024-12-26", "2024-12-31"),
        ("2024-12-27", "2024-12-31"),
        ("2024-12-28", "2024-12-31"),
        ("2024-12-29", "2024-12-31"),
        ("2024-12-30", "2025-01-02"),  # Mon -> Tue 31, (1 Jan New Year) Thu 2 Jan
        ("2024-12-31", "2025-01-03"),  # Tue -> (1 Jan) Thu 2, Fri 3
        ("2025-12-18", "2025-12-22"),  # Thu -> Fri 19, (weekend) Mon 22
        ("2025-12-19", "2025-12-23"),  # Fri -> Mon 22, Tue 23
        ("2025-12-20", "2025-12-23"),  # Sat -> Mon 22, Tue 23
        ("2025-12-21", "2025-12-23"),  # Sun -> Mon 22, Tue 23
        ("2025-12-22", "2025-12-29"),  # Mon -> Tue 23, then 24 bridge, 25-26 Christmas, 27-28 weekend -> Mon 29
        ("2025-12-23", "2025-12-30"),  # Tue -> Mon 29, Tue 30
        ("2025-12-24", "2025-12-30"),
        ("2025-12-25", "2025-12-30"),
        ("2025-12-26", "2025-12-30"),
        ("2025-12-27", "2025-12-30"),
        ("2025-12-28", "2025-12-30"),
        ("2025-12-29", "2025-12-31"),  # Mon -> Tue 30, Wed 31
        ("2025-12-30", "2026-01-05"),  # Tue -> Wed 31, then 1 Jan New Year, 2 Jan bridge day, 3-4 weekend -> Mon 5
        ("2025-12-31", "2026-01-06"),  # Wed -> Mon 5, Tue 6
    ],
)
def test_christmas_weeks(recorded, last_day):
    for hour in ("00:00", "09:30", "23:59"):  # the hour of the recording day never matters
        assert ack_deadline(local(f"{recorded} {hour}")) == end_of(last_day)


# ---------------------------------------------------------------------------
# Transferred working Saturdays, weekends, bridge days
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded, last_day",
    [
        # 2024: working Saturdays 3 Aug, 7 Dec, 14 Dec
        ("2024-08-01", "2024-08-03"),  # Thu -> Fri 2, Sat 3 (working)
        ("2024-08-02", "2024-08-05"),  # Fri -> Sat 3 (working), Mon 5
        ("2024-08-03", "2024-08-06"),  # recorded ON the working Saturday: it is the recording day -> Mon 5, Tue 6
        ("2024-12-05", "2024-12-07"),  # Thu -> Fri 6, Sat 7 (working)
        ("2024-12-12", "2024-12-14"),  # Thu -> Fri 13, Sat 14 (working)
        ("2024-12-13", "2024-12-16"),  # Fri -> Sat 14 (working), Mon 16
        # 2025: working Saturdays 17 May, 18 Oct, 13 Dec
        ("2025-05-15", "2025-05-17"),  # Thu -> Fri 16, Sat 17 (working)
        ("2025-05-16", "2025-05-19"),  # Fri -> Sat 17 (working), Mon 19
        ("2025-10-16", "2025-10-18"),  # Thu -> Fri 17, Sat 18 (working)
        ("2025-12-11", "2025-12-13"),  # Thu -> Fri 12, Sat 13 (working)
        ("2025-12-12", "2025-12-15"),  # Fri -> Sat 13 (working), Mon 15
        # 2026: working Saturday 10 Jan
        ("2026-01-08", "2026-01-10"),  # Thu -> Fri 9, Sat 10 (working)
        # ordinary Saturdays are not working days
        ("2024-06-06", "2024-06-10"),  # Thu -> Fri 7, (weekend) Mon 10
        # bridge days
        ("2024-08-16", "2024-08-22"),  # Fri -> 17-18 weekend, 19 bridge, 20 State Foundation Day -> Wed 21, Thu 22
        ("2025-04-30", "2025-05-06"),  # Wed -> 1 May Labour Day, 2 May bridge, 3-4 weekend -> Mon 5, Tue 6
        ("2025-10-22", "2025-10-28"),  # Wed -> 23 Oct National Day, 24 bridge, 25-26 weekend -> Mon 27, Tue 28
        # a holiday on a Saturday is just a day off
        ("2025-03-13", "2025-03-17"),  # Thu -> Fri 14, (Sat 15 National Day, Sun) Mon 17
    ],
)
def test_transferred_days(recorded, last_day):
    assert ack_deadline(local(f"{recorded} 12:00")) == end_of(last_day)


@pytest.mark.parametrize(
    "day, working",
    [
        (date(2024, 8, 3), True),  # transferred working Saturday
        (date(2024, 12, 7), True),
        (date(2024, 12, 14), True),
        (date(2025, 5, 17), True),
        (date(2025, 10, 18), True),
        (date(2025, 12, 13), True),
        (date(2026, 1, 10), True),
        (date(2024, 8, 10), False),  # ordinary Saturday
        (date(2024, 8, 11), False),  # Sunday
        (date(2024, 8, 19), False),  # bridge day (Monday)
        (date(2024, 8, 20), False),  # State Foundation Day
        (date(2024, 12, 23), True),
        (date(2024, 12, 24), False),
        (date(2024, 12, 27), False),
        (date(2025, 1, 1), False),
        (date(2025, 12, 24), False),
        (date(2026, 1, 2), False),
        (date(2024, 8, 21), True),
    ],
)
def test_is_working_day(day, working):
    assert is_working_day(day) is working
    assert is_working_day(day, "HU") is working


def test_is_working_day_other_country():
    assert is_working_day(date(2024, 10, 3), "DE") is False  # German Unity Day
    assert is_working_day(date(2024, 8, 3), "DE") is False  # a Saturday there
    assert is_working_day(date(2024, 8, 19), "DE") is True


def test_is_working_day_rejects_a_datetime_and_unknown_country():
    with pytest.raises(TypeError):
        is_working_day(datetime(2024, 8, 3, 12, tzinfo=BUD))
    with pytest.raises(ValueError, match="country"):
        is_working_day(date(2024, 8, 3), "XX")


@pytest.mark.parametrize(
    "recorded, last_day",
    [
        ("2024-06-08 10:00", "2024-06-11"),  # Sat -> Mon 10, Tue 11
        ("2024-06-09 10:00", "2024-06-11"),  # Sun -> Mon 10, Tue 11
        ("2024-06-08 00:00", "2024-06-11"),
        ("2024-06-09 23:59", "2024-06-11"),
    ],
)
def test_recorded_on_a_weekend(recorded, last_day):
    assert ack_deadline(local(recorded)) == end_of(last_day)


# ---------------------------------------------------------------------------
# The local day of the recording
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded_at, last_day",
    [
        # summer (UTC+2): Mon 3 Jun 2024
        (datetime(2024, 6, 3, 21, 30, tzinfo=UTC), "2024-06-05"),  # 23:30 Mon in Budapest -> Tue 4, Wed 5
        (datetime(2024, 6, 3, 21, 59, 59, tzinfo=UTC), "2024-06-05"),
        (datetime(2024, 6, 3, 22, 0, tzinfo=UTC), "2024-06-06"),  # 00:00 Tue in Budapest -> Wed 5, Thu 6
        (datetime(2024, 6, 3, 22, 30, tzinfo=UTC), "2024-06-06"),
        # winter (UTC+1): Mon 15 Jan 2024
        (datetime(2024, 1, 15, 22, 59, tzinfo=UTC), "2024-01-17"),  # 23:59 Mon -> Tue 16, Wed 17
        (datetime(2024, 1, 15, 23, 30, tzinfo=UTC), "2024-01-18"),  # 00:30 Tue -> Wed 17, Thu 18
        # other zones are converted first
        (datetime(2024, 6, 3, 19, 0, tzinfo=ZoneInfo("America/New_York")), "2024-06-06"),  # 01:00 Tue Budapest
        (datetime(2024, 6, 4, 6, 30, tzinfo=ZoneInfo("Asia/Tokyo")), "2024-06-05"),  # 23:30 Mon Budapest
        (datetime(2024, 6, 4, 0, 30, tzinfo=timezone(timedelta(hours=2))), "2024-06-06"),
        # Thu 1 Aug 2024 23:30 UTC is already Fri 2 Aug in Budapest -> Sat 3 (working), Mon 5
        (datetime(2024, 8, 1, 23, 30, tzinfo=UTC), "2024-08-05"),
        # Fri 20 Dec 2024 23:30 UTC is Sat 21 in Budapest: same deadline as the SPEC's Friday
        (datetime(2024, 12, 20, 23, 30, tzinfo=UTC), "2024-12-30"),
        # Sun 22 Dec 2024 23:30 UTC is Mon 23 in Budapest: 23 is now the recording day -> 30, 31
        (datetime(2024, 12, 22, 23, 30, tzinfo=UTC), "2024-12-31"),
    ],
)
def test_recording_day_is_the_local_day(recorded_at, last_day):
    assert ack_deadline(recorded_at) == end_of(last_day)


def test_other_timezone_argument():
    recorded = datetime(2024, 6, 3, 22, 30, tzinfo=UTC)  # 23:30 BST Monday, 00:30 CEST Tuesday
    london = ack_deadline(recorded, timezone="Europe/London")
    assert london == datetime(2024, 6, 6, 0, 0, tzinfo=ZoneInfo("Europe/London"))  # Tue 4, Wed 5
    assert london.isoformat() == "2024-06-06T00:00:00+01:00"
    assert ack_deadline(recorded) == end_of("2024-06-06")  # Budapest: Wed 5, Thu 6
    with pytest.raises(ValueError, match="time zone"):
        ack_deadline(recorded, timezone="Europe/Nowhere")


# ---------------------------------------------------------------------------
# DST weeks: the deadline is local midnight with the offset of that date
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded_at, expected",
    [
        # DST starts Sun 31 Mar 2024 (Easter Sunday too): Thu 28 Mar -> 29 Good Friday, 30-31 weekend,
        # 1 Apr Easter Monday -> Tue 2, Wed 3 Apr; deadline in summer time.
        (local("2024-03-28 10:00"), "2024-04-04T00:00:00+02:00"),
        # 23:30 UTC Wed 27 Mar (winter, +1) is Thu 28 in Budapest: same as above
        (datetime(2024, 3, 27, 23, 30, tzinfo=UTC), "2024-04-04T00:00:00+02:00"),
        # Wed 27 Mar 2024 -> Thu 28, (Good Friday, weekend, Easter Monday) Tue 2 Apr
        (local("2024-03-27 10:00"), "2024-04-03T00:00:00+02:00"),
        # DST starts Sun 30 Mar 2025: Fri 28 Mar -> Mon 31, Tue 1 Apr
        (local("2025-03-28 10:00"), "2025-04-02T00:00:00+02:00"),
        # Thu 27 Mar 2025 -> Fri 28 (winter), Mon 31 (summer)
        (local("2025-03-27 10:00"), "2025-04-01T00:00:00+02:00"),
        # DST ends Sun 27 Oct 2024: Fri 25 Oct -> Mon 28, Tue 29; deadline in winter time
        (local("2024-10-25 10:00"), "2024-10-30T00:00:00+01:00"),
        # Tue 22 Oct 2024 -> 23 Oct National Day -> Thu 24, Fri 25; still summer time
        (local("2024-10-22 10:00"), "2024-10-26T00:00:00+02:00"),
        # Thu 24 Oct 2024 -> Fri 25, Mon 28: deadline is the night after the change
        (local("2024-10-24 10:00"), "2024-10-29T00:00:00+01:00"),
        # DST ends Sun 26 Oct 2025: Wed 22 Oct -> 23 National Day, 24 bridge, weekend -> Mon 27, Tue 28
        (local("2025-10-22 10:00"), "2025-10-29T00:00:00+01:00"),
        # recorded in the repeated hour (02:30 on 26 Oct 2025 happens twice): Sunday either way
        (datetime(2025, 10, 26, 0, 30, tzinfo=UTC), "2025-10-29T00:00:00+01:00"),
        (datetime(2025, 10, 26, 1, 30, tzinfo=UTC), "2025-10-29T00:00:00+01:00"),
    ],
)
def test_dst_weeks(recorded_at, expected):
    got = ack_deadline(recorded_at)
    assert got.isoformat() == expected
    assert got.tzinfo == BUD


# ---------------------------------------------------------------------------
# Other terms
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recorded, business_days, last_day",
    [
        ("2024-08-01 10:00", 0, "2024-08-01"),  # 0: end of the recording day itself
        ("2024-12-21 10:00", 0, "2024-12-21"),  # ... even if that day is off
        ("2024-12-20 10:00", 1, "2024-12-23"),
        ("2024-08-01 10:00", 5, "2024-08-07"),  # Fri 2, Sat 3 (working), Mon 5, Tue 6, Wed 7
        ("2024-12-20 10:00", 5, "2025-01-03"),  # Mon 23, Mon 30, Tue 31, Thu 2 Jan, Fri 3 Jan
        ("2025-12-19 10:00", 5, "2025-12-31"),  # Mon 22, Tue 23, (24-28 off) Mon 29, Tue 30, Wed 31
        ("2024-08-14 10:00", 5, "2024-08-23"),  # Thu 15, Fri 16, (17-18, 19 bridge, 20 holiday) Wed 21, Thu 22, Fri 23
    ],
)
def test_other_terms(recorded, business_days, last_day):
    assert ack_deadline(local(recorded), business_days=business_days) == end_of(last_day)


@pytest.mark.parametrize("bad", [-1, -5])
def test_negative_term_is_refused(bad):
    with pytest.raises(ValueError):
        ack_deadline(local("2024-08-01 10:00"), business_days=bad)


@pytest.mark.parametrize("bad", [1.5, "2", None, True])
def test_non_integer_term_is_refused(bad):
    with pytest.raises(TypeError):
        ack_deadline(local("2024-08-01 10:00"), business_days=bad)


@pytest.mark.parametrize("function", [ack_deadline, explain_deadline])
def test_naive_datetime_is_refused(function):
    with pytest.raises(ValueError, match="timezone-aware"):
        function(datetime(2024, 8, 1, 10, 0))


# ---------------------------------------------------------------------------
# hours_left
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "deadline, now, hours",
    [
        (end_of("2024-08-03"), local("2024-08-03 12:00"), 12.0),
        (end_of("2024-08-03"), local("2024-08-04 03:00"), -3.0),
        (end_of("2024-08-03"), datetime(2024, 8, 3, 21, 30, tzinfo=UTC), 0.5),  # 23:30 local
        (end_of("2024-08-03"), end_of("2024-08-03"), 0.0),
        # across the October change (same tzinfo on both sides: wall-clock subtraction would say 24)
        (local("2024-10-28 00:00"), local("2024-10-27 00:00"), 25.0),
        # across the March change: 23 real hours
        (local("2025-03-31 00:00"), local("2025-03-30 00:00"), 23.0),
    ],
)
def test_hours_left(deadline, now, hours):
    assert hours_left(deadline, now) == pytest.approx(hours)


def test_hours_left_refuses_naive():
    with pytest.raises(ValueError):
        hours_left(end_of("2024-08-03"), datetime(2024, 8, 3, 12))
    with pytest.raises(ValueError):
        hours_left(datetime(2024, 8, 4), local("2024-08-03 12:00"))


# ---------------------------------------------------------------------------
# explain_deadline
# ---------------------------------------------------------------------------


def test_explain_working_saturday():
    e = explain_deadline(local("2024-08-01 10:00"))
    assert isinstance(e, DeadlineExplanation)
    assert e.recorded_day == date(2024, 8, 1)
    assert e.deadline == ack_deadline(local("2024-08-01 10:00"))
    assert e.counted == (date(2024, 8, 2), date(2024, 8, 3))
    assert e.skipped == ()
    assert e.counted_notes == ((date(2024, 8, 3), "working Saturday"),)
    assert e.note_for(date(2024, 8, 3)) == "working Saturday"
    assert e.note_for(date(2024, 8, 2)) is None
    assert e.working_saturdays == (date(2024, 8, 3),)
    assert e.deadline_day == date(2024, 8, 3)


def test_explain_christmas_2024():
    e = explain_deadline(local("2024-12-20 10:00"))
    assert e.counted == (date(2024, 12, 23), date(2024, 12, 30))
    assert e.counted_notes == ()
    assert e.skipped == (
        SkippedDay(date(2024, 12, 21), "weekend"),
        SkippedDay(date(2024, 12, 22), "weekend"),
        SkippedDay(date(2024, 12, 24), "bridge day: Day off (substituted from 12/07/2024)"),
        SkippedDay(date(2024, 12, 25), "holiday: Christmas Day"),
        SkippedDay(date(2024, 12, 26), "holiday: Second Day of Christmas"),
        SkippedDay(date(2024, 12, 27), "bridge day: Day off (substituted from 12/14/2024)"),
        SkippedDay(date(2024, 12, 28), "weekend"),
        SkippedDay(date(2024, 12, 29), "weekend"),
    )
    assert [s.kind for s in e.skipped] == [
        "weekend", "weekend", "bridge day", "holiday", "holiday", "bridge day", "weekend", "weekend",
    ]  # fmt: skip
    assert e.skipped[3].name == "Christmas Day"
    assert e.skipped[0].name is None
    assert e.deadline.isoformat() == "2024-12-31T00:00:00+01:00"


def test_explain_new_year_2026():
    e = explain_deadline(local("2025-12-30 10:00"))
    assert e.counted == (date(2025, 12, 31), date(2026, 1, 5))
    assert [(s.day, s.reason) for s in e.skipped] == [
        (date(2026, 1, 1), "holiday: New Year's Day"),
        (date(2026, 1, 2), "bridge day: Day off (substituted from 01/10/2026)"),
        (date(2026, 1, 3), "weekend"),
        (date(2026, 1, 4), "weekend"),
    ]


def test_explain_holiday_on_a_weekend_names_the_holiday():
    # Thu 28 Mar 2024: Good Friday, Sat, Easter Sunday, Easter Monday
    e = explain_deadline(local("2024-03-28 10:00"))
    assert [s.reason for s in e.skipped] == [
        "holiday: Good Friday",
        "weekend",
        "holiday: Easter",
        "holiday: Easter Monday",
    ]
    assert e.counted == (date(2024, 4, 2), date(2024, 4, 3))


def test_explain_zero_days():
    e = explain_deadline(local("2024-12-21 10:00"), business_days=0)
    assert e.counted == () and e.skipped == ()
    assert e.deadline_day == date(2024, 12, 21)
    assert e.deadline == end_of("2024-12-21")


def test_explain_is_frozen():
    e = explain_deadline(local("2024-08-01 10:00"))
    with pytest.raises(AttributeError):
        e.deadline = None  # type: ignore[misc]


def test_names_do_not_follow_the_process_locale(monkeypatch):
    # With language=None the library reads LANGUAGE/LC_ALL/LANG; we always ask for en_US.
    monkeypatch.setenv("LANGUAGE", "hu")
    monkeypatch.setenv("LC_ALL", "hu_HU.UTF-8")
    deadline_module._calendar.cache_clear()
    try:
        e = explain_deadline(local("2024-12-20 10:00"))
        assert "holiday: Christmas Day" in [s.reason for s in e.skipped]
    finally:
        deadline_module._calendar.cache_clear()


# ---------------------------------------------------------------------------
# describe()
# ---------------------------------------------------------------------------


def test_describe_english_working_saturday():
    text = explain_deadline(local("2024-08-01 10:00")).describe()
    assert text == (
        "Recorded on Thursday 1 Aug 2024; counted Fri 2 Aug and Sat 3 Aug (a working Saturday); "
        "deadline: end of Sat 3 Aug 2024."
    )
    assert explain_deadline(local("2024-08-01 10:00")).describe("en") == text


def test_describe_hungarian_working_saturday():
    text = explain_deadline(local("2024-08-01 10:00")).describe("hu")
    assert text == (
        "Rögzítve: 2024. augusztus 1., csütörtök; számolt munkanapok: aug. 2. (péntek), "
        "aug. 3. (szombat, áthelyezett munkanap); határidő: 2024. augusztus 3. (szombat) 24:00."
    )


def test_describe_christmas_both_languages():
    e = explain_deadline(local("2024-12-20 10:00"))
    en = e.describe("en")
    assert en.startswith("Recorded on Friday 20 Dec 2024; counted Mon 23 Dec and Mon 30 Dec; skipped ")
    for piece in (
        "Sat 21 Dec (weekend)",
        "Tue 24 Dec (bridge day)",
        "Wed 25 Dec (Christmas Day)",
        "Thu 26 Dec (Second Day of Christmas)",
        "Fri 27 Dec (bridge day)",
    ):
        assert piece in en
    assert en.endswith("deadline: end of Mon 30 Dec 2024.")

    hu = e.describe("hu")
    assert hu.startswith("Rögzítve: 2024. december 20., péntek; számolt munkanapok: dec. 23. (hétfő), dec. 30. (hétfő); ")
    for piece in (
        "dec. 21. (szombat, hétvége)",
        "dec. 24. (kedd, áthelyezett pihenőnap)",
        "dec. 25. (szerda, ünnepnap: Karácsony)",
        "dec. 26. (csütörtök, ünnepnap: Karácsony másnapja)",
        "dec. 27. (péntek, áthelyezett pihenőnap)",
    ):
        assert piece in hu
    assert hu.endswith("határidő: 2024. december 30. (hétfő) 24:00.")


def test_describe_across_the_year():
    e = explain_deadline(local("2025-12-30 10:00"))
    assert "counted Wed 31 Dec and Mon 5 Jan" in e.describe()
    assert e.describe().endswith("deadline: end of Mon 5 Jan 2026.")
    hu = e.describe("hu")
    assert "jan. 1. (csütörtök, ünnepnap: Újév)" in hu
    assert hu.endswith("határidő: 2026. január 5. (hétfő) 24:00.")


def test_describe_zero_days_and_bad_language():
    e = explain_deadline(local("2024-08-01 10:00"), business_days=0)
    assert e.describe() == "Recorded on Thursday 1 Aug 2024; no working days to count; deadline: end of Thu 1 Aug 2024."
    assert e.describe("hu") == (
        "Rögzítve: 2024. augusztus 1., csütörtök; számolt munkanap: nincs; határidő: 2024. augusztus 1. (csütörtök) 24:00."
    )
    with pytest.raises(ValueError):
        e.describe("de")


def test_ack_deadline_agrees_with_explain_over_two_years():
    start = local("2024-01-01 12:00")
    for offset in range(0, 731, 1):
        recorded = start + timedelta(days=offset)
        e = explain_deadline(recorded)
        assert e.deadline == ack_deadline(recorded)
        assert len(e.counted) == 2
        assert all(is_working_day(d) for d in e.counted)
        assert not any(is_working_day(s.day) for s in e.skipped)
        # counted + skipped cover every day from the recording day to the deadline day
        days = sorted(e.counted + tuple(s.day for s in e.skipped))
        assert days == [e.recorded_day + timedelta(days=i) for i in range(1, len(days) + 1)]


def test_people_read_stored_times_in_local_time_and_a_midnight_deadline_as_24_00():
    from mailbridge.cli.output import local_time

    assert local_time("2026-11-30T23:00:00+00:00", "Europe/Budapest", deadline=True) == "2026-11-30 24:00 CET"
    assert local_time("2026-07-01T08:05:59+00:00", "Europe/Budapest") == "2026-07-01 10:05 CEST"
    assert local_time(None, "Europe/Budapest") == ""
