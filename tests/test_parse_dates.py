"""A mail's Date as a ticket shows it: parse_mail reads the common form itself (issue 16,
speed) and every other through email.utils; both read every Date alike."""

from __future__ import annotations

from datetime import timezone
from email.utils import parsedate_to_datetime

import pytest

from mailbridge.intake.parse import parse_mail


def as_email_utils_reads(value: str):  # type: ignore[no-untyped-def]
    try:
        found = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return (found if found.tzinfo else found.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@pytest.mark.parametrize("value", [
    "Mon, 02 Nov 2026 10:01:00 +0100",
    "2 Nov 2026 10:01:00 -0530",
    "Tue, 31 Dec 2024 23:59:59 -0000",  # -0000: local time unknown, read as UTC
    "Sun, 01 Jan 1000 00:00:00 +0000",
    "Mon, 02 Nov 2026 10:01:00 +0099",  # minutes past 59: email.utils adds them up
    "Mon, 02 Nov 2026 10:01:00 +2400",  # a day off: no date
    "Fri, 31 Feb 2026 10:01:00 +0100",  # no such day
    "Mon, 02 Nov 2026 24:00:00 +0100",
    "Mon, 02 Nov 2026 10:01:60 +0100",  # a leap second: email.utils has none
    "Mon, 02 Nov 2026 10:01:00 CET",  # the other forms go to email.utils
    "Mon, 2 Nov 26 10:01 GMT",
    "Mon,  02 Nov 2026 10:01:00 +0100 (CET)",
    "mon, 02 nov 2026 10:01:00 +0100",
    "yesterday",
])
def test_the_date_is_read_as_email_utils_reads_it(value: str) -> None:
    raw = f"From: anna@example.hu\nSubject: hi\nDate: {value}\nMessage-ID: <d@example.hu>\n\nhello\n".encode()
    assert parse_mail(raw, 1000).date == as_email_utils_reads(value)


@pytest.mark.parametrize("value", ["Fri, 31 Dec 9999 23:00:00 -0500", "Fri, 31 Dec 9999 22:00:00 -0200",
                                   "Fri, 31 Dec 9999 23:00:00 EST"])
def test_a_date_at_the_calendars_edge_is_no_date_and_the_mail_is_read(value: str) -> None:
    # In UTC these fall outside the years datetime holds: the mail became "unreadable"
    # (quarantined, no ticket in its sender's name) where any other bad Date gives none.
    raw = f"From: anna@example.hu\nSubject: hi\nDate: {value}\nMessage-ID: <d@example.hu>\n\nhello\n".encode()
    mail = parse_mail(raw, 1000)
    assert mail.date is None and mail.sender.email == "anna@example.hu" and mail.text.strip() == "hello"
