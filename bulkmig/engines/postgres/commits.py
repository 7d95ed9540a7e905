"""Capture's commit steps, and the thread that makes them durable while the next batch is read.

A :class:`Commit` is a snapshot of what one step makes durable (a batch, then maybe ``progress.json``) and
of the position the slot may be told afterwards; :class:`Writer` writes steps in order on a thread of its
own, so that S3 round trips overlap reading and decoding.  What a step's writing consists of, and the
telling of the slot, are the session's (:mod:`bulkmig.engines.postgres.session`).
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bulkmig.cdc.batch import Batch
from bulkmig.engines.postgres.pgoutput import Relation


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while changes stream in, when capture owns the process.

    Capture keeps a batch's worth of change objects alive (tens of thousands of rows), and every
    automatic collection walks all of them and the rest of the heap (boto3's models alone are ~80k
    objects): that was a third of the per-change cost.  Change objects hold no cycles, so reference
    counting frees them when a batch is done, and :func:`collect_now` runs after each batch and every
    ten seconds, so cyclic garbage stays bounded.  Capture on a thread of a process doing other work
    (``migrate`` runs it in the background of the load) leaves the collector alone: that work's
    garbage is not capture's to keep."""
    if threading.current_thread() is not threading.main_thread() or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


FULL_COLLECT_SECONDS = 60.0
_last_full = [time.monotonic()]


def collect_now() -> None:
    """While :func:`collector_paused` holds: collect the young generations, and everything once a minute."""
    if gc.isenabled():
        return
    if time.monotonic() - _last_full[0] >= FULL_COLLECT_SECONDS:
        gc.collect()
        _last_full[0] = time.monotonic()
    else:
        gc.collect(1)


@dataclass
class Commit:
    """One commit step: what becomes durable, in this order, before the slot may be told ``captured``
    (a snapshot of the session's state at the step: the writer works behind the reader)."""

    batch: Batch | None
    progress: bool  # progress.json must be rewritten: captured_through moved, definitions changed, or stale
    captured: int
    last_seq: int | None
    durable: int
    known: dict[int, Relation]
    urgent: bool = False  # record progress.json (and so let the slot be told) now, not at the next interval


class Writer:
    """Makes commit steps durable on a thread of its own, in order and one at a time, so that the next
    batch is read and decoded while this one is uploaded (S3 round trips were half of capture's time).

    Every batch is written at once; ``progress.json`` (what the slot may be told) is rewritten at most
    every ``interval`` seconds, or at once for an urgent step.  That is safe because the slot is never
    told more than ``progress.json`` records: after a crash the slot sends again everything after it, the
    transactions already in batches are skipped, and their table definitions learnt again.

    The reading thread confirms the slot, and only up to what this thread has recorded (:attr:`done`).
    At most one step waits behind the one being written, so memory holds three batches at most.  A
    failure here is raised on the reading thread at its next :meth:`check`, and nothing later is written."""

    def __init__(
        self, write: Callable[[Commit], None], record: Callable[[Commit], None], done: int, interval: float
    ) -> None:
        self._write = write
        self._record = record
        self.interval = interval
        self._queue: queue.Queue[Commit | None] = queue.Queue(maxsize=1)
        self._stopping = False
        self.done = done  # captured_through as progress.json last recorded it
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="capture writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        unrecorded: Commit | None = None  # the newest step whose progress.json is not written yet
        last = time.monotonic()
        while True:
            wait = None if unrecorded is None else max(0.0, last + self.interval - time.monotonic())
            try:
                step = self._queue.get(timeout=wait)
            except queue.Empty:
                step, got = None, False
            else:
                got = True
            try:
                if got and step is None:
                    return
                if self.error is not None or self._stopping:
                    continue
                if step is not None:
                    self._write(step)
                    if step.progress:
                        unrecorded = step
                    elif unrecorded is None:
                        self.done = step.captured
                urgent = step is not None and step.urgent
                if unrecorded is not None and (urgent or time.monotonic() - last >= self.interval):
                    self._record(unrecorded)
                    self.done, unrecorded, last = unrecorded.captured, None, time.monotonic()
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                self.error = exc
            finally:
                if got:
                    self._queue.task_done()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, step: Commit, waiting: Callable[[], None] = lambda: None) -> None:
        """Hand ``step`` over, waiting while the one before it is still queued; ``waiting`` runs meanwhile
        (the reader keeps the walsender answered while it cannot read)."""
        while True:
            self.check()
            try:
                self._queue.put(step, timeout=0.1)
                return
            except queue.Full:
                waiting()

    def drain(self, last: Commit, waiting: Callable[[], None] = lambda: None) -> None:
        """Hand over ``last`` (urgent: everything before it gets recorded) and wait until it is done."""
        last.urgent = True
        self.submit(last, waiting)
        while self._queue.unfinished_tasks:
            self.check()
            with self._queue.all_tasks_done:
                self._queue.all_tasks_done.wait(0.1)
            waiting()
        self.check()

    def close(self) -> None:
        """Stop after the step being written (steps still waiting are dropped: the next session reads
        them from the slot again), and wait for it: a step still writing could meet the next session's."""
        self._stopping = True
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
