"""The PostgreSQL capture driver: the change stream from a logical slot (pgoutput) into change batches in S3.

The stream is ``cdc/pg-<slot>/`` in the bucket (:mod:`bulkmig.cdc.stream`); the reconnect loop is
:mod:`bulkmig.cdc.loop`.  This module supplies what is PostgreSQL's around a session: starting the stream
(the publication, then the slot, with or without an exported snapshot, then ``stream.json``), the slot's
view of the stream for ``bulkmig status``, and dropping it at cleanup.

How a session reads the slot and when it confirms what is an exactly-once matter of its own
(:mod:`bulkmig.engines.postgres.session`: the replication stream, or SQL peeks as a fallback); how whole
transactions become one batch is :mod:`bulkmig.engines.postgres.batching`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bulkmig.cdc.driver import CaptureReport
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.cdc.stream import (
    STREAM_FORMAT,
    STREAM_VERSION,
    base_status,
    bucket_store,
    create_stream,
    delete_stream_objects,
    read_stream,
    stream_names,
    stream_prefix,
)
from bulkmig.config.task import Task
from bulkmig.core.errors import BulkmigError, ConfigError, SourceError
from bulkmig.core.log import human_bytes, say
from bulkmig.core.manifest import utc_now
from bulkmig.core.store import Store
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.session import (
    SLOT_GONE,
    SLOT_GONE_HINT,
    CaptureSession,
    advisory_key,
    stream_id_for,
)
from bulkmig.engines.postgres.slot import (
    advance,
    create_publication,
    create_slot_with_snapshot,
    drop_publication,
    drop_slot,
    slot_lag,
)
from bulkmig.engines.postgres.sql import literal

WAL_RETAINED_WARN_BYTES = 1024**3
# The session class under its old name (tests patch its methods).
_Session = CaptureSession


# -------------------------------------------------------------------------------- relation documents


def _catalog_relations(conn: psycopg.Connection, tables: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The tables' definitions exactly as pgoutput will describe them in its Relation messages: columns in
    order without dropped or generated ones, their type OID and typmod, and the replica-identity flag
    (every column under FULL, the primary key's or the identity index's columns otherwise).

    Stored in ``stream.json`` as the baseline that the first Relation of each table is compared with, so
    an ALTER TABLE between the slot's creation and the first change is drift like any other."""
    rows = conn.execute(
        """
        SELECT c.oid::bigint, n.nspname::text, c.relname::text, c.relreplident::text, a.attname::text,
               a.atttypid::bigint, a.atttypmod, pg_catalog.format_type(a.atttypid, a.atttypmod),
               CASE c.relreplident
                 WHEN 'f' THEN true
                 WHEN 'n' THEN false
                 WHEN 'i' THEN EXISTS (SELECT FROM pg_catalog.pg_index i
                                       WHERE i.indrelid = c.oid AND i.indisreplident AND a.attnum = ANY (i.indkey))
                 ELSE EXISTS (SELECT FROM pg_catalog.pg_index i
                              WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey))
               END
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(nsp, rel, ord)
        JOIN pg_catalog.pg_namespace n ON n.nspname = t.nsp
        JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
        WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        ORDER BY t.ord, a.attnum
        """,
        ([s for s, _ in tables], [t for _, t in tables]),
    ).fetchall()
    docs: dict[int, dict[str, Any]] = {}
    for oid, nsp, rel, ident, name, type_oid, typmod, type_text, is_key in rows:
        doc = docs.setdefault(oid, {"rel_id": oid, "schema": nsp, "table": rel, "identity": ident, "columns": []})
        doc["columns"].append(
            {"name": name, "type": type_text, "type_oid": type_oid, "typmod": typmod, "key": bool(is_key)}
        )
    return list(docs.values())


# ---------------------------------------------------------------------------------- stream documents


def _refuse_existing_stream(store: Store, stream_id: str) -> None:
    """A new slot under a stream id that already has documents would mix two streams' batches."""
    existing = read_stream(store, stream_id)
    if existing is not None:
        where = f"{store.url}/{stream_prefix(stream_id)}"
        raise SourceError(
            f"change stream {stream_id} already exists in the bucket ({where}, started at "
            f"{existing.get('start_pos')} on {existing.get('created_at')})",
            "a stream whose slot is gone cannot be continued: remove that prefix (bulkmig cleanup) or set "
            "settings.slot_name to a new name",
        )


