"""Acknowledgement deadlines in Hungarian working days (P7). Pure.

The deadline of a case is the end (24:00 local time, i.e. 00:00 of the next
local day) of the N-th working day *after* the local calendar day on which
the case was recorded. The recording day itself never counts, whatever the
hour. Working days come from the ``holidays`` package and nothing else:
weekends and public holidays are off, the government's transferred working
Saturdays count, and the weekdays given off in exchange ("Day off
(substituted from MM/DD/YYYY)", here called bridge days) do not.

No clock and no I/O of our own: every instant is an argument. (Reading the
tz database and the library's country module and translation files on first
use is the only file access, and it is cached.) Holiday objects are built once per
(country, year, language), with ``expand=False`` so that after construction
they are only ever read -- safe to share between scheduler threads.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as _utc_zone
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from holidays.registry import COUNTRIES

__all__ = [
    "DeadlineExplanation",
    "SkippedDay",
    "ack_deadline",
    "explain_deadline",
    "hours_left",
    "is_working_day",
]

DEFAULT_BUSINESS_DAYS = 2
DEFAULT_TIMEZONE = "Europe/Budapest"
DEFAULT_COUNTRY = "HU"

WEEKEND = "weekend"
HOLIDAY = "holiday"
BRIDGE_DAY = "bridge day"

# No real calendar needs this long to yield one working day; it only stops a
# broken calendar (or an absurd business_days) from looping for ever.
_MAX_SCAN_DAYS = 366 * 10

# Name language asked of the library: explicit, because with language=None the
# library picks it from LANGUAGE/LC_ALL/LC_MESSAGES/LANG of the process, and the
# same daemon would then write English or Hungarian reasons by environment.
_REASON_LANGUAGE = "en_US"


# ---------------------------------------------------------------------------
# The calendar (the library, cached)
# ---------------------------------------------------------------------------


def _language_for(country: str, wanted: str) -> str | None:
    cls = _country_class(country)
    supported = getattr(cls, "supported_languages", ()) or ()
    if wanted in supported:
        return wanted
    # Unsupported: the entity's own language, never the process locale.
    return getattr(cls, "default_language", None)


_COUNTRY_IMPORT = threading.Lock()  # scheduler threads may ask for a calendar at once


@lru_cache(maxsize=None)
def _country_class(country: str) -> type[holidays.HolidayBase]:
    """The library's class for `country` (a code such as "HU", or the class's name).

    Any import of `holidays.countries.<name>` (`country_holidays()` and `holidays.HU` too)
    runs the package `holidays.countries`, which imports all ~250 countries: ~60 ms each
    time a command shows a deadline. The country's own module needs only the library's
    core, so it is loaded alone, from the library's registry of modules and names.
    """
    module_name = next((m for m, names in COUNTRIES.items() if country in names), None)
    if module_name is None:
        raise ValueError(f"unknown country code for holidays: {country!r}")
    qualified = f"holidays.countries.{module_name}"
    with _COUNTRY_IMPORT:
        module = sys.modules.get(qualified)
        if module is None:
            path = Path(holidays.__file__).with_name("countries") / f"{module_name}.py"
            spec = importlib.util.spec_from_file_location(qualified, path)
            if spec is None or spec.loader is None or not path.is_file():  # another layout: the library's way
                return getattr(holidays, country).get_entity()
            module = importlib.util.module_from_spec(spec)
            sys.modules[qualified] = module  # `import holidays.countries` later reuses it
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[qualified]
                raise
    return getattr(module, country)


@lru_cache(maxsize=256)
def _calendar(country: str, year: int, language: str | None) -> holidays.HolidayBase:
    """The library's calendar holding `year` (and its neighbours).

    The neighbouring years are loaded too because a transferred working day
    may be decreed in the data of the other year (a Saturday in December
    worked for a day off in January); `weekend_workdays` then sits on the
    object of the year of the day off. Only dates of `year` are ever asked.
    """
    return _country_class(country)(years=(year - 1, year, year + 1), language=language, expand=False)


def _cal(country: str, day: date, language: str = _REASON_LANGUAGE) -> holidays.HolidayBase:
    return _calendar(country, day.year, _language_for(country, language))


def is_working_day(day: date, country: str = DEFAULT_COUNTRY) -> bool:
    """Is `day` a working day in `country` (transferred Saturdays included)?"""
    if isinstance(day, datetime):  # a datetime is a date; its local day is the caller's business
        raise TypeError("is_working_day takes a date, not a datetime")
    return _cal(country, day).is_working_day(day)


def _substitution_prefix(cal: holidays.HolidayBase) -> str | None:
    """'Day off (substituted from ' in the calendar's language, if it has such days."""
    label = getattr(cal, "substituted_label", None)
    tr = getattr(cal, "tr", None)
    if not label or tr is None:
        return None
    prefix = tr(label).split("%s", 1)[0]
    return prefix or None


