"""The machinery under intake's story: the fetch runs ahead of the store, and parse
workers read each mail under a time and size budget.

`ReadAhead` hands the poll its fetched batches, read, oldest first. It fetches
a few batches ahead of the store, so the workers never wait on it, and the
next one only when it fits beside the fetched mails no worker has read yet
(`PIPELINE_BYTES`): what this process holds of a mail is its fetched bytes,
from the fetch until a worker has read it. Parsing runs beside the fetch, so
both cores work.

`ParseWorkers` reads every mail in a worker process. A mail over
`imap.max_message_bytes` is not read at all; one that takes longer than
`imap.parse_timeout` gets that as its quarantine reason, and the worker that
hung on it is killed and replaced; a worker that dies (a parser crash, the
kernel's OOM killer) costs only the mail in hand. So no mail can hold a poll,
whatever a parser does with it, and the other workers go on meanwhile. A worker
is handed a few mails ahead of its answers (`AHEAD_MAILS`), so it goes on reading
while this process, busy storing, takes its answers late.

A worker writes what it read (each attachment, the compressed raw copy of a
mail over `CARRIED_RAW_COPY`) to the attachment store's staging folder and
sends back only the rest: the poller never holds a big mail's files, and the
store takes them from there. Files
staged for a mail that is then not stored (the poll stops, or fails) are
deleted when `ReadAhead` ends; the server copies stay for the next poll.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection

from mailbridge import metrics
from mailbridge.adapters.files import AttachmentStore
from mailbridge.errors import StorageError
from mailbridge.intake import forkserver
from mailbridge.intake.fetch import NewMail
from mailbridge.intake.prepare import Prepared, PrepareOptions, Staged, Unreadable, prepare_mail, raw_copy
from mailbridge.logs import get_logger, quiet_libraries
from mailbridge.mail import RawMail

log = get_logger("mailbridge.intake")

Prepare = Callable[[bytes, PrepareOptions], "Prepared | Unreadable"]
# A worker that has not said it is ready by then will not: something is broken.
START_TIMEOUT = 120
# Batches fetched and handed to the workers ahead of the store, at most.
PIPELINE_BATCHES = 3
# Fetched bytes no worker has read yet, at most (a bigger mail is fetched alone).
PIPELINE_BYTES = 64 * 1024 * 1024
# Worker processes for one poll, at most (and never more than the cores, or the mails).
MAX_WORKERS = 4
# Mails handed to a worker before its answers, at most, and their bytes (a bigger mail goes
# alone). The store holds the GIL: an answer taken a switch interval (5 ms) late must not
# leave the worker idle. With one mail at a time, a busy store cut the workers to a quarter.
AHEAD_MAILS = 16
AHEAD_BYTES = 1024 * 1024
# A mail up to this size has its raw copy sent back in the worker's answer, not staged
# in a file (see Staged): what the poller holds of pending batches stays bounded.
CARRIED_RAW_COPY = 64 * 1024


@dataclass(frozen=True)
class ReadBatch:
    """One fetched batch, read: each mail and what its worker made of it, in the server's order."""

    asked: list[int]  # the UIDs asked for
    mails: list[RawMail]  # those the server gave whole, then those too large to fetch (empty)
    results: list[Prepared | Unreadable]

    @property
    def missing(self) -> list[int]:
        """Asked for but not given whole: recorded for a retry, the server copy left where it is."""
        given = {mail.uid for mail in self.mails}
        return [uid for uid in self.asked if uid not in given]


