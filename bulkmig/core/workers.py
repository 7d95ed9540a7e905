"""A small pool of worker threads, each with its own connection, draining one list of parts.

Extraction and loading share this shape: every worker opens a connection once (inside a snapshot, or
with loading session settings), then takes parts until none are left.  The first error stops every
worker before its next part and is raised to the caller (of several out-of-space errors, the write that
needed most: the others failed because it filled the device); parts already finished stay finished, which
is what makes a rerun resume.  Threads are enough: the heavy work (the drivers' COPY, Arrow, Parquet,
zstd) runs in C++ with the GIL released.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from bulkmig.core.store.base import DiskFull

Item = TypeVar("Item")
T = TypeVar("T")
Worker = TypeVar("Worker")


class Pool(Generic[Item, Worker]):
    def __init__(
        self,
        name: str,
        open_worker: Callable[[], Worker],
        close_worker: Callable[[Worker], None],
        wrap_error: Callable[[Item, Exception], BaseException] | None = None,
    ) -> None:
        self.name = name
        self.open_worker = open_worker
        self.close_worker = close_worker
        self.wrap_error = wrap_error

    def run(self, items: Sequence[Item], workers: int, work: Callable[[Worker, Item], None]) -> None:
        """Run ``work(worker, item)`` for every item on up to ``workers`` threads; raise the first error."""
        todo: queue.SimpleQueue[Item] = queue.SimpleQueue()
        for item in items:
            todo.put(item)
        errors: list[BaseException] = []
        lock = threading.Lock()

        def fail(exc: BaseException) -> None:
            with lock:
                errors.append(exc)

        def loop() -> None:
            try:
                worker = self.open_worker()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                fail(exc)
                return
            try:
                while not errors:
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        work(worker, item)
                    except Exception as exc:
                        fail(self.wrap_error(item, exc) if self.wrap_error else exc)
                        return
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt and the like
                fail(exc)
            finally:
                self.close_worker(worker)

        n = max(1, min(workers, len(items)))
        threads = [threading.Thread(target=loop, name=f"{self.name}-{k}", daemon=True) for k in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise cause(errors)


def cause(errors: Sequence[BaseException]) -> BaseException:
    """The error to report of those the workers raised: the first, unless some ran out of disk space.  Two
    downloads into one temp dir that fill it both fail; the small one often first, saying it needed 2 KB of a
    device with 500 KB free.  The largest need is what the operator must make room for."""
    full = [e for e in errors if isinstance(e, DiskFull)]
    return max(full, key=lambda e: e.needed) if full else errors[0]


_DONE = object()


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Iterate ``items`` on a background thread, ``depth`` items ahead.

    Reading a partition (the server producing COPY data, the driver parsing it) and writing it (Parquet
    encoding, zstd) both run in C++ without the GIL; a small buffer between them lets the two overlap
    instead of taking turns.  Memory stays bounded by ``depth`` record batches.  An error in the
    producer is raised in the consumer; a consumer that stops early stops the producer.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
