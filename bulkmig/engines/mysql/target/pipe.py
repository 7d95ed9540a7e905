"""LOAD DATA's file as a named pipe that a thread fills while the server reads it.

Why a pipe and not a file: written to a file first, a part's text is encoded to the end before the server parses
its first row, so on a small machine the client's encoding and the server's parsing take turns instead of
running side by side (a third of a load into MySQL was the encoding).  Through a FIFO the server reads each batch
as it is encoded; nothing of the part touches the disk twice.  ``LOAD DATA LOCAL INFILE`` reads the path with the
client library's own file handler, which reads a FIFO like a file.

Nothing is trusted half-written: an encoding error closes the pipe early and is raised by :meth:`TextPipe.check`
after the statement (the caller rolls back, the ledger row with it); a statement that fails, or never opens the
pipe, leaves the writer blocked, so :meth:`TextPipe.close` reads and drops what it still writes until it ends.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType


class TextPipe:
    """A FIFO at ``path`` fed from ``chunks`` by a thread, for one ``LOAD DATA LOCAL INFILE``."""

    def __init__(self, path: Path, chunks: Iterable[memoryview | bytes]) -> None:
        self.path = path
        self.chunks = chunks
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._feed, name=f"bulkmig-pipe-{path.name}", daemon=True)

    def __enter__(self) -> TextPipe:
        os.mkfifo(self.path, 0o600)
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _feed(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY)  # waits for the reader: LOAD DATA, or close()'s drain
            with os.fdopen(fd, "wb") as out:
                for chunk in self.chunks:
                    if self.stop.is_set():
                        return
                    out.write(chunk)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by check()
            self.error = exc

    def check(self) -> None:
        """After the statement: wait for the writer and raise what stopped it, if anything did."""
        self.thread.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """End the writer whatever the statement did, then remove the FIFO."""
        self.stop.set()
        if self.thread.is_alive():
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # lets a writer waiting in open() go on
            try:
                while self.thread.is_alive():
                    try:
                        if not os.read(fd, 1 << 16):
                            time.sleep(0.01)  # no writer yet, or it is between chunks
                    except BlockingIOError:
                        time.sleep(0.01)
            finally:
                os.close(fd)
            self.thread.join()
        self.path.unlink(missing_ok=True)
