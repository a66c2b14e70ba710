"""The daemon's intake loop: poll, then IDLE until the server says there is news.

A new mail is a ticket, acknowledged and answered, within about a second of
its arrival on a server that offers IDLE; elsewhere the loop polls every
`poll_interval`. IDLE is re-issued well before the 29 minutes after which
RFC 2177 lets a server drop it. An outage, or any other fault (a bug, a
broken storage folder), is retried with capped, jittered exponential
back-off and logged once when it starts and once when it ends, not on every
retry; the loop never ends but by SIGTERM, and the other jobs of the daemon
run on meanwhile.

On PostgreSQL several daemons may serve the same mailbox: a loop polls only
while it holds the mailbox's advisory lock, and otherwise stands by, trying
again every few seconds, so a dead holder is replaced within seconds.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from mailbridge import metrics
from mailbridge.adapters.db import PollerLock
from mailbridge.adapters.imap import ImapConnection
from mailbridge.config import ImapSettings
from mailbridge.errors import MailbridgeError, error_fields
from mailbridge.intake.run import Intake
from mailbridge.logs import get_logger

log = get_logger("mailbridge.intake")

IDLE_RENEW_SECONDS = 25 * 60
IDLE_SLICE_SECONDS = 5.0  # SIGTERM must end the daemon within 10 s
MAX_BACKOFF_SECONDS = 300.0
STANDBY_SECONDS = 2.0  # how often a standby loop asks for the mailbox


def mailbox_identity(box: ImapSettings) -> str:
    """What two daemons must agree on to share a mailbox: the server, the account, the folder."""
    return f"{box.host}:{box.port}/{box.username}/{box.folder}"


def backoff_delay(failures: int, rnd: random.Random = random.Random()) -> float:
    """2, 4, 8 … seconds, at most 5 minutes, each with up to a fifth of jitter."""
    base = min(2.0 ** failures, MAX_BACKOFF_SECONDS)
    return base * (1 + rnd.random() / 5)


class IntakeLoop:
    def __init__(self, intake: Intake, after_poll: Callable[[int], None], on_beat: Callable[[], None] = lambda: None):
        self.intake = intake
        self.after_poll = after_poll  # gets the number of mails taken in
        self.on_beat = on_beat  # a poll (or an IDLE round) completed: the loop is alive
        self.stop_event = threading.Event()
        self.failures = 0
        self.last_error = ""
        self.lock: PollerLock = intake.db.poller_lock(mailbox_identity(intake.box))
        self.standby = False  # another process polls this mailbox now

    def stop(self) -> None:
        self.intake.stopping = True
        self.stop_event.set()

    def run(self) -> None:
        settings = self.intake.box
        while not self.stop_event.is_set():
            try:
                if not self._hold_lock():
                    continue
                imap = ImapConnection(settings).open()
                try:
                    mover = ImapConnection(settings).open()
                    try:
                        self._serve(imap, mover)
                    finally:
                        mover.close()
                finally:
                    imap.close()
            except Exception as exc:  # noqa: BLE001 - this thread must outlive any fault, not only ours
                self._failed(exc)
                self.stop_event.wait(backoff_delay(self.failures))
                self.on_beat()  # retrying an outage is alive, not stuck
        try:
            self.lock.release()
        except Exception as exc:  # noqa: BLE001 - stopping anyway; the lock goes with the connection
            log.warning("intake.lock_release_failed", mailbox=self.intake.mailbox, **error_fields(exc))

    def _hold_lock(self) -> bool:
        """Ours to poll? If not, wait a little (standing by is alive too) and say so once."""
        if self.lock.acquire():
            if self.standby:
                log.info("intake.took_over", mailbox=self.intake.mailbox)
            self.standby = False
            return True
        if not self.standby:
            log.info("intake.standby", mailbox=self.intake.mailbox)
        self.standby = True
        self.stop_event.wait(STANDBY_SECONDS)
        self.on_beat()
        return False

    def _serve(self, imap: ImapConnection, mover: ImapConnection) -> None:
        settings = self.intake.box
        while not self.stop_event.is_set():
            if not self.lock.held():
                log.warning("intake.lock_lost", mailbox=self.intake.mailbox)
                return  # the run loop asks for it again (or stands by)
            fetched = self.intake.poll(imap, mover).fetched
            self._recovered()
            self.on_beat()
            if fetched:
                self.after_poll(fetched)
            if self.stop_event.is_set():
                return
            self._wait(imap, min(settings.poll_interval, IDLE_RENEW_SECONDS))

    def _wait(self, imap: ImapConnection, seconds: float) -> None:
        """Until news, `seconds`, or a stop: IDLE in short slices so SIGTERM is heard quickly."""
        if "IDLE" not in imap.capabilities():
            self.stop_event.wait(seconds)
            return
        waited = 0.0
        while waited < seconds and not self.stop_event.is_set():
            slice_ = min(IDLE_SLICE_SECONDS, seconds - waited)
            if imap.wait_for_news(slice_):
                return
            waited += slice_
            self.on_beat()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        metrics.ERRORS.labels("intake").inc()
        if not isinstance(exc, MailbridgeError):
            metrics.FAULTS.labels("intake").inc()
        fields = error_fields(exc)
        if self.failures == 1:  # one line per incident, however it changes while it lasts
            # A server outage is "unavailable"; anything else is a fault of ours or of the host.
            event = "intake.unavailable" if isinstance(exc, MailbridgeError) else "intake.failed"
            log.error(event, mailbox=self.intake.mailbox, retrying=True, **fields)
        else:
            log.debug("intake.retry", mailbox=self.intake.mailbox, failures=self.failures, **fields)
        self.last_error = fields.get("error") or fields["error_type"]

    def _recovered(self) -> None:
        if self.failures:
            log.info("intake.recovered", after_failures=self.failures)
        self.failures, self.last_error = 0, ""