class ReadAhead:
    """`with ReadAhead(...) as read: for batch in read:` the new mail, batch by batch, oldest
    first, each read by the parse workers (see above); a batch is emptied when the next one is
    asked for. Leaving the block early leaves what was fetched but not yet stored on the
    server, and deletes its staged files."""

    def __init__(self, batches: NewMail, options: PrepareOptions, files: AttachmentStore, *, seconds: float,
                 max_bytes: int, fetch_beside: bool, on_read: Callable[[], None]):
        self.batches, self.files, self.on_read = batches, files, on_read
        workers = min(os.cpu_count() or 1, MAX_WORKERS, batches.mails)
        self.workers = ParseWorkers(options, files, workers, seconds, max_bytes)
        # One connection cannot fetch and move at once: then the fetch runs in turn, in this thread.
        self.fetcher: Executor = ThreadPoolExecutor(max_workers=1) if fetch_beside else _Inline()
        # Fetched and handed to the workers, oldest first: (asked, mails, futures of their results).
        self.pending: deque[tuple[list[int], list[RawMail], list[Future]]] = deque()
        self.current: list[Future] = []  # the batch in the store's hands
        # What the poll reports.
        self.fetched = 0
        self.waited_fetch = 0.0
        self.waited_prepare = 0.0

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.fetcher.shutdown()  # a fetch under way ends first
            self.workers.close()
        finally:
            # Read but not stored (the poll stopped, or failed): their staged files go.
            for futures in (self.current, *(futures for _, _, futures in self.pending)):
                self._discard_staged(futures)

    def __iter__(self) -> Iterator[ReadBatch]:
        ahead: Future | None = None
        while True:
            ahead = ahead or self._fetch_if_room()
            while ahead is not None and len(self.pending) < PIPELINE_BATCHES:
                started = time.perf_counter()
                fetched = ahead.result()
                self.waited_fetch += time.perf_counter() - started
                ahead = None
                if fetched is None:
                    break
                self._hand_to_workers(*fetched)
                ahead = self._fetch_if_room()  # fetched while the workers read and the store writes
            if not self.pending:
                return
            asked, mails, self.current = self.pending.popleft()
            started = time.perf_counter()
            results = [future.result() for future in self.current]
            self.waited_prepare += time.perf_counter() - started
            yield ReadBatch(asked, mails, results)
            self._discard_staged(self.current)  # what the store adopted is gone from there already
            # Spent: not held while the next batch is fetched and read (memory: an unread mail's bytes).
            mails.clear()
            results.clear()
            self.current = []

    def _fetch_if_room(self) -> Future | None:
        """The next batch's fetch, started if it fits beside the fetched mails no worker has read yet."""
        upcoming = self.batches.upcoming_bytes
        if upcoming is None:
            return None
        unread = sum(len(mail.raw) for _, mails, _ in self.pending for mail in mails)
        if unread and unread + upcoming > PIPELINE_BYTES:
            return None
        return self.fetcher.submit(next, self.batches, None)

    def _hand_to_workers(self, asked: list[int], mails: list[RawMail], too_large: dict[int, int]) -> None:
        mails += [RawMail(self.batches.folder, self.batches.uidvalidity, uid, b"") for uid in too_large]
        self.fetched += len(mails)
        self.pending.append((asked, mails, [self._read(mails, i, too_large.get(mail.uid))
                                            for i, mail in enumerate(mails)]))

    def _read(self, mails: list[RawMail], index: int, size: int | None) -> Future:
        def read(done: Future) -> None:
            if not done.cancelled() and done.exception() is None and isinstance(done.result(), Prepared):
                # Its raw copy is staged: the fetched bytes can go (restored from the copy if
                # it must be quarantined). In place: the batch in `pending` holds this list.
                mails[index] = replace(mails[index], raw=b"")
            self.on_read()  # each mail read is a sign of life

        future = self.workers.submit(mails[index].raw, size)
        future.add_done_callback(read)
        return future

    def _discard_staged(self, futures: list[Future]) -> None:
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if isinstance(result, Prepared) and result.staged is not None:
                    self.files.discard(result.staged.paths())


class ParseWorkers:
    """Up to `workers` processes; `submit` hands one mail to the next free one.
    What they read is staged in `files` (see above)."""

    def __init__(self, options: PrepareOptions, files: AttachmentStore, workers: int, seconds: float,
                 max_bytes: int, prepare: Prepare = prepare_mail):
        self.max_bytes = max_bytes
        self._jobs: queue.SimpleQueue[tuple[bytes, Future] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._feed, args=(_Worker(options, files, seconds, prepare),),
                                          name=f"parse-worker-{i}", daemon=True) for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, raw: bytes, size: int | None = None) -> Future:
        """A future of the Prepared mail (its files staged) or of why it is Unreadable;
        a StorageError when its files cannot be staged. `size`: what the server announced
        for a mail it was not asked to give (over the size budget)."""
        future: Future = Future()
        size = size or len(raw)
        if size > self.max_bytes:
            # Not read (not even fetched, when the server told its size): the server copy waits in the quarantine folder.
            future.set_result(Unreadable(f"larger than max_message_bytes ({self.max_bytes} bytes): {size} bytes, "
                                         "not read"))
            return future
        self._jobs.put((raw, future))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> "ParseWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _feed(self, worker: "_Worker") -> None:
        """Hands mails to one worker, up to AHEAD_MAILS before its answers, and takes the answers in order."""
        waiting: deque[tuple[bytes, Future]] = deque()  # taken (or back from a lost worker), not handed over yet
        sent: deque[tuple[bytes, Future]] = deque()  # handed over, in order, not answered yet
        closing = False
        try:
            while True:
                if not closing and not waiting and len(sent) < AHEAD_MAILS:
                    try:
                        job = self._jobs.get(block=not sent)
                    except queue.Empty:
                        job = ()
                    if job is None:
                        closing = True
                    elif job and job[1].set_running_or_notify_cancel():
                        waiting.append(job)
                if waiting and (not sent or (len(sent) < AHEAD_MAILS
                                             and sum(len(r) for r, _ in sent) + len(waiting[0][0]) <= AHEAD_BYTES)):
                    raw, future = waiting.popleft()
                    try:
                        handed = worker.send(raw, fresh=not sent)
                    except BaseException as exc:  # the waiting poll raises it: a worker that cannot start
                        future.set_exception(exc)
                        continue
                    if handed:
                        sent.append((raw, future))
                        continue
                    waiting.appendleft((raw, future))  # to its successor, once the answers in the pipe are read
                if not sent:
                    if closing and not waiting:
                        return
                    continue
                raw, future = sent.popleft()
                answer = worker.receive()
                if isinstance(answer, _Lost):  # killed or dead on this mail: the ones after it go to its successor
                    waiting.extendleft(reversed(sent))
                    sent.clear()
                    answer = answer.why
                if isinstance(answer, StorageError):  # the waiting poll raises it: a full disk
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
                raw = future = None  # type: ignore[assignment]  # not held while waiting for the next: memory
        finally:
            worker.stop()


