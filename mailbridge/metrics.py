"""What ops watch: Prometheus metrics, and the intake heartbeat that `check` and
the alarm read.

The last successful poll is written to a small file in the storage folder
(atomically), so `mailbridge check`, a separate process, can tell how long
intake has been silent; the daemon raises an alarm when that gets too long.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY = CollectorRegistry()
MAILS = Counter("mailbridge_mails", "Mails taken in, by outcome", ["mailbox", "outcome"], registry=REGISTRY)
ACKS = Counter("mailbridge_acknowledgements", "Acknowledgements queued", registry=REGISTRY)
SENT = Counter("mailbridge_outbox_sent", "Mails delivered by the outbox sender", registry=REGISTRY)
FAILED = Counter("mailbridge_outbox_failed", "Outbox mails given up", registry=REGISTRY)
ERRORS = Counter("mailbridge_errors", "Job failures (the intake loop's too)", ["job"], registry=REGISTRY)
FAULTS = Counter("mailbridge_faults", "Unexpected errors caught so that the daemon goes on: a bug, or a poisoned "
                 "item (an outbox row that cannot be built or sent)", ["where"], registry=REGISTRY)
LAST_POLL = Gauge("mailbridge_last_successful_poll_timestamp_seconds", "When intake last polled successfully",
                  ["mailbox"], registry=REGISTRY)
POLL_AGE = Gauge("mailbridge_last_successful_poll_age_seconds", "Seconds since intake last polled successfully",
                 ["mailbox"], registry=REGISTRY)
OUTBOX_DEPTH = Gauge("mailbridge_outbox_depth", "Mails queued and not yet sent", registry=REGISTRY)
ALARM = Gauge("mailbridge_alarm", "1 while an alarm is raised", ["kind"], registry=REGISTRY)


def serve(listen: str) -> None:
    """Serves /metrics on a loopback address ("127.0.0.1:9464")."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"), registry=REGISTRY)


def _heartbeat_file(storage: str, mailbox: str) -> Path:
    return Path(storage) / "state" / f"last-poll-{mailbox}"


def record_poll(storage: str, mailbox: str, at: datetime) -> None:
    LAST_POLL.labels(mailbox).set(at.timestamp())
    path = _heartbeat_file(storage, mailbox)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(at.isoformat())
    os.replace(temp, path)


def last_poll(storage: str, mailbox: str) -> datetime | None:
    try:
        return datetime.fromisoformat(_heartbeat_file(storage, mailbox).read_text().strip())
    except (OSError, ValueError):
        return None


def poll_age(storage: str, mailbox: str, now: datetime | None = None) -> float | None:
    last = last_poll(storage, mailbox)
    if last is None:
        return None
    age = ((now or datetime.now(timezone.utc)) - last).total_seconds()
    POLL_AGE.labels(mailbox).set(age)
    return age