def _holiday_parts(cal: holidays.HolidayBase, day: date) -> tuple[list[str], list[str]]:
    """(holiday names, bridge-day names) the library gives `day`."""
    names = cal.get_list(day)
    prefix = _substitution_prefix(cal)
    bridge = [n for n in names if prefix and n.startswith(prefix)]
    return [n for n in names if n not in bridge], bridge


def _weekend_workday(cal: holidays.HolidayBase, day: date) -> bool:
    return day in cal.weekend_workdays


# ---------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {name!r}") from exc


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")


def _check_days(business_days: int) -> None:
    if isinstance(business_days, bool) or not isinstance(business_days, int):
        raise TypeError(f"business_days must be an int, got {business_days!r}")
    if business_days < 0:
        raise ValueError(f"business_days must be >= 0, got {business_days}")


def _local_day(recorded_at: datetime, zone: ZoneInfo) -> date:
    _require_aware(recorded_at, "recorded_at")
    return recorded_at.astimezone(zone).date()


def _count(recorded_day: date, business_days: int, country: str) -> tuple[list[date], list[date]]:
    """(working days counted, non-working days passed over), in order."""
    counted: list[date] = []
    passed: list[date] = []
    day = recorded_day
    for _ in range(_MAX_SCAN_DAYS):
        if len(counted) == business_days:
            return counted, passed
        day += timedelta(days=1)
        (counted if is_working_day(day, country) else passed).append(day)
    raise ValueError(
        f"no {business_days} working days within {_MAX_SCAN_DAYS} days after {recorded_day} ({country})"
    )


def _end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """24:00 of `day` = the first instant of the next local day, aware in `zone`.

    Round-tripped through UTC so that a zone whose clocks jump at midnight
    still gets a real instant (Budapest changes at 02:00/03:00: no effect).
    """
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return midnight.astimezone(_utc_zone.utc).astimezone(zone)


def ack_deadline(
    recorded_at: datetime,
    business_days: int = DEFAULT_BUSINESS_DAYS,
    timezone: str = DEFAULT_TIMEZONE,
    country: str = DEFAULT_COUNTRY,
) -> datetime:
    """End of the `business_days`-th working day after the local recording day.

    `recorded_at` must be aware (any zone); it is first converted to
    `timezone`, whose calendar day is the recording day. The result is aware,
    in `timezone`, at 00:00 of the day after the deadline day. With
    ``business_days=0`` the deadline is the end of the recording day itself.
    """
    _check_days(business_days)
    zone = _zone(timezone)
    recorded_day = _local_day(recorded_at, zone)
    counted, _ = _count(recorded_day, business_days, country)
    return _end_of_day(counted[-1] if counted else recorded_day, zone)


def before_go_live(received: datetime | None, since: date | None, zone_name: str) -> bool:
    """Mail our server received before `since` (its local midnight): the history of a mailbox
    that went live then (`tickets.acknowledge_since`), which is not acknowledged. A time not
    known, or no such day configured: not before."""
    if since is None or received is None:
        return False
    if received.tzinfo is None:
        received = received.replace(tzinfo=_utc_zone.utc)
    return received < datetime.combine(since, time(), _zone(zone_name))


def hours_left(deadline: datetime, now: datetime) -> float:
    """Hours from `now` to `deadline`; negative once the deadline has passed.

    Both are converted to UTC first: Python subtracts two datetimes sharing
    one tzinfo as wall-clock times, which is an hour off across a DST change.
    """
    _require_aware(deadline, "deadline")
    _require_aware(now, "now")
    delta = deadline.astimezone(_utc_zone.utc) - now.astimezone(_utc_zone.utc)
    return delta.total_seconds() / 3600.0