def _drop_unrecorded_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Drop this database's pgoutput slot ``slot`` when the bucket holds no ``stream.json`` for it (the caller
    checked): a start killed between creating the slot and recording the stream left it behind.  Nothing can
    use it (no batch refers to it; a snapshot it exported died with that process), so the start begins
    afresh.  A slot in use, or of another database or plugin, is left alone (creating ours then says so)."""
    deadline = time.monotonic() + 5.0  # a killed start's walsender may take a moment to exit
    while True:
        row = conn.execute(
            "SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = %s AND slot_type = 'logical' "
            "AND plugin = 'pgoutput' AND database = current_database()",
            (slot,),
        ).fetchone()
        if row is None:
            return False
        if row[0] is None:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    drop_slot(conn, slot)
    say(f"capture: dropped replication slot {slot!r}, left behind by a start that ended before recording its stream")
    return True


def discard_stream_of_volume(task: Task, conn: psycopg.Connection) -> bool:
    """For ``plan`` on a volume without a plan (or with ``--restart``): when the task's stream names this very
    volume, the plan that started it ended before writing ``plan.json`` (or is being discarded), so its
    snapshot is gone and no part was read in it.  Drop its slot and publication and delete its documents, so
    the new plan starts a new stream.  A stream of another volume, or one being captured, is left alone."""
    slot, _ = stream_names(task)
    stream_id = stream_id_for(slot)
    stream = read_stream(bucket_store(task), stream_id)
    if stream is None or not task.full_load or stream.get("volume") != task.volume:
        return False
    dropped = drop_stream(task, conn, delete_from_bucket=True)
    say(f"capture: discarded stream {stream_id} of an unfinished plan of this volume ({dropped['objects']} objects)")
    return True


# --------------------------------------------------------------------------------------- start stream


@dataclass
class StreamStart:
    """What ``plan`` needs from starting a stream.

    ``holder`` (only with a snapshot) is the replication connection that exported ``snapshot_name``: keep
    it OPEN and SILENT until every extraction worker has run ``SET TRANSACTION SNAPSHOT``, then call
    :meth:`release`.  The volume is then exactly the source at ``consistent_point`` and replay starts there.
    """

    holder: psycopg.Connection | None
    slot_name: str
    publication_name: str
    stream_id: str
    consistent_point: int
    snapshot_name: str | None
    replica_identity_full: list[tuple[str, str]] = field(default_factory=list)  # tables plan switched to FULL

    @property
    def start_pos(self) -> str:
        return format_lsn(self.consistent_point)

    def release(self) -> None:
        """End the exported snapshot (call once the last worker imported it); the slot stays."""
        if self.holder is not None:
            self.holder.close()
            self.holder = None


def _stream_doc(
    task: Task,
    slot: str,
    publication: str,
    stream_id: str,
    start: int,
    tables: list[tuple[str, str]],
    relations: list[dict[str, Any]],
    snapshot: str | None,
    altered: list[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "format": STREAM_FORMAT,
        "version": STREAM_VERSION,
        "stream_id": stream_id,
        "engine": "postgresql",
        "slot": slot,
        "publication": publication,
        "start_pos": format_lsn(start),
        "snapshot": snapshot,
        "tables": [{"schema": s, "table": t} for s, t in tables],
        "relations": relations,
        "replica_identity_full": [{"schema": s, "table": t} for s, t in altered],
        "source": task.source.redacted(),
        "volume": task.volume if task.full_load else None,  # the volume whose plan started it (see plan.py)
        "task_name": task.name,
        "created_at": utc_now(),
    }


def _drop_quietly(conn: psycopg.Connection, slot: str) -> None:
    """Undo a slot this call just created, keeping the error that made it necessary (the holder's walsender
    may take a moment to exit, so 'in use' is retried briefly)."""
    for _ in range(50):
        try:
            drop_slot(conn, slot)
            return
        except SourceError:
            time.sleep(0.1)
        except psycopg.Error:
            return
    say(f"capture: could not drop replication slot {slot!r} after a failed start; drop it by hand")


def start_stream(
    task: Task, conn: psycopg.Connection, tables: list[tuple[str, str]], *, allow_replica_identity_full: bool
) -> StreamStart:
    """Start the task's change stream for full-load-and-cdc: the publication, then the slot with an exported
    snapshot (DESIGN §6), then ``stream.json``.  ``conn`` is an autocommit connection to the source.

    Refuses (changing nothing) tables whose UPDATE/DELETE would fail once published unless
    ``allow_replica_identity_full``, and a bucket that already holds this stream id.  If anything fails
    after the slot exists, the slot is dropped again so a rerun starts clean.
    """
    slot, publication = stream_names(task)
    stream_id = stream_id_for(slot)
    store = bucket_store(task)
    _refuse_existing_stream(store, stream_id)
    _drop_unrecorded_slot(conn, slot)
    altered = create_publication(conn, publication, tables, allow_replica_identity_full=allow_replica_identity_full)
    holder, slot, consistent_point, snapshot = create_slot_with_snapshot(task.source.libpq_conninfo(), slot)
    try:
        # The definitions as of the snapshot itself, read on the caller's connection (not the holder's).
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT {literal(snapshot)}")
            relations = _catalog_relations(conn, tables)
        doc = _stream_doc(task, slot, publication, stream_id, consistent_point, tables, relations, snapshot, altered)
        create_stream(store, doc)
    except BaseException:
        holder.close()
        _drop_quietly(conn, slot)
        raise
    say(f"capture: stream {stream_id} starts at {format_lsn(consistent_point)} (slot {slot}, snapshot {snapshot})")
    return StreamStart(holder, slot, publication, stream_id, consistent_point, snapshot, altered)


def start_stream_now(
    task: Task,
    conn: psycopg.Connection,
    tables: list[tuple[str, str]],
    *,
    allow_replica_identity_full: bool,
    start_position: int | str | None = None,
) -> StreamStart:
    """Start the stream for ``migration_type: cdc`` on an already loaded target: publication, then a slot
    without a snapshot, from now.

    ``start_position`` (a task's ``cdc_start_position``): start there instead.  A slot of this name that
    already exists (created by the operator, pgoutput, this database) is adopted and advanced to it; a new
    slot can only start at or after its own creation, so an earlier position is refused.
    """
    slot, publication = stream_names(task)
    stream_id = stream_id_for(slot)
    store = bucket_store(task)
    _refuse_existing_stream(store, stream_id)
    start = parse_lsn(start_position) if isinstance(start_position, str) else start_position
    if start is None:  # a slot to adopt only comes with a start position
        _drop_unrecorded_slot(conn, slot)
    altered = create_publication(conn, publication, tables, allow_replica_identity_full=allow_replica_identity_full)
    existing = conn.execute(
        "SELECT plugin::text, slot_type, database::text = current_database(), confirmed_flush_lsn::text, active_pid "
        "FROM pg_catalog.pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    created = existing is None
    if existing is not None:
        plugin, kind, same_db, confirmed, pid = existing
        if start is None:
            raise SourceError(f"replication slot {slot!r} already exists on the source", "drop it (bulkmig cleanup)")
        if kind != "logical" or plugin != "pgoutput" or not same_db:
            raise SourceError(
                f"replication slot {slot!r} is not a pgoutput slot of this database ({kind}, {plugin})",
                "create it with pg_create_logical_replication_slot(<name>, 'pgoutput') or let bulkmig create one",
            )
        if pid is not None:
            raise SourceError(f"replication slot {slot!r} is in use by server process {pid}", "stop its reader first")
        point = parse_lsn(confirmed)
    else:
        try:
            row = conn.execute(
                "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
            ).fetchone()
        except psycopg.Error as exc:
            raise SourceError(
                f"cannot create replication slot {slot!r} on the source: {exc}", "check the source"
            ) from None
        assert row is not None
        point = parse_lsn(row[0])
    try:
        if start is not None:
            if start < point:
                raise ConfigError(
                    f"cdc_start_position {format_lsn(start)} is before slot {slot!r}'s position {format_lsn(point)}",
                    "changes before a slot's position are no longer available: give a later position",
                )
            point = advance(conn, slot, start)
        relations = _catalog_relations(conn, tables)
        doc = _stream_doc(task, slot, publication, stream_id, point, tables, relations, None, altered)
        create_stream(store, doc)
    except BaseException:
        if created:
            _drop_quietly(conn, slot)
        raise
    say(f"capture: stream {stream_id} starts at {format_lsn(point)} (slot {slot}, no snapshot)")
    return StreamStart(None, slot, publication, stream_id, point, None, altered)


# ---------------------------------------------------------------------------------------------- status


def stream_status(task: Task) -> dict[str, Any]:
    """The stream at a glance, for ``bulkmig status``: slot lag and retained WAL, the last batch, how far
    capture has stored, and warnings (slot gone or lost, retained WAL past the warning size)."""
    slot, publication = stream_names(task)
    stream_id = stream_id_for(slot)
    status, stream = base_status(bucket_store(task), stream_id, {"slot": slot, "publication": publication})
    warn_at = task.settings.wal_retained_warning or WAL_RETAINED_WARN_BYTES
    status.update(
        {
            "slot_exists": False,
            "slot_active": False,
            "wal_status": None,
            "source_pos": None,
            "confirmed_pos": None,
            "lag_bytes": None,
            "retained_bytes": None,
            "retained_warning_bytes": warn_at,
            "warnings": [],
        }
    )
    with connect(task.source, autocommit=True) as conn:
        try:
            lag = slot_lag(conn, slot)
        except SourceError:
            lag = None
    if lag is None:
        if stream is not None:
            status["warnings"].append(f"replication slot {slot!r} is gone: {SLOT_GONE}; {SLOT_GONE_HINT}")
        return status
    captured = parse_lsn(status["captured_through"]) if status["captured_through"] else None
    status.update(
        slot_exists=True,
        slot_active=lag["active"],
        wal_status=lag["wal_status"],
        source_pos=format_lsn(lag["current_lsn"]),
        confirmed_pos=format_lsn(lag["confirmed_flush_lsn"]) if lag["confirmed_flush_lsn"] else None,
        lag_bytes=max(0, lag["current_lsn"] - captured) if captured is not None else lag["unconfirmed_bytes"],
        retained_bytes=lag["retained_bytes"],
    )
    if lag["wal_status"] == "lost":
        status["warnings"].append(f"replication slot {slot!r} lost WAL it needed: a new full load is needed")
    if lag["retained_bytes"] is not None and lag["retained_bytes"] > warn_at:
        status["warnings"].append(
            f"replication slot {slot!r} holds back {human_bytes(lag['retained_bytes'])} of WAL on the source "
            f"(warning at {human_bytes(warn_at)}): run bulkmig capture, or bulkmig cleanup if the migration is over"
        )
    if stream is None:
        status["warnings"].append(f"replication slot {slot!r} exists but the bucket holds no stream {stream_id}")
    return status


def drop_stream(task: Task, conn: psycopg.Connection, *, delete_from_bucket: bool = False) -> dict[str, Any]:
    """Drop the slot and the publication (``bulkmig cleanup``); with ``delete_from_bucket`` also remove the
    stream's documents and batches, so a new stream under the same slot name can start.

    Refuses while a capture of this stream runs: it holds the slot only during each peek, so the slot
    alone does not show it, but its advisory lock does."""
    slot, publication = stream_names(task)
    stream_id = stream_id_for(slot)
    key = advisory_key(slot)
    if not conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        raise SourceError(f"bulkmig capture is running for stream {stream_id}", "stop it before cleanup")
    conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (key,))
    dropped = {"slot": drop_slot(conn, slot), "publication": drop_publication(conn, publication), "objects": 0}
    if delete_from_bucket:
        dropped["objects"] = delete_stream_objects(task, stream_id)
    return dropped


class _Driver:
    """The PostgreSQL :class:`~bulkmig.cdc.driver.CaptureDriver`."""

    retryable = (BulkmigError, psycopg.OperationalError)
    #: the slot is the stream's start: plan creates it (with the snapshot), capture never starts one
    starts_lazily = False

    def stream_id(self, task: Task) -> str:
        return stream_id_for(stream_names(task)[0])

    def session(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> CaptureSession:
        return CaptureSession(task, store, report, max_changes)

    def status(self, task: Task) -> dict[str, Any]:
        return stream_status(task)

    def drop(self, task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]:
        with connect(task.source, autocommit=True) as conn:
            return drop_stream(task, conn, delete_from_bucket=delete_from_bucket)


DRIVER = _Driver()


__all__ = [
    "DRIVER",
    "WAL_RETAINED_WARN_BYTES",
    "StreamStart",
    "discard_stream_of_volume",
    "drop_stream",
    "start_stream",
    "start_stream_now",
    "stream_id_for",
    "stream_status",
]
