"""Loading a sealed volume's parts into a target: what every target's loader does, whatever the engine.

A part is loaded only as the sealed volume manifest describes it: listed there (:func:`sealed_entry`), and with the
very bytes (sha256 and size) sealed (:func:`check_sealed`).  A part missing from the manifest or damaged on the way
is refused before any row of it reaches the target, with the step that repairs it.  The parts still to load go
through one pool of reconnecting workers (:func:`load_parts`); the engine supplies only how a worker connects and
how it loads one part.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError, IntegrityError, TargetError
from bulkmig.core.log import Progress
from bulkmig.core.manifest import FileEntry, VolumeManifest, sha256_file
from bulkmig.core.model import Table
from bulkmig.core.retry import Reconnecting, Retry
from bulkmig.core.store import Store
from bulkmig.core.workers import Pool


def sealed_entry(manifest: VolumeManifest, key: str) -> FileEntry:
    """The manifest's entry of part ``key``; a part the manifest does not list is refused."""
    entry = manifest.entry(key)
    if entry is None:
        raise IntegrityError(f"part {key} is not in the sealed volume manifest", "re-seal and re-import the volume")
    return entry


def check_sealed(store: Store, key: str, local: Path, entry: FileEntry) -> str:
    """The sha256 of the downloaded part at ``local``, refused unless it is the part the manifest sealed."""
    digest, size = sha256_file(local)
    if digest != entry.sha256 or size != entry.bytes:
        raise IntegrityError(
            f"part {key} in {store.url} is damaged (sha256 or size differs from the sealed manifest)",
            "re-import the volume from the device (`bulkmig volume import`), or re-extract that part",
        )
    return digest


class PartCounts(Protocol):
    """What :func:`load_parts` counts into (a load report)."""

    parts_loaded: int
    rows: int


def load_parts(
    todo: list[tuple[Table, int]],
    manifest: VolumeManifest,
    *,
    workers: int,
    progress: bool,
    report: PartCounts,
    retry: Retry,
    open_conn: Callable[[], Any],
    load_one: Callable[[Any, Table, int], int],
    error_text: Callable[[BaseException], str],
) -> None:
    """Load the ``(table, part index)`` pairs of ``todo`` on ``workers`` connections, each reconnected after a lost
    connection (``retry``) and the part redone or found done: ``load_one(conn, table, index)`` loads one part in
    one transaction with its ledger row and returns its rows (0: loaded before).  A driver error is said with the
    part it stopped and ``error_text`` of the error; loaded parts are kept either way."""
    sizes = {e.key: e.bytes for e in manifest.files}
    total = sum(sizes.get(layout.part_key(t.schema, t.name, i), 0) for t, i in todo)
    bar = Progress("load", len(todo), total) if progress else None
    lock = threading.Lock()

    def open_worker() -> Reconnecting[Any]:
        return Reconnecting(retry, open_conn, lambda conn: conn.close())

    def one(worker: Reconnecting[Any], item: tuple[Table, int]) -> None:
        table, index = item
        rows = worker.call(lambda conn: load_one(conn, table, index), what=f"{table.qualified} part {index}")
        with lock:
            report.parts_loaded += 1
            report.rows += rows
        if bar:
            bar.advance(parts=1, rows=rows, nbytes=sizes.get(layout.part_key(table.schema, table.name, index), 0))

    def wrap(item: tuple[Table, int], exc: Exception) -> BaseException:
        if isinstance(exc, BulkmigError):
            return exc
        table, index = item  # a database error: name the part and the reason
        return TargetError(
            f"loading {table.qualified} part {index} failed: {error_text(exc)}",
            "fix the cause and rerun `bulkmig load` (loaded parts are kept)",
        )

    pool: Pool[tuple[Table, int], Reconnecting[Any]] = Pool("load", open_worker, Reconnecting.close, wrap)
    try:
        pool.run(todo, workers, one)
    finally:
        if bar:
            bar.finish()
