"""Change data capture from MySQL/MariaDB: the row binlog into the same change batches as the PostgreSQL
capture (``bulkmig.capture`` sends MySQL sources here), so replay applies them unchanged.

The stream lives in the bucket exactly like a PostgreSQL one::

    <bucket prefix>/cdc/mysql-<name>/stream.json          written once: start position, tables, type settings
    <bucket prefix>/cdc/mysql-<name>/progress.json        rewritten: captured_through, last batch, lag, tables
    <bucket prefix>/cdc/mysql-<name>/batch-000000000001/… change batches (``bulkmig.cdc.batch``)

Batches hold TARGET schema/table/column names (``stream.json`` says ``"names": "target"``, so replay applies
no table mapping to them) and text values in the forms of the stream's target engine (``"value_forms"``:
PostgreSQL's text input forms, :mod:`.changes`, or MySQL's own for a MySQL/MariaDB target, :mod:`.forms`);
positions are binlog ordinals written like LSNs (:class:`.binlog.BinlogPos`), a row's ``pos`` being the start
of its transaction's commit event.

Why the loop is shaped the way it is (DESIGN §5, §6):

* **Read, store, then remember.**  There is no slot on the server: the position lives in the bucket.  A
  transaction goes into a batch only once its commit (XID event, or COMMIT for non-transactional tables)
  has been read; a batch is written (``batch.json`` last, once), then ``progress.json``.  A restart reads
  from the last batch's end (or ``progress.json``'s ``captured_through`` when that is later), which is
  always a transaction boundary, so a kill at any moment repeats nothing stored and loses nothing unstored.
* **Rotation and purge.**  Rotate events are followed.  Before reading, the start file is looked up in
  ``SHOW BINARY LOGS``: a purged file stops capture with what was lost and that a new full load is needed.
* **The stream's own table definitions.**  Each table's columns (names, types, charsets) come from the plan
  and grow with every ADD COLUMN seen in the binlog; a table map that does not fit stops capture.  A
  statement that stops capture leaves ``captured_through`` before it, so a restart stops there again.
* **One writer per stream.**  ``GET_LOCK`` on the source (released by the server when the session dies,
  even after kill -9) keeps a second capture of the stream out.

Where each part is: :mod:`.stream` (the stream's id, table definitions, ``stream.json``), :mod:`.session` (one
connection's reading and storing), :mod:`.batching` (whole transactions into a batch), :mod:`.ddl` (statements
that are not rows); this module holds the driver, the status and the clean-up.
"""

from __future__ import annotations

from typing import Any

from bulkmig.cdc.driver import CaptureReport
from bulkmig.cdc.position import parse_lsn
from bulkmig.cdc.stream import base_status, bucket_store, delete_stream_objects, read_progress
from bulkmig.config.task import Task
from bulkmig.core.errors import SourceError
from bulkmig.core.store import Store
from bulkmig.engines.mysql.binlog import BinlogPos, binlog_status, check_not_purged, control_connection, query_rows
from bulkmig.engines.mysql.session import CaptureSession
from bulkmig.engines.mysql.stream import (
    STREAM_PREFIX,
    TableDef,
    lock_name,
    read_own_stream,
    start_stream,
    start_stream_now,
    stream_id_for,
    table_defs,
)

# ========================================================================================= status


def stream_status(task: Task) -> dict[str, Any]:
    """The stream at a glance for ``bulkmig status``: last batch, captured position, lag behind the source."""
    stream_id = stream_id_for(task)
    store = bucket_store(task)
    status, stream = base_status(store, stream_id, {"engine": "mysql"})
    progress = read_progress(store, stream_id)
    status.update(
        {
            "start_binlog": stream.get("start_binlog") if stream else None,
            "captured_binlog": progress.get("captured_binlog") if progress else (stream or {}).get("start_binlog"),
            "source_pos": None,
            "source_binlog": None,
            "lag_bytes": None,
            "warnings": [],
        }
    )
    if stream is None:
        return status
    conn = control_connection(task)
    try:
        source = binlog_status(conn)
        captured = BinlogPos.from_ordinal(stream["basename"], parse_lsn(status["captured_through"]))
        try:
            check_not_purged(conn, captured, "capture's position")
        except SourceError as exc:
            status["warnings"].append(str(exc))
        if source is not None:
            status["source_pos"], status["source_binlog"] = source.lsn, str(source)
            if source.file == captured.file:
                status["lag_bytes"] = max(0, source.pos - captured.pos)
    finally:
        conn.close()
    return status


def drop_stream(task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]:
    """``bulkmig cleanup``: a binlog reader leaves nothing on the source; with ``delete_from_bucket`` the
    stream's documents and batches go.  Refuses while a capture of this stream runs (its lock is held)."""
    stream_id = stream_id_for(task)
    conn = control_connection(task)
    try:
        used = query_rows(conn, "SELECT IS_USED_LOCK(%s)", (lock_name(stream_id),))
    finally:
        conn.close()
    if used and used[0][0] is not None:
        raise SourceError(f"bulkmig capture is running for stream {stream_id}", "stop it before cleanup")
    dropped = {"slot": False, "publication": False, "objects": 0}
    if delete_from_bucket:
        dropped["objects"] = delete_stream_objects(task, stream_id)
    return dropped


class _Driver:
    """The MySQL/MariaDB :class:`~bulkmig.cdc.driver.CaptureDriver`: reads the row binlog as a replica."""

    retryable = (Exception,)
    #: a binlog reader leaves nothing on the source, so the stream can start at the first capture, from
    #: the plan's recorded snapshot position (``start_from``) or from now (``start_now``)
    starts_lazily = True

    def start_from(self, task: Task, tables: list[Any], position: dict[str, Any]) -> dict[str, Any]:
        return start_stream(task, tables, position)

    def start_now(self, task: Task, tables: list[Any], start_position: str | None) -> dict[str, Any]:
        return start_stream_now(task, tables, start_position)

    def stream_id(self, task: Task) -> str:
        return stream_id_for(task)

    def session(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> CaptureSession:
        return CaptureSession(task, store, report, max_changes)

    def status(self, task: Task) -> dict[str, Any]:
        return stream_status(task)

    def drop(self, task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]:
        return drop_stream(task, delete_from_bucket=delete_from_bucket)


DRIVER = _Driver()


__all__ = [
    "DRIVER",
    "STREAM_PREFIX",
    "TableDef",
    "drop_stream",
    "read_own_stream",
    "start_stream",
    "start_stream_now",
    "stream_id_for",
    "stream_status",
    "table_defs",
]
