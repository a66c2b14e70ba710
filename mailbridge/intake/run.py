"""Intake, top to bottom: fetch -> prepare (parse, screen, classify) -> store -> move.

Exactly-once rests on one order: a batch is committed (intake log keyed by
UIDVALIDITY + UID, raw message, ticket rows) before its server copies move.
A crash before the commit re-fetches the UIDs; a crash after it finds them
in the log and only finishes the move.

The fetch runs a few batches ahead of the store and parse workers read each
mail within its time and size budget (`pipeline.py`, which also keeps what
this process holds of fetched mail bounded); a mail over `max_message_bytes`
is not fetched at all. `quarantine retry` reads a quarantined mail's kept copy
with the same workers and stores it with the same store as a first read.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import groupby

from sqlmodel import col, func, select, update

from mailbridge import metrics
from mailbridge.adapters.db import Database
from mailbridge.adapters.files import AttachmentStore
from mailbridge.adapters.imap import ImapConnection
from mailbridge.config import MailboxSettings, Settings
from mailbridge.errors import StorageError, UsageError
from mailbridge.intake import forkserver
from mailbridge.intake.fetch import fetch_new
from mailbridge.intake.pipeline import ParseWorkers, ReadAhead
from mailbridge.intake.prepare import Prepared, PrepareOptions, Unreadable
from mailbridge.intake.store import (
    PROCESSED,
    QUARANTINE,
    Outcome,
    Quarantined,
    StoreContext,
    kept_copy,
    quarantined,
    record_fetch_failure,
    store_batch,
)
from mailbridge.logs import get_logger
from mailbridge.mail import OutcomeKind, RawMail
from mailbridge.models import IntakeLog
from mailbridge.outbox.render import Renderer

log = get_logger("mailbridge.intake")

MAX_FETCH_ATTEMPTS = 5
# Staged files older than this are a killed poller's leftovers: no mail is in
# hand that long (parse_timeout is at most 10 minutes).
STAGED_FILES_LIVE = 3600


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

    def poll(self, imap: ImapConnection, mover: ImapConnection | None = None) -> PollReport:
        """One pass over new mail. `mover` is a second connection, so moves don't wait on fetches."""
        s, mover, report = self.box, mover or imap, PollReport()
        statements, started, cpu = self.db.statements, time.perf_counter(), time.process_time()
        self._sweep_staged_files()
        state = imap.select(s.folder)
        if state.exists:  # mail waits: the parse workers get ready while the poll looks for what is new
            forkserver.start()  # (a no-op if the command started it already)
        if mover is not imap:
            mover.select(s.folder)
        self._finish_pending_moves(mover, state.uidvalidity, report)

        uids = self._new_uids(imap, state.uidvalidity)
        if not uids:
            log.debug("intake.idle", folder=s.folder)
            metrics.record_poll(self.settings.storage.path, self.mailbox, self.clock())
            return report
        # When the server received each mail matters only to a desk going live on a mailbox with history.
        received = self.settings.tickets.acknowledge_since is not None
        new_mail = fetch_new(imap, s.folder, state.uidvalidity, uids, s.batch_size, s.max_message_bytes, received)
        moves = _Moves(self, mover, state.uidvalidity, report, beside=mover is not imap)
        try:
            with ReadAhead(new_mail, PrepareOptions.from_settings(self.settings, s), self.files,
                           seconds=s.parse_timeout, max_bytes=s.max_message_bytes, fetch_beside=mover is not imap,
                           on_read=self.on_batch) as read:
                for batch in read:
                    outcomes = self._store(batch.mails, batch.results, report)
                    if batch.missing:
                        moves.finish()  # the mover's connection is free for the quarantine's move
                        self._fetch_failures(mover, state.uidvalidity, batch.missing)
                    moves.start([(o.uid, o.target) for o in outcomes if o.target])
                    self.on_batch()
                    if self.stopping:
                        break  # what was fetched but not stored stays on the server for the next poll
            moves.finish()
        finally:
            moves.close()
        report.fetched, report.waited_fetch, report.waited_prepare = read.fetched, read.waited_fetch, read.waited_prepare

        log.info("intake.polled", folder=s.folder, fetched=report.fetched, moved=report.moved, **report.outcomes,
                 **report.timings(), statements=self.db.statements - statements,
                 elapsed_s=round(time.perf_counter() - started, 3), cpu_s=round(time.process_time() - cpu, 3))
        for outcome, count in report.outcomes.items():
            metrics.MAILS.labels(self.mailbox, outcome).inc(count)
        metrics.record_poll(self.settings.storage.path, self.mailbox, self.clock())
        return report

    def retry_quarantined(self, entry_id: int | None = None) -> PollReport:
        """`quarantine retry`: every waiting entry (or the one asked for), its kept copy read by
        the parse workers under its mailbox's budget and stored as on a first read (P6)."""
        with self.db.session() as session:
            entries = quarantined(session, entry_id)
        if entry_id is not None and not entries:
            raise UsageError(f"no such quarantine entry: {entry_id}")
        report = PollReport()
        boxes = {box.name: box for box in self.settings.intake_mailboxes}
        for name, group in groupby(sorted(entries, key=lambda e: (e.mailbox, e.id)), key=lambda e: e.mailbox):
            box = boxes.get(name, self.box)
            options = PrepareOptions.from_settings(self.settings, box)
            with ParseWorkers(options, self.files, 1, box.parse_timeout, box.max_message_bytes) as workers:
                for entry in group:
                    self._retry(entry, workers, report)
        return report

    # --- steps ---------------------------------------------------------------

    def _context(self) -> StoreContext:
        return StoreContext(self.settings, self.files, self.mailbox, self.clock(), self.renderer)

    def _sweep_staged_files(self) -> None:
        self.files.ensure()
        if swept := self.files.sweep_staging(STAGED_FILES_LIVE):
            log.info("intake.staged_files_swept", count=swept)

    def _new_uids(self, imap: ImapConnection, uidvalidity: int) -> list[int]:
        """What the server holds above our high-water mark, and what failed to fetch before."""
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
        uids = sorted(set(retry) | set(imap.uids_after(int(last or 0))))
        if uids:
            log.info("mail.fetching", folder=s.folder, count=len(uids), after_uid=int(last or 0))
        return uids

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

    def _store(self, raws: list[RawMail], results: list[Prepared | Unreadable], report: PollReport,
               again: Quarantined | None = None) -> list[Outcome]:
        """One transaction for the batch; if one mail breaks it, each alone, the breaker quarantined.
        `again`: the batch is this quarantine entry's mail, read again."""
        started = time.perf_counter()
        outcomes = self._store_batch(raws, results, again)
        report.storing += time.perf_counter() - started
        for outcome in outcomes:
            report.count(outcome)
            if outcome.kind == OutcomeKind.QUARANTINED:
                log.warning("mail.quarantined", uid=outcome.uid, ticket=outcome.ticket_id, reason=outcome.reason)
        return outcomes

    def _store_batch(self, raws: list[RawMail], results: list[Prepared | Unreadable],
                     again: Quarantined | None) -> list[Outcome]:
        batch = list(zip(raws, results))
        try:
            with self.db.session() as session:
                return store_batch(session, self._context(), batch, again)
        except StorageError:
            raise  # the database itself is unwell: stop, leave the server copies, retry later
        except Exception:
            log.warning("intake.batch_failed", count=len(raws), action="storing one by one")
        outcomes = []
        for raw, result in batch:
            try:
                with self.db.session() as session:
                    outcomes.extend(store_batch(session, self._context(), [(raw, result)], again))
            except StorageError:
                raise
            except Exception as exc:
                unstored = Unreadable(f"could not be stored: {type(exc).__name__}: {exc}"[:300])
                if isinstance(result, Prepared) and result.staged is not None:  # kept with the quarantined mail
                    raw = replace(raw, raw=zlib.decompress(result.staged.raw_copy_bytes()))
                with self.db.session() as session:
                    outcomes.extend(store_batch(session, self._context(), [(raw, unstored)], again))
        return outcomes

    def _retry(self, entry: Quarantined, workers: ParseWorkers, report: PollReport) -> None:
        with self.db.session() as session:
            raw = kept_copy(session, entry)
        report.fetched += 1
        result = workers.submit(raw.raw).result()
        try:
            self._store([raw], [result], report, again=entry)
        finally:
            if isinstance(result, Prepared) and result.staged is not None:
                self.files.discard(result.staged.paths())  # what the store adopted is gone from there already

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
        self._record_moved(uidvalidity, self._move_on_server(mover, targets), report, time.perf_counter())

    def _move_on_server(self, mover: ImapConnection, targets: list[tuple[int, str]]) -> Iterator[list[int]]:
        """Moves the server copies to their folders, a folder at a time; yields the UIDs moved."""
        folders = {PROCESSED: self.box.processed_folder, QUARANTINE: self.box.quarantine_folder}
        for target in (PROCESSED, QUARANTINE):
            if uids := sorted(uid for uid, t in targets if t == target):
                mover.move(uids, folders[target])
                yield uids

    def _record_moved(self, uidvalidity: int, moved: Iterable[list[int]], report: PollReport, started: float) -> None:
        """The intake log says "moved" of each folder's UIDs as the server has moved them; the
        time since `started` counts as moving."""
        for uids in moved:
            with self.db.session() as session:
                session.exec(
                    update(IntakeLog)
                    .where(IntakeLog.mailbox == self.mailbox, IntakeLog.folder == self.box.folder,
                           IntakeLog.uidvalidity == uidvalidity, col(IntakeLog.uid).in_(uids))
                    .values(state="moved", updated_at=self.clock())
                )
            report.moved += len(uids)
        report.moving += time.perf_counter() - started