# ---------------------------------------------------------------------------
# Explanation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedDay:
    """A non-working day passed over while counting.

    `reason` is ``"weekend"``, ``"holiday: <name>"`` or ``"bridge day: <name>"``
    with the library's (English) name, e.g. ``"holiday: Christmas Day"``,
    ``"bridge day: Day off (substituted from 12/07/2024)"``. A holiday falling
    on a weekend is given as the holiday (the more telling reason).
    """

    day: date
    reason: str

    @property
    def kind(self) -> str:
        """``"weekend"``, ``"holiday"`` or ``"bridge day"``."""
        return self.reason.split(":", 1)[0]

    @property
    def name(self) -> str | None:
        """The library's name of the holiday / bridge day; None for a weekend."""
        _, sep, rest = self.reason.partition(": ")
        return rest if sep else None


@dataclass(frozen=True)
class DeadlineExplanation:
    """How a deadline was reached, day by day."""

    recorded_at: datetime
    recorded_day: date
    business_days: int
    timezone: str
    country: str
    deadline: datetime
    counted: tuple[date, ...]
    skipped: tuple[SkippedDay, ...]
    # Counted days that are working days only by decree, with why:
    # ((date(2024, 8, 3), "working Saturday"),)
    counted_notes: tuple[tuple[date, str], ...] = ()

    @property
    def deadline_day(self) -> date:
        """The last day of the term (the deadline is its 24:00)."""
        return self.counted[-1] if self.counted else self.recorded_day

    def note_for(self, day: date) -> str | None:
        """The note on a counted day (e.g. ``"working Saturday"``), or None."""
        for noted, note in self.counted_notes:
            if noted == day:
                return note
        return None

    @property
    def working_saturdays(self) -> tuple[date, ...]:
        return tuple(d for d, note in self.counted_notes if note == "working Saturday")

    def describe(self, language: str = "en") -> str:
        """One short paragraph, ``"en"`` or ``"hu"``."""
        if language == "en":
            return _describe_en(self)
        if language == "hu":
            return _describe_hu(self)
        raise ValueError(f"unsupported language: {language!r} (en, hu)")


def _skip_reason(day: date, country: str) -> str:
    cal = _cal(country, day)
    holiday_names, bridge_names = _holiday_parts(cal, day)
    if holiday_names:
        return f"{HOLIDAY}: {'; '.join(holiday_names)}"
    if bridge_names:
        return f"{BRIDGE_DAY}: {'; '.join(bridge_names)}"
    # The library's rule: a day without a holiday entry is off only as a weekend.
    return WEEKEND


def _counted_note(day: date, country: str) -> str | None:
    cal = _cal(country, day)
    if not _weekend_workday(cal, day):
        return None
    if day.weekday() == 5:
        return "working Saturday"
    if day.weekday() == 6:
        return "working Sunday"
    return "transferred working day"


def explain_deadline(
    recorded_at: datetime,
    business_days: int = DEFAULT_BUSINESS_DAYS,
    timezone: str = DEFAULT_TIMEZONE,
    country: str = DEFAULT_COUNTRY,
) -> DeadlineExplanation:
    """`ack_deadline`, with the days counted and skipped on the way."""
    _check_days(business_days)
    zone = _zone(timezone)
    recorded_day = _local_day(recorded_at, zone)
    counted, passed = _count(recorded_day, business_days, country)
    notes = tuple((d, n) for d in counted if (n := _counted_note(d, country)))
    return DeadlineExplanation(
        recorded_at=recorded_at,
        recorded_day=recorded_day,
        business_days=business_days,
        timezone=timezone,
        country=country,
        deadline=_end_of_day(counted[-1] if counted else recorded_day, zone),
        counted=tuple(counted),
        skipped=tuple(SkippedDay(d, _skip_reason(d, country)) for d in passed),
        counted_notes=notes,
    )


# ---------------------------------------------------------------------------
# Rendering (month and weekday names written out: no locale dependency)
# ---------------------------------------------------------------------------

