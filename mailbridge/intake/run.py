"""Intake, top to bottom: fetch -> parse -> screen -> classify -> thread -> store,
and only then does the server copy move.

Exactly-once rests on one order: a batch is committed (intake log keyed by
UIDVALIDITY + UID, raw message, ticket rows) before its server copies move.
A crash before the commit re-fetches the UIDs; a crash after it finds them
in the log and only finishes the move. Parsing runs in worker processes
(`pipeline.py`) while the next batch is fetched, each mail within its time
budget; a mail over `max_message_bytes` is not fetched at all.

Memory: what this process holds of a mail is its fetched bytes, from the fetch
until a worker has read it (the worker stages its files and raw copy, see
`pipeline.py`); the next batch is fetched only when it fits beside those.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from sqlmodel import col, func, select, update

from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.adapters.imap import ImapConnection
from mailbridge.config import MailboxSettings, Settings
from mailbridge.errors import StorageError
from mailbridge.intake.fetch import NewMail, fetch_new
from mailbridge.intake.pipeline import ParseWorkers
from mailbridge.intake.prepare import Prepared, PrepareOptions, Unreadable
from mailbridge.intake.store import (
    PROCESSED,
    QUARANTINE,
    Outcome,
    StoreContext,
    record_fetch_failure,
    store_batch,
)
from mailbridge import metrics
from mailbridge.logs import get_logger
from mailbridge.outbox.render import Renderer
from mailbridge.mail import OutcomeKind, RawMail
from mailbridge.models import IntakeLog

log = get_logger("mailbridge.intake")

MAILBOX = "default"
MAX_FETCH_ATTEMPTS = 5


@dataclass
class PollReport:
    fetched: int = 0
    outcomes: dict[OutcomeKind, int] = field(default_factory=dict)
    moved: int = 0
    retried_moves: int = 0
    # Where the poll's time went (seconds), for the log and the benchmark.
    waited_fetch: float = 0.0
    waited_prepare: float = 0.0
    storing: float = 0.0
    moving: float = 0.0

    def timings(self) -> dict[str, float]:
        return {"waited_fetch_s": round(self.waited_fetch, 3), "waited_prepare_s": round(self.waited_prepare, 3),
                "storing_s": round(self.storing, 3), "moving_s": round(self.moving, 3)}

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome.kind] = self.outcomes.get(outcome.kind, 0) + 1

    @property
    def stored(self) -> int:
        return sum(n for kind, n in self.outcomes.items() if kind != OutcomeKind.ALREADY)


PIPELINE_BATCHES = 3
# Fetched bytes no worker has read yet, at most (a bigger mail is fetched alone).
PIPELINE_BYTES = 64 * 1024 * 1024
# Staged files older than this are a killed poller's leftovers: no mail is in
# hand that long (parse_timeout is at most 10 minutes).
STAGED_FILES_LIVE = 3600


class Intake:
    """One mailbox's intake: holds the connections for the length of a poll."""

    def __init__(self, settings: Settings, db: Database, box: MailboxSettings | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.settings = settings
        self.db = db
        self.box = box or settings.intake_mailboxes[0]
        self.mailbox = self.box.name
        self.clock = clock
        self.files = AttachmentStore(settings.storage.path)
        self.renderer = Renderer(settings.outbox.templates_path, settings.policy.timezone)
        self.stopping = False  # set by SIGTERM: finish the batch in hand, then stop
        self.on_batch: Callable[[], None] = lambda: None  # the daemon's watchdog heartbeat

    def _context(self) -> StoreContext:
        return StoreContext(self.settings, self.files, self.mailbox, self.clock(), self.renderer)

    def poll(self, imap: ImapConnection, mover: ImapConnection | None = None) -> PollReport:
        """One pass over new mail. `mover` is a second connection, so moves don't wait on fetches."""
        s = self.box
        mover = mover or imap
        report = PollReport()
        self.files.ensure()
        if swept := self.files.sweep_staging(STAGED_FILES_LIVE):
            log.info("intake.staged_files_swept", count=swept)
        state = imap.select(s.folder)
        if mover is not imap:
            mover.select(s.folder)
        self._finish_pending_moves(mover, state.uidvalidity, report)

        last_uid, retry_uids = self._high_water_mark(state.uidvalidity)
        new_uids = imap.uids_after(last_uid)
        uids = sorted(set(retry_uids) | set(new_uids))
        if not uids:
            log.debug("intake.idle", folder=s.folder)
            metrics.record_poll(self.settings.storage.path, self.mailbox, self.clock())
            return report
        log.info("mail.fetching", folder=s.folder, count=len(uids), after_uid=last_uid)

        options = PrepareOptions.from_settings(self.settings, self.box)
        # One connection cannot fetch and move at once: then fetch in turn.
        fetcher: Executor = ThreadPoolExecutor(max_workers=1) if mover is not imap else _Inline()
        workers = min(os.cpu_count() or 1, 4, len(uids))
        batches = fetch_new(imap, s.folder, state.uidvalidity, uids, s.batch_size, s.max_message_bytes)
        # Batches fetched and handed to the workers, oldest first: a few ahead
        # of the store, so the workers never wait on it (bounded in bytes).
        pending: deque[tuple[list[int], list[RawMail], list[Future]]] = deque()
        try:
            with ParseWorkers(options, self.files, workers, s.parse_timeout) as pool, fetcher:
                ahead: Future | None = None
                while True:
                    ahead = ahead or self._fetch_if_room(fetcher, batches, pending)
                    while ahead is not None and len(pending) < PIPELINE_BATCHES:
                        started = time.perf_counter()
                        fetched = ahead.result()
                        report.waited_fetch += time.perf_counter() - started
                        ahead = None
                        if fetched is None:
                            break
                        asked, raws, too_large = fetched
                        raws += [RawMail(s.folder, state.uidvalidity, uid, b"") for uid in too_large]
                        report.fetched += len(raws)
                        pending.append((asked, raws, [self._prepare(pool, raws, i, too_large.get(raw.uid))
                                                      for i, raw in enumerate(raws)]))
                        ahead = self._fetch_if_room(fetcher, batches, pending)
                    if not pending:
                        break
                    self._store_and_move(mover, state.uidvalidity, *pending.popleft(), report)
                    self.on_batch()
                    if self.stopping:
                        break  # what was fetched but not stored stays on the server for the next poll
        finally:
            # Read but not stored (stopping, or a fault): their staged files go; the server copies stay.
            for _, _, futures in pending:
                self._discard_staged(futures)
        log.info("intake.polled", folder=s.folder, fetched=report.fetched, moved=report.moved, **report.outcomes,
                 **report.timings())
        for outcome, count in report.outcomes.items():
            metrics.MAILS.labels(self.mailbox, outcome).inc(count)
        metrics.record_poll(self.settings.storage.path, self.mailbox, self.clock())
        return report

    # --- steps ---------------------------------------------------------------

    @staticmethod
    def _fetch_if_room(fetcher: Executor, batches: NewMail,
                       pending: deque[tuple[list[int], list[RawMail], list[Future]]]) -> Future | None:
        """The next batch's fetch, started if it fits beside the fetched mails no worker has read yet."""
        upcoming = batches.upcoming_bytes
        if upcoming is None:
            return None
        unread = sum(len(raw.raw) for _, raws, _ in pending for raw in raws)
        if unread and unread + upcoming > PIPELINE_BYTES:
            return None
        return fetcher.submit(next, batches, None)

    def _prepare(self, pool: ParseWorkers, raws: list[RawMail], index: int, announced: int | None) -> Future:
        """A future of the prepared mail or of why it cannot be read."""
        mail, limit = raws[index], self.box.max_message_bytes
        if announced or len(mail.raw) > limit:
            # Not read (not even fetched, when the server told its size): the
            # server copy waits in the quarantine folder.
            future: Future = Future()
            future.set_result(Unreadable(f"larger than max_message_bytes ({limit} bytes): "
                                         f"{announced or len(mail.raw)} bytes, not read"))
            return future

        def read(done: Future) -> None:
            if not done.cancelled() and done.exception() is None and isinstance(done.result(), Prepared):
                # Its raw copy is staged: the fetched bytes can go (restored from the copy if
                # it must be quarantined). In place: the poll loop holds this list.
                raws[index] = replace(raws[index], raw=b"")
            self.on_batch()  # each mail read is a sign of life

        future = pool.submit(mail.raw)
        future.add_done_callback(read)
        return future

    def _discard_staged(self, futures: list[Future]) -> None:
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if isinstance(result, Prepared) and result.staged is not None:
                    self.files.discard(result.staged.paths())

    def _high_water_mark(self, uidvalidity: int) -> tuple[int, list[int]]:
        s = self.box
        with self.db.session() as session:
            last = session.exec(
                select(func.max(IntakeLog.uid)).where(
                    IntakeLog.mailbox == self.mailbox, IntakeLog.folder == s.folder, IntakeLog.uidvalidity == uidvalidity
                )
            ).one()
            retry = session.exec(
                select(IntakeLog.uid).where(
                    IntakeLog.mailbox == self.mailbox, IntakeLog.folder == s.folder,
                    IntakeLog.uidvalidity == uidvalidity, IntakeLog.state == "retry",
                )
            ).all()
        return int(last or 0), list(retry)

    def _finish_pending_moves(self, mover: ImapConnection, uidvalidity: int, report: PollReport) -> None:
        """Copies committed but not yet moved (a crash between the two): move them now."""
        s = self.box
        with self.db.session() as session:
            stale = session.exec(
                update(IntakeLog)
                .where(IntakeLog.mailbox == self.mailbox, IntakeLog.folder == s.folder,
                       IntakeLog.uidvalidity != uidvalidity, col(IntakeLog.state).in_(("stored", "quarantined", "retry")))
                .values(state="stale", updated_at=self.clock())
            ).rowcount
            pending = session.exec(
                select(IntakeLog.uid, IntakeLog.target).where(
                    IntakeLog.mailbox == self.mailbox, IntakeLog.folder == s.folder,
                    IntakeLog.uidvalidity == uidvalidity, col(IntakeLog.state).in_(("stored", "quarantined")),
                )
            ).all()
        if stale:
            # The server renumbered the folder: old UIDs mean nothing now; the
            # copies come again under new UIDs and the Message-ID + SHA-256 dedupe knows them.
            log.warning("intake.uidvalidity_changed", folder=s.folder, uidvalidity=uidvalidity, stale=stale)
        if pending:
            report.retried_moves = len(pending)
            self._move(mover, uidvalidity, [(uid, target) for uid, target in pending], report)

    def _store_and_move(self, mover: ImapConnection, uidvalidity: int, asked: list[int], raws: list[RawMail],
                        futures: list[Future], report: PollReport) -> None:
        started = time.perf_counter()
        try:
            results = [future.result() for future in futures]
            report.waited_prepare += time.perf_counter() - started
            started = time.perf_counter()
            outcomes = self._store(raws, results)
            report.storing += time.perf_counter() - started
        finally:
            self._discard_staged(futures)  # what the store adopted is gone from there already
        returned = {r.uid for r in raws}
        missing = [uid for uid in asked if uid not in returned]
        if missing:
            self._fetch_failures(mover, uidvalidity, missing)
        for outcome in outcomes:
            report.count(outcome)
            if outcome.kind == OutcomeKind.QUARANTINED:
                log.warning("mail.quarantined", uid=outcome.uid, ticket=outcome.ticket_id, reason=outcome.reason)
        self._move(mover, uidvalidity, [(o.uid, o.target) for o in outcomes if o.target], report)

    def _store(self, raws: list[RawMail], results: list[Prepared | Unreadable]) -> list[Outcome]:
        """One transaction for the batch; if one mail breaks it, each alone, the breaker quarantined."""
        batch = list(zip(raws, results))
        try:
            with self.db.session() as session:
                return store_batch(session, self._context(), batch)
        except StorageError:
            raise  # the database itself is unwell: stop, leave the server copies, retry later
        except Exception:
            log.warning("intake.batch_failed", count=len(raws), action="storing one by one")
        outcomes = []
        for raw, result in batch:
            try:
                with self.db.session() as session:
                    outcomes.extend(store_batch(session, self._context(), [(raw, result)]))
            except StorageError:
                raise
            except Exception as exc:
                unstored = Unreadable(f"could not be stored: {type(exc).__name__}: {exc}"[:300])
                if isinstance(result, Prepared) and result.staged is not None:  # kept with the quarantined mail
                    raw = replace(raw, raw=zlib.decompress(Path(result.staged.raw_copy).read_bytes()))
                with self.db.session() as session:
                    outcomes.extend(store_batch(session, self._context(), [(raw, unstored)]))
        return outcomes

    def _fetch_failures(self, mover: ImapConnection, uidvalidity: int, uids: list[int]) -> None:
        """The server answered without a body: retried next poll, quarantined after a few tries."""
        s = self.box
        ctx = self._context()
        give_up = []
        with self.db.session() as session:
            for uid in uids:
                attempts = record_fetch_failure(session, ctx, s.folder, uidvalidity, uid, "server returned no body")
                if attempts >= MAX_FETCH_ATTEMPTS:
                    give_up.append(uid)
        log.warning("mail.fetch_incomplete", folder=s.folder, uids=uids[:20], count=len(uids))
        for uid in give_up:
            never = Unreadable(f"server returned no body for UID {uid} after {MAX_FETCH_ATTEMPTS} attempts")
            with self.db.session() as session:
                store_batch(session, ctx, [(RawMail(s.folder, uidvalidity, uid, b""), never)])
            self._move(mover, uidvalidity, [(uid, QUARANTINE)], PollReport())

    def _move(self, mover: ImapConnection, uidvalidity: int, targets: list[tuple[int, str]], report: PollReport) -> None:
        s = self.box
        folders = {PROCESSED: s.processed_folder, QUARANTINE: s.quarantine_folder}
        for target in (PROCESSED, QUARANTINE):
            uids = sorted(uid for uid, t in targets if t == target)
            if not uids:
                continue
            started = time.perf_counter()
            mover.move(uids, folders[target])
            with self.db.session() as session:
                session.exec(
                    update(IntakeLog)
                    .where(IntakeLog.mailbox == self.mailbox, IntakeLog.folder == s.folder,
                           IntakeLog.uidvalidity == uidvalidity, col(IntakeLog.uid).in_(uids))
                    .values(state="moved", updated_at=self.clock())
                )
            report.moved += len(uids)
            report.moving += time.perf_counter() - started


class _Inline(Executor):
    """Fetches in this thread, when one connection must both fetch and move."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future
