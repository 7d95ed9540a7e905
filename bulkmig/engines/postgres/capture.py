"""The PostgreSQL capture driver: the change stream from a logical slot (pgoutput) into change batches in S3.

The stream is ``cdc/pg-<slot>/`` in the bucket (:mod:`bulkmig.cdc.stream`); the reconnect loop is
:mod:`bulkmig.cdc.loop`.  This module supplies what is PostgreSQL's: the slot and publication, peeking and
decoding pgoutput, heartbeats, and the slot's view of the stream for ``bulkmig status``.

Why the loop is shaped the way it is (DESIGN §5, §6):

* **Peek, store, then acknowledge.**  Changes are read with ``pg_logical_slot_peek_binary_changes`` (never
  ``get``, which consumes before anything is stored); a batch is written (its ``batch.json`` last and only
  once), then ``progress.json``, and only then is the slot advanced.  A kill at any moment re-peeks what was
  not acknowledged: transactions whose commit end LSN is at or before the last batch's ``last_pos`` are
  already durable and are skipped, so nothing is written twice and nothing is lost.
* **Whole transactions, one column list per table.**  A batch holds whole transactions; when a table's
  definition (pgoutput's Relation message) changes, the batch ends before the first transaction that
  uses the new one, and the next batch carries the change in ``schema_changes``.  Relation messages are
  re-sent at the start of every peek, so drift is judged against the definitions this stream last stored
  (``stream.json``, then ``progress.json``), never against what one peek happened to see first.
* **WAL hygiene.**  An idle slot pins WAL forever: after ``heartbeat_interval`` without progress capture
  emits a ``bulkmig`` logical message and acknowledges it, and ``progress.json`` moves with it.
* **One writer per stream.**  ``write_batch`` rewrites table files until ``batch.json`` exists, so two
  captures of one stream could overwrite each other's files; a session-level advisory lock on the source
  (released by the server when the connection dies, even after kill -9) keeps a second one out.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges, list_batches, read_manifest, write_batch
from bulkmig.cdc.driver import CaptureReport
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.cdc.stream import (
    FIRST_SEQ,
    PROGRESS_DOC,
    PROGRESS_FORMAT,
    PROGRESS_VERSION,
    STREAM_DOC,
    STREAM_FORMAT,
    STREAM_VERSION,
    base_status,
    bucket_store,
    delete_stream_objects,
    read_progress,
    read_stream,
    stream_names,
    stream_prefix,
)
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import BulkmigError, ConfigError, ConnectError, SourceError, StoreError
from bulkmig.core.log import human_bytes, say, tick
from bulkmig.core.manifest import dump_document, utc_now, validate_document
from bulkmig.core.retry import Reason
from bulkmig.core.store import AlreadyExists, Store
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.pgoutput import (
    NOT_IN_KEY,
    UNCHANGED_TOAST,
    Column,
    Decoder,
    Delete,
    Insert,
    LogicalMessage,
    PgoutputError,
    Relation,
    Row,
    SchemaChange,
    Transaction,
    Truncate,
    Update,
    decode_transactions,
)
from bulkmig.engines.postgres.slot import (
    advance,
    create_publication,
    create_slot_with_snapshot,
    drop_publication,
    drop_slot,
    emit_heartbeat,
    peek,
    slot_lag,
)
from bulkmig.engines.postgres.sql import literal

WAL_RETAINED_WARN_BYTES = 1024**3
# Reconnect back-off when the source connection drops during `capture(follow=True)`, in seconds.

SLOT_GONE = "the slot was dropped"
SLOT_GONE_HINT = "the stream cannot continue; a new full load is needed (bulkmig cleanup, then bulkmig plan --force)"


def stream_id_for(slot_name: str) -> str:
    return f"pg-{slot_name}"


# -------------------------------------------------------------------------------- relation documents


def _relation_doc(rel: Relation, type_names: dict[tuple[int, int], str]) -> dict[str, Any]:
    return {
        "rel_id": rel.rel_id,
        "schema": rel.namespace,
        "table": rel.name,
        "identity": rel.replica_identity,
        "columns": [
            {
                "name": c.name,
                "type": type_names.get((c.type_oid, c.typmod), ""),
                "type_oid": c.type_oid,
                "typmod": c.typmod,
                "key": c.is_key,
            }
            for c in rel.columns
        ],
    }


def _relation_from_doc(doc: dict[str, Any]) -> Relation:
    columns = tuple(
        Column(c["name"], int(c["type_oid"]), int(c["typmod"]), 1 if c["key"] else 0) for c in doc["columns"]
    )
    return Relation(int(doc["rel_id"]), doc["schema"], doc["table"], doc["identity"], columns)


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


def _put_stream_doc(store: Store, doc: dict[str, Any]) -> None:
    key = layout.join(stream_prefix(doc["stream_id"]), STREAM_DOC)
    validate_document(doc, "stream", key)
    try:
        store.put_bytes(key, dump_document(doc), if_absent=True)
    except AlreadyExists:
        raise SourceError(
            f"change stream {doc['stream_id']} was started by someone else meanwhile ({store.url}/{key})",
            "run plan once per task; set settings.slot_name to start another stream",
        ) from None


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
        _put_stream_doc(store, doc)
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
        _put_stream_doc(store, doc)
    except BaseException:
        if created:
            _drop_quietly(conn, slot)
        raise
    say(f"capture: stream {stream_id} starts at {format_lsn(point)} (slot {slot}, no snapshot)")
    return StreamStart(None, slot, publication, stream_id, point, None, altered)


# ------------------------------------------------------------------------------------ change mapping


def _values(row: Row) -> tuple[list[str | None], list[int]]:
    """Text values of a new tuple, and the indexes of unchanged TOAST values (sent as None, never NULL)."""
    if UNCHANGED_TOAST not in row and all(v is None or type(v) is str for v in row):
        return list(row), []  # type: ignore[arg-type]  # the common case, without a per-value branch
    values: list[str | None] = []
    unchanged: list[int] = []
    for i, v in enumerate(row):
        if v is None or isinstance(v, str):
            values.append(v)
        elif v is UNCHANGED_TOAST:
            values.append(None)
            unchanged.append(i)
        else:
            raise PgoutputError(f"unexpected value {v!r} in a new tuple", "read the slot without the 'binary' option")
    return values, unchanged


def _old(row: Row) -> list[str | None]:
    """An old key (columns outside the key → None) or a whole old row, as text."""
    out: list[str | None] = []
    for v in row:
        if v is None or isinstance(v, str):
            out.append(v)
        elif v is NOT_IN_KEY:
            out.append(None)
        else:  # Update/Delete.key() has refused unsent key values before this runs
            raise PgoutputError(f"unexpected value {v!r} in an old tuple", "read the slot without the 'binary' option")
    return out


class _BatchBuilder:
    """Turns whole transactions of one peek into one :class:`Batch`: per table one column list, rows in
    commit order with one ``seq`` over the batch, and the schema drift against ``known``."""

    def __init__(self, known: dict[int, Relation], type_name: Any, column_facts: Any) -> None:
        self.known = dict(known)  # updated as transactions are taken; the caller adopts it once durable
        self.type_name = type_name  # (oid, typmod) -> format_type text, from the source
        self.column_facts = column_facts  # (rel_id, column) -> (default expression, not null), from the source
        self.tables: dict[int, TableChanges] = {}
        self.shapes: dict[int, Relation] = {}
        self.schema_changes: list[dict[str, object]] = []
        self.transactions: list[Transaction] = []
        self.rows = 0

    @staticmethod
    def relations_of(txn: Transaction) -> dict[int, Relation]:
        """The one definition per table this transaction's changes use; two for one table cannot be batched."""
        used: dict[int, Relation] = {}
        for change in txn.changes:
            if isinstance(change, LogicalMessage):
                continue
            for rel in change.relations if isinstance(change, Truncate) else (change.relation,):
                seen = used.setdefault(rel.rel_id, rel)
                if seen != rel:
                    raise SourceError(
                        f"transaction {txn.xid} (commit {format_lsn(txn.commit_lsn)}) changed rows of "
                        f"{rel.qualname} both before and after altering it ("
                        + "; ".join(c.describe() for c in rel.diff(seen))
                        + "): one batch cannot hold two column lists for one table",
                        "the stream cannot continue past this transaction; a new full load is needed",
                    )
        return used

    def fits(self, txn: Transaction) -> bool:
        """False if the transaction uses another definition of a table this batch already holds rows of."""
        return all(self.shapes.get(rel_id, rel) == rel for rel_id, rel in self.relations_of(txn).items())

    def add(self, txn: Transaction) -> None:
        used = self.relations_of(txn)
        for rel_id, rel in used.items():
            before = self.known.get(rel_id)
            if before is not None and before != rel:
                self.schema_changes += [self._change_doc(rel, c) for c in rel.diff(before)]
            elif before is None:
                say(f"capture: {rel.qualname} was not in the stream's tables; capturing its changes as well")
            self.known[rel_id] = rel
            self.shapes[rel_id] = rel
        pos = format_lsn(txn.commit_lsn)
        for change in txn.changes:
            match change:
                case Insert():
                    values, unchanged = _values(change.new)
                    self._add(change.relation, "I", pos, txn, values, unchanged, None)
                case Update():
                    change.key()  # refuses an update whose row cannot be identified, before it is stored
                    values, unchanged = _values(change.resolved_new())
                    before_row = _old(change.old) if change.old is not None else None
                    self._add(change.relation, "U", pos, txn, values, unchanged, before_row)
                case Delete():
                    change.key()
                    old = _old(change.old)
                    self._add(change.relation, "D", pos, txn, old, [], list(old))
                case Truncate():
                    for rel in change.relations:
                        self._add(rel, "T", pos, txn, [None] * len(rel.columns), [], None)
                case LogicalMessage():
                    pass  # transactional messages carry no table data
        self.transactions.append(txn)

    def _add(
        self,
        rel: Relation,
        op: str,
        pos: str,
        txn: Transaction,
        values: list[str | None],
        unchanged: list[int],
        before: list[str | None] | None,
    ) -> None:
        table = self.tables.get(rel.rel_id)
        if table is None:
            table = TableChanges(
                schema=rel.namespace,
                table=rel.name,
                columns=list(rel.column_names),
                types=[self.type_name(c.type_oid, c.typmod) for c in rel.columns],
                key=list(rel.key_columns),
                identity=rel.replica_identity,
            )
            self.tables[rel.rel_id] = table
        self.rows += 1
        names = table.columns
        table.rows.append(
            ChangeRow(op, pos, self.rows, txn.xid, txn.commit_ts, values, [names[i] for i in unchanged], before)
        )

    def _change_doc(self, rel: Relation, change: SchemaChange) -> dict[str, object]:
        def tname(c: Column | None) -> str | None:
            return self.type_name(c.type_oid, c.typmod) if c is not None else None

        typ = tname(change.after) if change.after is not None else tname(change.before)
        detail = change.describe()
        if change.kind == "column_added":
            detail = f"column {change.column!r} added ({typ})"
        elif change.kind == "column_dropped":
            detail = f"column {change.column!r} dropped (was {typ})"
        elif change.kind == "type_changed":
            detail = f"column {change.column!r} changed type from {tname(change.before)} to {typ}"
        doc: dict[str, object] = {
            "schema": rel.namespace,
            "table": rel.name,
            "kind": change.kind,
            "column": change.column,
            "type": typ,
            "detail": detail,
        }
        if change.kind == "column_added" and change.column is not None:
            # ADD COLUMN … DEFAULT fills the existing rows on the source without a single change in the
            # stream: replay must add the same default (or refuse), or those rows differ on the target.
            default, not_null = self.column_facts(rel.rel_id, change.column)
            doc.update(default=default, not_null=not_null)
            if default is not None:
                doc["detail"] = f"{detail} default {default}"
        return doc

    def batch(self, stream_id: str, seq: int) -> Batch:
        first, last = self.transactions[0], self.transactions[-1]
        return Batch(
            stream_id=stream_id,
            seq=seq,
            first_pos=format_lsn(first.commit_lsn),
            last_pos=format_lsn(last.end_lsn),
            transactions=len(self.transactions),
            tables=list(self.tables.values()),
            schema_changes=self.schema_changes,
            created_at=utc_now(),
        )