_EN_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_MONTHS_SHORT = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_HU_WEEKDAYS = ("hétfő", "kedd", "szerda", "csütörtök", "péntek", "szombat", "vasárnap")
_HU_MONTHS = (
    "január", "február", "március", "április", "május", "június",
    "július", "augusztus", "szeptember", "október", "november", "december",
)  # fmt: skip
_HU_MONTHS_SHORT = (
    "jan.", "febr.", "márc.", "ápr.", "máj.", "jún.",
    "júl.", "aug.", "szept.", "okt.", "nov.", "dec.",
)  # fmt: skip

_EN_NOTES = {
    "working Saturday": "a working Saturday",
    "working Sunday": "a working Sunday",
    "transferred working day": "a transferred working day",
}
_HU_NOTES = {
    "working Saturday": "áthelyezett munkanap",
    "working Sunday": "áthelyezett munkanap",
    "transferred working day": "áthelyezett munkanap",
}


def _en_short(d: date) -> str:  # "Fri 2 Aug"
    return f"{_EN_WEEKDAYS[d.weekday()][:3]} {d.day} {_EN_MONTHS_SHORT[d.month - 1]}"


def _en_long(d: date) -> str:  # "Thursday 1 Aug 2024"
    return f"{_EN_WEEKDAYS[d.weekday()]} {d.day} {_EN_MONTHS_SHORT[d.month - 1]} {d.year}"


def _en_join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _hu_long(d: date) -> str:  # "2024. augusztus 1., csütörtök"
    return f"{d.year}. {_HU_MONTHS[d.month - 1]} {d.day}., {_HU_WEEKDAYS[d.weekday()]}"


def _hu_short(d: date, extra: str | None = None) -> str:  # "aug. 3. (szombat, áthelyezett munkanap)"
    inner = _HU_WEEKDAYS[d.weekday()] + (f", {extra}" if extra else "")
    return f"{_HU_MONTHS_SHORT[d.month - 1]} {d.day}. ({inner})"


def _describe_en(e: DeadlineExplanation) -> str:
    parts = [f"Recorded on {_en_long(e.recorded_day)}"]
    if e.counted:
        days = []
        for d in e.counted:
            note = e.note_for(d)
            days.append(_en_short(d) + (f" ({_EN_NOTES.get(note, note)})" if note else ""))
        parts.append("counted " + _en_join(days))
    else:
        parts.append("no working days to count")
    if e.skipped:
        skipped = []
        for s in e.skipped:
            why = s.name if s.kind == HOLIDAY else s.kind  # "weekend", "bridge day", "Christmas Day"
            skipped.append(f"{_en_short(s.day)} ({why})")
        parts.append("skipped " + ", ".join(skipped))
    d = e.deadline_day
    parts.append(f"deadline: end of {_en_short(d)} {d.year}")
    return "; ".join(parts) + "."


def _hu_holiday_name(country: str, day: date, fallback: str | None) -> str | None:
    holiday_names, _ = _holiday_parts(_cal(country, day, "hu"), day)
    return "; ".join(holiday_names) or fallback


def _describe_hu(e: DeadlineExplanation) -> str:
    parts = [f"Rögzítve: {_hu_long(e.recorded_day)}"]
    if e.counted:
        days = []
        for d in e.counted:
            note = e.note_for(d)
            days.append(_hu_short(d, _HU_NOTES.get(note, note) if note else None))
        parts.append("számolt munkanapok: " + ", ".join(days))
    else:
        parts.append("számolt munkanap: nincs")
    if e.skipped:
        skipped = []
        for s in e.skipped:
            if s.kind == WEEKEND:
                why = "hétvége"
            elif s.kind == BRIDGE_DAY:
                why = "áthelyezett pihenőnap"
            else:
                why = f"ünnepnap: {_hu_holiday_name(e.country, s.day, s.name)}"
            skipped.append(_hu_short(s.day, why))
        parts.append("kihagyott napok: " + ", ".join(skipped))
    d = e.deadline_day
    parts.append(f"határidő: {d.year}. {_HU_MONTHS[d.month - 1]} {d.day}. ({_HU_WEEKDAYS[d.weekday()]}) 24:00")
    return "; ".join(parts) + "."