class _Moves:
    """A stored batch's server copies move while the next batch is stored, on the mover's
    own connection: the poller waited idle for the server's MOVE (15 % of a poll). One
    move at a time, in order; the intake log says "moved" once the server has, and a
    move that was under way when the poll failed is finished by the next poll."""

    def __init__(self, intake: Intake, mover: ImapConnection, uidvalidity: int, report: PollReport, beside: bool):
        self.intake, self.mover, self.uidvalidity, self.report = intake, mover, uidvalidity, report
        # With one connection for fetch and move, the fetch uses it between batches: move in turn.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mover") if beside else None
        self.under_way: Future | None = None

    def start(self, targets: list[tuple[int, str]]) -> None:
        self.finish()
        if self.pool is None:
            self.intake._move(self.mover, self.uidvalidity, targets, self.report)
        elif targets:
            self.under_way = self.pool.submit(lambda: list(self.intake._move_on_server(self.mover, targets)))

    def finish(self) -> None:
        """Waits for the move under way (its failure is the poll's) and records it."""
        if self.under_way is None:
            return
        started = time.perf_counter()
        moved, self.under_way = self.under_way.result(), None
        self.intake._record_moved(self.uidvalidity, moved, self.report, started)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()  # a move under way ends first: the connection is the caller's to close