class _Worker:
    """One worker process, started when first needed and again after it was killed."""

    def __init__(self, options: PrepareOptions, files: AttachmentStore, seconds: float, prepare: Prepare):
        self.options, self.files, self.seconds, self.prepare_one = options, files, seconds, prepare
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None
        self.readable: select.poll | None = None  # the connection's end, waited on for an answer

    def send(self, raw: bytes, fresh: bool) -> bool:
        """Hands a mail over; False if the worker is gone since its last answer with mails in
        hand (`fresh` False): the next `receive` finds out which one it died on. With none in
        hand it is replaced at once (killed from outside: not this mail's fault)."""
        try:
            self._ready().send_bytes(raw)
            return True
        except OSError:
            if not fresh:
                return False
        self.stop()
        self._ready().send_bytes(raw)
        return True

    def receive(self) -> "Prepared | Unreadable | StorageError | _Lost":
        """The answer for the oldest mail handed over. Its time budget runs from now: the
        worker began it when it sent the answer before, at most a GIL switch earlier."""
        connection = self.connection
        # One poll object a worker: Connection.poll builds a selector on each call (15 µs a mail).
        if not self.readable.poll(self.seconds * 1000):  # also wakes when the worker dies
            self._replace("timeout")
            return _Lost(Unreadable(f"parse took longer than {self.seconds:g} s"))
        try:
            return connection.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            self._replace("died", exit_code=code)
            return _Lost(Unreadable(f"the parser process died on this mail (exit code {code})"))

    def _ready(self) -> Connection:
        if self.connection is not None:
            return self.connection
        context = forkserver.context()
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, self.options, self.files, self.prepare_one,
                                                       os.getpid()),
                                  name="mailbridge-parse", daemon=True)
        process.start()
        theirs.close()
        try:
            ready = ours.poll(START_TIMEOUT) and ours.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            process.kill()
            raise RuntimeError(f"a parse worker did not start within {START_TIMEOUT} s (exit code {process.exitcode})")
        self.process, self.connection = process, ours
        self.readable = select.poll()
        self.readable.register(ours.fileno(), select.POLLIN)
        return ours

    def _replace(self, why: str, **detail: object) -> None:
        log.warning("intake.parse_worker_replaced", reason=why, seconds=self.seconds, **detail)
        metrics.FAULTS.labels(f"parse_{why}").inc()  # a poisoned mail, as the faults metric counts them
        self.stop()

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close()
        if self.process is not None:
            self.process.kill()
            self.process.join(5)
            self.process.close()
        self.process = self.connection = None


@dataclass(frozen=True)
class _Lost:
    """A worker killed (over the time budget) or dead on the mail in hand; why, for that mail."""

    why: Unreadable


def _stage(result: Prepared, raw: bytes, files: AttachmentStore) -> Prepared:
    """The result with its raw copy and attachments written to the staging folder, not carried."""
    mail, staged = result.mail, []
    try:
        staged.append(b"".join(raw_copy(raw)) if len(raw) <= CARRIED_RAW_COPY else files.stage(raw_copy(raw)))
        staged += ["" if part.rejected else files.stage([part.data]) for part in mail.attachments]
    except BaseException:
        files.discard(staged)
        raise
    attachments = tuple(replace(part, data=b"") for part in mail.attachments)
    return replace(result, mail=replace(mail, attachments=attachments), staged=Staged(staged[0], tuple(staged[1:])))


def _serve(connection: Connection, options: PrepareOptions, files: AttachmentStore, prepare: Prepare,
           parent: int) -> None:
    """The worker: mail in, Prepared (or Unreadable, or the StorageError that kept
    it from staging its files) out, until the pipe closes."""
    _follow_parent(parent)
    quiet_libraries()
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def take() -> None:
        # The mails handed over are read at once, whatever this worker is busy with: the
        # poller never waits to hand one over while this one waits to answer (no deadlock).
        try:
            while True:
                inbox.put(connection.recv_bytes())
        except (EOFError, OSError):
            inbox.put(None)

    threading.Thread(target=take, daemon=True, name="mail-in").start()
    connection.send("ready")
    while (raw := inbox.get()) is not None:
        result = prepare(raw, options)
        if isinstance(result, Prepared):
            try:
                result = _stage(result, raw, files)
            except StorageError as exc:
                result = exc
        del raw  # before the result goes out: one copy less at the peak
        connection.send(result)
        del result


def _follow_parent(pid: int) -> None:
    """A worker ends when the process that started it is gone (SIGKILLed): the
    forkserver and the workers hold each other's pipes and would otherwise wait forever."""

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # alive, under another user: not ours to judge
                pass

    threading.Thread(target=watch, daemon=True, name="follow-parent").start()


class _Inline(Executor):
    """Fetches in this thread, when one connection must both fetch and move."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future
