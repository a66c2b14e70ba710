"""Alarms ops must not miss: intake silence and OAuth2 tokens (one event and one mail per incident)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from structlog.testing import capture_logs

from mailbridge.adapters.db import Database
from mailbridge.config import settings_from_dict
from mailbridge.jobs import Jobs


def jobs_for(tmp_path, **sections) -> Jobs:
    settings = settings_from_dict({
        "database": {"url": f"sqlite:///{tmp_path}/m.db"}, "storage": {"path": str(tmp_path / "s")},
        "alarm": {"poll_stale_minutes": 1, "ops_address": "ops@crossec.com"}, **sections,
    })
    db = Database(settings.database.url)
    db.migrate()
    return Jobs(settings, db)


def alarm_mails(tmp_path) -> list[str]:
    with sqlite3.connect(tmp_path / "m.db") as db:
        return [r[0] for r in db.execute("select subject from outbox where template = 'ops_alarm'")]


def test_intake_silence_is_one_alarm_per_incident(tmp_path):
    jobs = jobs_for(tmp_path)
    start = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)
    with capture_logs() as logs:
        for minutes in (0.5, 2, 3, 4):
            jobs.watch_intake(start + timedelta(minutes=minutes), start)
    assert [e["event"] for e in logs] == ["intake.stale"]
    assert alarm_mails(tmp_path) == ["[mailbridge] Alarm: intake is silent"]


def test_a_failing_token_refresh_raises_an_alarm_and_its_end_clears_it(tmp_path):
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho 'refresh token revoked' >&2\nexit 3\n")
    script.chmod(0o700)
    jobs = jobs_for(tmp_path, smtp={"auth": "xoauth2", "username": "support@crossec.com",
                                    "token_command": str(script), "starttls": False})
    now = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)
    with capture_logs() as logs:
        jobs.watch_tokens(now)
        jobs.watch_tokens(now + timedelta(minutes=1))  # still failing: no second alarm
        script.write_text("#!/bin/sh\necho fresh-token\n")
        jobs.watch_tokens(now + timedelta(minutes=2))
    assert [e["event"] for e in logs] == ["oauth.refresh_failed", "oauth.refresh_failed_cleared"]
    assert alarm_mails(tmp_path) == ["[mailbridge] Alarm: smtp token refresh fails"]
