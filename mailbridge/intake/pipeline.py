"""Parse workers: every mail is read in a worker process, under a time budget.

A mail that takes longer than its budget (`imap.parse_timeout`) gets that as
its quarantine reason, and the worker that hung on it is killed and replaced;
a worker that dies (a parser crash, the kernel's OOM killer) costs only the
mail in hand. So no mail can hold a poll, whatever a parser does with it, and
the other workers go on meanwhile. Parsing also runs beside the fetch, so both
cores work.

A worker writes what it read (each attachment, the compressed raw copy) to the
attachment store's staging folder and sends back only the rest: the poller
never holds a big mail's files, and the store takes them from there.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from multiprocessing.connection import Connection

from mailbridge import metrics
from mailbridge.adapters.files import AttachmentStore
from mailbridge.errors import StorageError
from mailbridge.intake.prepare import Prepared, PrepareOptions, Staged, Unreadable, prepare_mail, raw_copy
from mailbridge.logs import get_logger

log = get_logger("mailbridge.intake")

Prepare = Callable[[bytes, PrepareOptions], "Prepared | Unreadable"]
# A worker that has not said it is ready by then will not: something is broken.
START_TIMEOUT = 120


class ParseWorkers:
    """Up to `workers` processes; `submit` hands one mail to the next free one.
    What they read is staged in `files` (see above)."""

    def __init__(self, options: PrepareOptions, files: AttachmentStore, workers: int, seconds: float,
                 prepare: Prepare = prepare_mail):
        self._jobs: queue.SimpleQueue[tuple[bytes, Future] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._feed, args=(_Worker(options, files, seconds, prepare),),
                                          name=f"parse-worker-{i}", daemon=True) for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, raw: bytes) -> Future:
        """A future of the Prepared mail (its files staged) or of why it is Unreadable;
        a StorageError when its files cannot be staged."""
        future: Future = Future()
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
        try:
            while (job := self._jobs.get()) is not None:
                raw, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(worker.prepare(raw))
                except BaseException as exc:  # the waiting poll raises it: a worker that cannot start, a full disk
                    future.set_exception(exc)
                job = raw = None  # type: ignore[assignment]  # not held while waiting for the next: memory
        finally:
            worker.stop()


class _Worker:
    """One worker process, started when first needed and again after it was killed."""

    def __init__(self, options: PrepareOptions, files: AttachmentStore, seconds: float, prepare: Prepare):
        self.options, self.files, self.seconds, self.prepare_one = options, files, seconds, prepare
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None

    def prepare(self, raw: bytes) -> Prepared | Unreadable:
        connection = self._ready()
        try:
            connection.send_bytes(raw)
        except OSError:  # it died since its last mail (killed from outside): not this mail's fault
            self.stop()
            connection = self._ready()
            connection.send_bytes(raw)
        if not connection.poll(self.seconds):  # also wakes when the worker dies
            self._replace("timeout")
            return Unreadable(f"parse took longer than {self.seconds:g} s")
        try:
            result = connection.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            self._replace("died", exit_code=code)
            return Unreadable(f"the parser process died on this mail (exit code {code})")
        if isinstance(result, StorageError):
            raise result
        return result

    def _ready(self) -> Connection:
        if self.connection is not None:
            return self.connection
        # forkserver, not fork: the fetch thread may hold locks at fork time.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mailbridge.intake.prepare"])
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


def _stage(result: Prepared, raw: bytes, files: AttachmentStore) -> Prepared:
    """The result with its raw copy and attachments written to the staging folder, not carried."""
    mail, staged = result.mail, []
    try:
        staged.append(files.stage(raw_copy(raw)))
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
    connection.send("ready")
    while True:
        try:
            raw = connection.recv_bytes()
        except EOFError:
            return
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
