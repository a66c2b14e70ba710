"""The desk's day and week (P7, P10): when the agents' digest and the supervisors' report are
due, the order of an agent's queue, and a week's figures. Pure.

No clock and no I/O: `now` and the tickets are arguments, so `tick --at` and
tests decide the time. Working days are the deadlines' own (`is_working_day`:
weekends and Hungarian holidays off, transferred working Saturdays on).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from mailbridge.policy.deadline import is_working_day
from mailbridge.vocabulary import AREAS, CATEGORIES, CHANNELS

MONDAY = 0


# ---------------------------------------------------------------------------
# When
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Local days [first, last], as aware instants [start, end) in the desk's time zone."""

    first: date
    last: date
    start: datetime
    end: datetime


def _period(first: date, days: int, zone: ZoneInfo) -> Period:
    last = first + timedelta(days=days - 1)
    return Period(first, last, datetime.combine(first, time(0), zone),
                  datetime.combine(last + timedelta(days=1), time(0), zone))


def _local(now: datetime, zone_name: str) -> tuple[datetime, ZoneInfo]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(zone_name)
    return now.astimezone(zone), zone


def digest_day(now: datetime, digest_time: str, zone_name: str, country: str) -> Period | None:
    """The day whose morning digest is due at `now`: a working day, from `digest_time` (local)
    to its end; None on other days and before that time."""
    local, zone = _local(now, zone_name)
    if not is_working_day(local.date(), country) or local.time() < time.fromisoformat(digest_time):
        return None
    return _period(local.date(), 1, zone)


def report_week(now: datetime, digest_time: str, zone_name: str) -> Period | None:
    """The week (Monday to Sunday, local) whose report is due at `now`: the one before, on a
    Monday from `digest_time` to its end; None at other times."""
    local, _zone = _local(now, zone_name)
    if local.weekday() != MONDAY or local.time() < time.fromisoformat(digest_time):
        return None
    return week_before(now, zone_name)


def week_before(now: datetime, zone_name: str) -> Period:
    """The last full week (Monday to Sunday, local) before the one `now` is in."""
    local, zone = _local(now, zone_name)
    this_monday = local.date() - timedelta(days=local.weekday())
    return _period(this_monday - timedelta(days=7), 7, zone)


# ---------------------------------------------------------------------------
# An agent's queue
# ---------------------------------------------------------------------------


class Standing(StrEnum):
    MISSED = "missed"  # not acknowledged, and its deadline has passed
    DUE = "due"  # not acknowledged yet; the deadline is ahead
    IN_HAND = "in_hand"  # acknowledged (or nothing to acknowledge): being worked on


@dataclass(frozen=True)
class QueueTicket:
    id: int
    subject: str
    reporter_name: str
    reporter_email: str
    status: str
    assignee: str
    created_at: datetime
    ack_deadline: datetime | None
    acknowledged_at: datetime | None

    def standing(self, now: datetime) -> Standing:
        if self.acknowledged_at is not None or self.ack_deadline is None:
            return Standing.IN_HAND
        return Standing.MISSED if self.ack_deadline <= now else Standing.DUE


_RANK = {Standing.MISSED: 0, Standing.DUE: 1, Standing.IN_HAND: 2}


def order_queue(tickets: Iterable[QueueTicket], now: datetime) -> list[QueueTicket]:
    """Missed deadlines first (the longest missed first), then the nearest deadline ahead,
    then the acknowledged ones, oldest first; ties by ID."""
    def key(ticket: QueueTicket) -> tuple:
        standing = ticket.standing(now)
        return (_RANK[standing], ticket.created_at if standing is Standing.IN_HAND else ticket.ack_deadline, ticket.id)

    return sorted(tickets, key=key)


def group_queue(tickets: Iterable[QueueTicket], now: datetime) -> list[tuple[Standing, list[QueueTicket]]]:
    """`order_queue`, as (standing, tickets) groups in that order; empty groups left out."""
    groups: dict[Standing, list[QueueTicket]] = {s: [] for s in Standing}
    for ticket in order_queue(tickets, now):
        groups[ticket.standing(now)].append(ticket)
    return [(standing, items) for standing, items in groups.items() if items]


# ---------------------------------------------------------------------------
# A week's figures
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekTicket:
    id: int
    category: str
    area: str
    channel: str
    assignee: str
    created_at: datetime
    ack_deadline: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class Count:
    label: str
    opened: int
    closed: int


@dataclass(frozen=True)
class WeekFigures:
    week: Period
    opened: int
    closed: int
    by_category: tuple[Count, ...]
    by_area: tuple[Count, ...]
    by_channel: tuple[Count, ...]
    deadlines: int  # tickets whose acknowledgement deadline fell in the week
    in_time: int  # … of which acknowledged by it
    median_ack_seconds: float | None  # acknowledged in the week: from recorded to acknowledged
    median_resolve_seconds: float | None  # resolved in the week: from recorded to resolved
    missed: tuple[WeekTicket, ...]  # deadline in the week, not acknowledged by it; earliest first

    @property
    def share_in_time(self) -> float | None:
        return self.in_time / self.deadlines if self.deadlines else None

    @property
    def largest(self) -> int:
        """The largest count in any breakdown: what a bar's full width stands for."""
        return max([1, *(max(c.opened, c.closed) for c in (*self.by_category, *self.by_area, *self.by_channel))])


def _within(value: datetime | None, week: Period) -> bool:
    return value is not None and week.start <= value < week.end


def _counts(tickets: Sequence[WeekTicket], week: Period, field: str, known: Sequence[str]) -> tuple[Count, ...]:
    labels = list(known) + sorted({getattr(t, field) for t in tickets} - set(known))
    return tuple(Count(label,
                       sum(1 for t in tickets if getattr(t, field) == label and _within(t.created_at, week)),
                       sum(1 for t in tickets if getattr(t, field) == label and _within(t.resolved_at, week)))
                 for label in labels)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def week_figures(tickets: Iterable[WeekTicket], week: Period) -> WeekFigures:
    """Opened (recorded in the week) and closed (resolved in it) by category, area and channel;
    of the acknowledgement deadlines that fell in the week, how many were kept; the median time
    to acknowledge (of those acknowledged in the week) and to resolve (of those resolved in it);
    and the tickets whose deadline was missed. Tickets touching the week in none of these ways
    are ignored, so the caller may pass more."""
    tickets = list(tickets)
    due = [t for t in tickets if _within(t.ack_deadline, week)]
    missed = [t for t in due if t.acknowledged_at is None or t.acknowledged_at > t.ack_deadline]  # type: ignore[operator]
    return WeekFigures(
        week=week,
        opened=sum(1 for t in tickets if _within(t.created_at, week)),
        closed=sum(1 for t in tickets if _within(t.resolved_at, week)),
        by_category=_counts(tickets, week, "category", CATEGORIES),
        by_area=_counts(tickets, week, "area", AREAS),
        by_channel=_counts(tickets, week, "channel", CHANNELS),
        deadlines=len(due),
        in_time=len(due) - len(missed),
        median_ack_seconds=_median([(t.acknowledged_at - t.created_at).total_seconds() for t in tickets
                                    if _within(t.acknowledged_at, week)]),  # type: ignore[operator]
        median_resolve_seconds=_median([(t.resolved_at - t.created_at).total_seconds() for t in tickets
                                        if _within(t.resolved_at, week)]),  # type: ignore[operator]
        missed=tuple(sorted(missed, key=lambda t: (t.ack_deadline, t.id))),
    )
