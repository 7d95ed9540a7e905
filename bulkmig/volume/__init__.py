"""The volume commands: ``seal`` (write volume.json), ``verify`` (recompute every hash and say what is
wrong), ``import`` (copy a sealed volume into the bucket, each object checked against volume.json).

All three work on a :class:`bulkmig.core.store.Store`, so they run the same against a directory, a device's
S3 adapter and the bucket itself (``verify`` of the imported copy is how you prove the import).

Long steps report through an optional ``progress(done_bytes, total_bytes, done_files, total_files)``
callable; the CLI wires it to a progress bar.  It may be called from worker threads, never concurrently.
"""

from __future__ import annotations

import threading
from typing import Protocol

# Defined before the submodules are imported below: they import these two names from this package.


class ProgressFn(Protocol):
    """Called after each file is done (hashed, uploaded or skipped), with running totals."""

    def __call__(self, done_bytes: int, total_bytes: int, done_files: int, total_files: int) -> None: ...


class Tracker:
    """Thread-safe running totals that call a :class:`ProgressFn` (if any) under one lock."""

    def __init__(self, progress: ProgressFn | None, total_bytes: int, total_files: int) -> None:
        self.progress = progress
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.done_bytes = 0
        self.done_files = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Report 0 of N so a bar appears before the first (possibly long) file finishes."""
        if self.progress is not None:
            with self._lock:
                self.progress(0, self.total_bytes, 0, self.total_files)

    def add(self, nbytes: int, files: int = 1) -> None:
        with self._lock:
            self.done_bytes += nbytes
            self.done_files += files
            if self.progress is not None:
                self.progress(self.done_bytes, self.total_bytes, self.done_files, self.total_files)


from bulkmig.volume.importer import ImportReport, import_volume  # noqa: E402
from bulkmig.volume.seal import seal  # noqa: E402
from bulkmig.volume.verify import Problem, VerifyReport, verify  # noqa: E402

__all__ = [
    "ImportReport",
    "Problem",
    "ProgressFn",
    "Tracker",
    "VerifyReport",
    "import_volume",
    "seal",
    "verify",
]