def _has_rows(txn: Transaction) -> bool:
    return any(not isinstance(c, LogicalMessage) for c in txn.changes)


# --------------------------------------------------------------------------------------------- capture


def _advisory_key(slot: str) -> int:
    """A stable signed 64-bit advisory lock key for 'the capture of this slot'."""
    return int.from_bytes(hashlib.sha256(f"bulkmig capture {slot}".encode()).digest()[:8], "big", signed=True)


class _Session:
    """One connection's worth of capture: state recovered from the bucket, then polled until told to stop."""

    def __init__(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> None:
        self.task = task
        self.store = store
        self.report = report
        self.max_changes = max_changes
        self.slot, self.publication = stream_names(task)
        self.stream_id = stream_id_for(self.slot)
        self.prefix = stream_prefix(self.stream_id)
        self.type_names: dict[tuple[int, int], str] = {}
        self.conn: psycopg.Connection | None = None
        self.known: dict[int, Relation] = {}  # each table's definition as of the last durable batch
        self.durable = 0  # last_pos of the last batch: every transaction ending at or before it is stored
        self.captured = 0  # captured_through: everything before it is stored or held nothing for us
        self.last_seq: int | None = None
        self.next_seq = FIRST_SEQ
        self.lag: Any = None
        self.stale = False  # progress.json lags behind the batches (a crash came between them)

    # ---------------------------------------------------------------------------- recovery

    def open(self) -> None:
        stream = read_stream(self.store, self.stream_id)
        if stream is None:
            raise ConfigError(
                f"no change stream {self.stream_id} in {self.store.url}/cdc/",
                "start it first: bulkmig plan (full-load-and-cdc or cdc) creates the slot and the stream",
            )
        if stream.get("publication") != self.publication:
            raise ConfigError(
                f"stream {self.stream_id} reads publication {stream.get('publication')!r}, the task says "
                f"{self.publication!r}",
                "restore settings.publication_name to the stream's",
            )
        self.conn = conn = connect(self.task.source, autocommit=True)
        key = _advisory_key(self.slot)
        if not conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            raise SourceError(
                f"another bulkmig capture is already running for stream {self.stream_id}",
                "run one capture per stream; stop the other one first",
            )
        self.check_slot()
        progress = read_progress(self.store, self.stream_id)
        seqs = list_batches(self.store, self.prefix)
        self.last_seq = seqs[-1] if seqs else None
        self.next_seq = (seqs[-1] + 1) if seqs else FIRST_SEQ
        self.durable = parse_lsn(stream["start_pos"])
        if seqs:
            self.durable = parse_lsn(str(read_manifest(self.store, self.prefix, seqs[-1])["last_pos"]))
        docs = (progress or stream)["relations"]
        self.known = {int(d["rel_id"]): _relation_from_doc(d) for d in docs}
        for d in docs:
            for c in d["columns"]:
                if c.get("type"):
                    self.type_names[(int(c["type_oid"]), int(c["typmod"]))] = c["type"]
        self.captured = max(self.durable, parse_lsn(progress["captured_through"]) if progress else 0)
        self.stale = progress is None or progress.get("last_batch_seq") != self.last_seq
        confirmed = self.lag["confirmed_flush_lsn"] or 0
        if confirmed > self.captured:
            # Only this loop advances the slot, and only after progress.json says so: someone else moved it.
            raise SourceError(
                f"replication slot {self.slot!r} is at {format_lsn(confirmed)}, past everything stream "
                f"{self.stream_id} stored ({format_lsn(self.captured)}): changes in between may be missing",
                "something else advanced or consumed the slot; a new full load is needed",
            )
        self.report.captured_through = format_lsn(self.captured)
        self.report.lag_bytes = self.lag_bytes()
        say(
            f"capture: stream {self.stream_id} (slot {self.slot}, publication {self.publication}) at "
            f"{format_lsn(self.captured)}; {len(seqs)} batch(es) so far"
        )

    def check_slot(self) -> None:
        assert self.conn is not None
        try:
            self.lag = slot_lag(self.conn, self.slot)
        except SourceError:
            if self.conn.broken:
                raise
            raise SourceError(
                f"replication slot {self.slot!r} is gone from the source: {SLOT_GONE}", SLOT_GONE_HINT
            ) from None
        if self.lag["wal_status"] == "lost":
            raise SourceError(
                f"the source removed WAL that replication slot {self.slot!r} still needed (max_slot_wal_keep_size)",
                "the stream cannot continue; a new full load is needed",
            )

    # ------------------------------------------------------------------------------- polling

    def type_name(self, oid: int, typmod: int) -> str:
        key = (oid, typmod)
        if key not in self.type_names:
            assert self.conn is not None
            row = self.conn.execute("SELECT pg_catalog.format_type(%s::oid, %s::int)", key).fetchone()
            self.type_names[key] = str(row[0]) if row and row[0] else f"type oid {oid}"
        return self.type_names[key]

    def column_facts(self, rel_id: int, column: str) -> tuple[str | None, bool | None]:
        """The column's default expression and NOT NULL as the source catalog has them now (None, None if
        the column is gone again): what an added column gave the rows that existed before it."""
        assert self.conn is not None
        row = self.conn.execute(
            "SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attnotnull FROM pg_catalog.pg_attribute a "
            "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::oid AND a.attname = %s AND NOT a.attisdropped",
            (rel_id, column),
        ).fetchone()
        return (row[0], bool(row[1])) if row else (None, None)

    def poll(self) -> bool:
        """One peek: store the whole transactions it returned as one batch, then acknowledge.  Returns
        whether ``captured_through`` moved (False: nothing new was flushed for this slot)."""
        assert self.conn is not None
        try:
            rows = peek(self.conn, self.slot, self.publication, self.max_changes)
        except SourceError:
            if not self.conn.broken:
                self.check_slot()  # turn "does not exist" into the slot-dropped message
            raise
        if not rows:
            return False
        builder = _BatchBuilder(self.known, self.type_name, self.column_facts)
        ack = self.captured
        for unit in decode_transactions(rows, Decoder()):
            if isinstance(unit, LogicalMessage):
                ack = max(ack, unit.lsn)  # a heartbeat (ours or another stream's) or someone's message
                continue
            if unit.end_lsn <= self.durable:
                # Already in a durable batch (a crash came between writing it and advancing the slot):
                # never stored again, but its table definitions are the ones in force from here on.
                builder.known.update(builder.relations_of(unit))
                self.report.skipped_transactions += 1
            elif _has_rows(unit):
                if builder.transactions and not builder.fits(unit):
                    break  # a table's definition changed: the next batch starts with this transaction
                builder.add(unit)
            ack = max(ack, unit.end_lsn)
        batch = builder.batch(self.stream_id, self.next_seq) if builder.transactions else None
        if batch is not None:
            try:
                write_batch(self.store, self.prefix, batch)
            except AlreadyExists:
                raise StoreError(
                    f"change batch {batch.seq} of stream {self.stream_id} appeared while capture was writing it",
                    "another capture wrote to this stream; run only one per stream",
                ) from None
            self.durable = parse_lsn(batch.last_pos)
            self.last_seq, self.next_seq = batch.seq, batch.seq + 1
            r = self.report  # counted once durable, whatever happens to the acknowledgement
            r.batches += 1
            r.first_seq = batch.seq if r.first_seq is None else r.first_seq
            r.last_seq = batch.seq
            r.transactions += batch.transactions
            r.changes += batch.rows
            r.schema_changes += len(batch.schema_changes)
            tick("capture", parts=1, rows=batch.rows, note=f"captured through {batch.last_pos}")
        moved = ack > self.captured
        if moved or self.stale or builder.known != self.known:
            self.known = builder.known
            self.captured = max(self.captured, ack)
            self.write_progress()
        # Also when nothing moved: after a crash the slot may still be behind what progress.json records.
        advance(self.conn, self.slot, self.captured)
        if batch is not None:
            say(
                f"capture: batch {batch.seq}: {batch.transactions} transactions, {batch.rows} changes, "
                f"through {batch.last_pos}, lag {human_bytes(self.lag_bytes())}"
                + (f", {len(batch.schema_changes)} schema change(s)" if batch.schema_changes else "")
            )
        return moved

    def lag_bytes(self) -> int:
        return max(0, self.lag["current_lsn"] - self.captured)

    def write_progress(self) -> None:
        """Rewrite progress.json.  Written before the slot is advanced: it must never claim less than the
        slot has confirmed (a restart treats a slot ahead of it as tampering), and the table definitions
        it records must cover every durable batch."""
        assert self.conn is not None
        self.check_slot()
        doc = {
            "format": PROGRESS_FORMAT,
            "version": PROGRESS_VERSION,
            "stream_id": self.stream_id,
            "captured_through": format_lsn(self.captured),
            "last_batch_seq": self.last_seq,
            "last_batch_pos": format_lsn(self.durable) if self.last_seq is not None else None,
            "source_pos": format_lsn(self.lag["current_lsn"]),
            "lag_bytes": self.lag_bytes(),
            "retained_bytes": self.lag["retained_bytes"],
            "relations": [_relation_doc(r, self.type_names) for r in self.known.values()],
            "updated_at": utc_now(),
        }
        self.store.put_bytes(layout.join(self.prefix, PROGRESS_DOC), dump_document(doc))
        self.stale = False
        self.report.captured_through = doc["captured_through"]
        self.report.lag_bytes = doc["lag_bytes"]

    def heartbeat(self) -> int:
        assert self.conn is not None
        self.report.heartbeats += 1
        return emit_heartbeat(self.conn, self.stream_id)

    def run(
        self,
        *,
        follow: bool,
        until_pos: int | None,
        poll_interval: float,
        heartbeat_interval: float,
        stop: threading.Event,
    ) -> None:
        last_move = time.monotonic()
        last_beat: float | None = None
        horizon = None
        if not follow and until_pos is None:
            # One pass: what was flushed when it started.  Under a steady write load the stream never runs
            # dry, so "until nothing is left" would never end.
            assert self.conn is not None
            horizon = parse_lsn(self.conn.execute("SELECT pg_catalog.pg_current_wal_flush_lsn()::text").fetchone()[0])
        while not stop.is_set():
            # Poll before judging whether to stop: after a crash the first poll is what acknowledges the
            # re-peeked transactions and brings progress.json up to date, even when nothing is new.
            moved = self.poll()
            if (until_pos is not None and self.captured >= until_pos) or (
                horizon is not None and self.captured >= horizon
            ):
                return
            if moved:
                last_move = time.monotonic()
                continue  # more may be waiting
            now = time.monotonic()
            if until_pos is not None:
                # Caught up with what is flushed but short of until_pos: the WAL up to it may hold nothing for
                # this slot, and a heartbeat past it is what lets captured_through get there.  Paced, in case
                # until_pos lies in the future.
                if last_beat is None or now - last_beat >= poll_interval:
                    self.heartbeat()
                    last_beat = now
                    continue
            elif not follow:
                return
            elif now - max(last_move, last_beat or 0.0) >= heartbeat_interval:
                self.heartbeat()  # an idle slot must not pin WAL: acknowledge a fresh position
                last_beat = now
                continue
            stop.wait(poll_interval)

    def lost(self, exc: BaseException) -> Reason | None:
        """A broken connection is a lost source; another connection error is said as one."""
        if self.conn is not None and self.conn.broken:
            return Reason("lost", "connection lost")
        if isinstance(exc, psycopg.OperationalError):
            raise ConnectError(
                f"lost the connection to the source {self.task.source.redacted()} ({exc})",
                "rerun bulkmig capture; it resumes where the bucket says",
            ) from None
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # also releases the advisory lock


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
    key = _advisory_key(slot)
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

    def session(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> _Session:
        return _Session(task, store, report, max_changes)

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
