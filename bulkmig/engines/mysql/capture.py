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
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges, list_batches, read_manifest, write_captured_batch
from bulkmig.cdc.driver import CaptureReport
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.cdc.stream import (
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
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.log import human_bytes, say, tick
from bulkmig.core.manifest import dump_document, utc_now, validate_document
from bulkmig.core.store import AlreadyExists, Store
from bulkmig.engines.mysql import types
from bulkmig.engines.mysql.binlog import (
    ER_MASTER_FATAL_ERROR_READING_BINLOG,
    HARMLESS_EVENT_TYPES,
    BinlogPos,
    Statement,
    binary_logs,
    binlog_status,
    check_binlog_settings,
    check_not_purged,
    classify,
    control_connection,
    error_code,
    mysql_string,
    open_reader,
    query_rows,
    snapshot_position,
)
from bulkmig.engines.mysql.changes import (
    MYSQL_FORMS,
    POSTGRESQL_FORMS,
    ColumnSpec,
    TableConverter,
    drift,
    prepare_binlog_columns,
    value_forms_for,
)
from bulkmig.engines.postgres.sql import literal

STREAM_PREFIX = "mysql-"
# A batch is written at the latest this long after its first transaction was read.
FLUSH_SECONDS = 1.0
# progress.json is rewritten at most this often while the stream is idle.
PROGRESS_SECONDS = 2.0
# Rules whose literal default is already the PostgreSQL text (numbers, strings, dates): derived from
# types.RULES by logical type, so a rule added there (say another unsigned spelling) is covered here too.
_LITERAL_DEFAULT_LOGICAL = frozenset({"integer", "decimal", "float", "text", "date", "timestamp"})
_LITERAL_DEFAULT_RULES = frozenset(r.source for r in types.RULES if r.logical in _LITERAL_DEFAULT_LOGICAL)


def _lock_name(stream_id: str) -> str:
    return "bulkmig:" + hashlib.sha256(f"bulkmig capture {stream_id}".encode()).hexdigest()[:40]


def _reader_server_id(stream_id: str) -> int:
    """A stable replica server_id for the stream (two readers with one id would cut each other off)."""
    return 0x40000000 + int.from_bytes(hashlib.sha256(stream_id.encode()).digest()[:4], "big") % 0x3FFFFFFF


# ===================================================================================== stream documents


def stream_id_for(task: Task) -> str:
    return STREAM_PREFIX + stream_names(task)[0]


@dataclass
class TableDef:
    """One captured table as the stream knows it: source and target names, key, columns in binlog order."""

    schema: str
    table: str
    target_schema: str
    target_table: str
    key: list[str]  # source names of the primary key columns ([] = none)
    columns: list[ColumnSpec]

    def to_doc(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "table": self.table,
            "target_schema": self.target_schema,
            "target_table": self.target_table,
            "key": list(self.key),
            "columns": [c.to_doc() for c in self.columns],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TableDef:
        cols = [ColumnSpec.from_doc(c) for c in doc["columns"]]
        return cls(doc["schema"], doc["table"], doc["target_schema"], doc["target_table"], list(doc["key"]), cols)

    @property
    def qualname(self) -> str:
        return f"{self.schema}.{self.table}"


def _charsets(conn: Any, tables: list[Any]) -> dict[tuple[str, str, str], tuple[str | None, str]]:
    """(schema, table, column) → (CHARACTER_SET_NAME, DATA_TYPE) for the given model tables."""
    out: dict[tuple[str, str, str], tuple[str | None, str]] = {}
    for schema in sorted({t.schema for t in tables}):
        for table, column, charset, dtype in query_rows(
            conn,
            "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s",
            (schema,),
        ):
            out[(schema, str(table), str(column))] = (charset, str(dtype).lower())
    return out


def table_defs(conn: Any, tables: list[Any]) -> list[TableDef]:
    """The stream's table definitions from the plan's tables (``bulkmig.core.model.Table`` with target names and
    types set by conversion), with each text column's charset from the source catalog."""
    facts = _charsets(conn, tables)
    defs = []
    for t in tables:
        cols = []
        for c in t.columns:
            charset, dtype = facts.get((t.schema, t.name, c.name), (None, ""))
            cols.append(
                ColumnSpec(
                    name=c.name,
                    target=c.target,
                    column_type=c.source_type,
                    target_type=c.target_type or c.source_type,
                    charset=charset,
                    nullable=c.nullable,
                    is_json=c.logical_type == "json" or dtype == "json",
                    generated=c.generated,
                )
            )
        target_schema, target_table = t.target_qualified
        defs.append(TableDef(t.schema, t.name, target_schema, target_table, list(t.primary_key), cols))
    return defs


def _settings_doc(settings: types.TypeSettings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in types.TypeSettings.__dataclass_fields__}


def start_stream(
    task: Task,
    tables: list[Any],
    position: dict[str, Any],
    conn: Any | None = None,
    *,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``stream.json`` for a stream that starts at ``position`` (``plan.snapshot`` of a MySQL plan:
    ``binlog_file``, ``binlog_pos``, ``gtid_set``) and captures ``tables`` (the plan's tables).

    Call it from plan, inside the snapshot, or let the first ``capture`` call it from plan.json.  Checks the
    binlog settings unless the caller already did on ``conn`` and passes what the check returned as
    ``facts`` (the check reads server variables and grants: once per start is enough); refuses a bucket
    that already holds this stream.  Returns the document."""
    from bulkmig.engines.mysql.source import type_settings

    stream_id = stream_id_for(task)
    store = bucket_store(task)
    existing = read_stream(store, stream_id)
    if existing is not None:
        raise SourceError(
            f"change stream {stream_id} already exists in the bucket ({store.url}/{stream_prefix(stream_id)}, "
            f"started at {existing.get('start_binlog')} on {existing.get('created_at')})",
            "remove it (bulkmig cleanup) or set settings.slot_name to a new name",
        )
    start = snapshot_position(position)
    if start is None:
        raise SourceError(
            "the plan recorded no binlog position (the binlog was off when it was made)",
            "turn on log_bin with binlog_format=ROW on the source, then plan again",
        )
    own = conn is None
    conn = conn or control_connection(task)
    try:
        if facts is None:
            facts = check_binlog_settings(conn, task.source.user)
        check_not_purged(conn, start, "the stream's start position")
        defs = table_defs(conn, tables)
    finally:
        if own:
            conn.close()
    if not defs:
        raise ConfigError("the plan selects no table, so there is nothing to capture", "fix the table mappings")
    settings = type_settings(task)
    value_forms = value_forms_for(task.target.engine)
    for d in defs:
        TableConverter(d.schema, d.table, d.columns, settings, value_forms)  # refuses an undecodable charset now
    doc = {
        "format": STREAM_FORMAT,
        "version": STREAM_VERSION,
        "stream_id": stream_id,
        "engine": "mysql",
        "slot": stream_id[len(STREAM_PREFIX) :],
        "names": "target",
        "value_forms": value_forms,
        "start_pos": start.lsn,
        "start_binlog": str(start),
        "basename": start.basename,
        "gtid_set": position.get("gtid_set"),
        "server_id": facts["server_id"],
        "server_uuid": facts["server_uuid"],
        "reader_server_id": _reader_server_id(stream_id),
        "type_settings": _settings_doc(settings),
        "tables": [d.to_doc() for d in defs],
        "source": task.source.redacted(),
        "task_name": task.name,
        "created_at": utc_now(),
    }
    key = layout.join(stream_prefix(stream_id), STREAM_DOC)
    validate_document(doc, "stream", key)
    try:
        store.put_bytes(key, dump_document(doc), if_absent=True)
    except AlreadyExists:
        raise SourceError(
            f"change stream {stream_id} was started by someone else meanwhile ({store.url}/{key})",
            "run plan once per task; set settings.slot_name to start another stream",
        ) from None
    say(f"capture: stream {stream_id} starts at {start} ({len(defs)} tables)")
    return doc


def start_stream_now(task: Task, tables: list[Any], start_position: str | None = None) -> dict[str, Any]:
    """``stream.json`` for ``migration_type: cdc``: ``tables`` (the selection as conversion names it), from
    ``start_position`` (``binlog.000042:1234``) or the server's current position."""
    conn = control_connection(task)
    try:
        # Checked before reading the position so a binlog that is off is reported with its fix.
        facts = check_binlog_settings(conn, task.source.user)
        now = binlog_status(conn)
        start = BinlogPos.parse(start_position) if start_position else now
        if start is None:
            raise SourceError("the source writes no binlog", "start the server with log_bin and binlog_format=ROW")
        position = {"binlog_file": start.file, "binlog_pos": start.pos, "gtid_set": None}
        return start_stream(task, tables, position, conn, facts=facts)
    finally:
        conn.close()


def read_own_stream(task: Task, store: Store) -> dict[str, Any] | None:
    """The stream's ``stream.json`` (None before it started); refuses a stream of another engine."""
    doc = read_stream(store, stream_id_for(task))
    if doc is not None and doc.get("engine") != "mysql":
        raise ConfigError(f"stream {doc.get('stream_id')} is not a MySQL stream", "check the task's source")
    return doc


# ========================================================================================= capture


@dataclass
class _Txn:
    """A group of binlog events being read: its changes, in binlog order."""

    rows: list[tuple[tuple[str, str], str, list[str | None], list[str | None] | None]] = field(default_factory=list)


class _Builder:
    """Whole transactions of one batch: per table one column list (target names), one ``seq`` over all."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], TableChanges] = {}
        self.schema_changes: list[dict[str, Any]] = []
        self.transactions = 0
        self.rows = 0
        self.first: BinlogPos | None = None
        self.last: BinlogPos | None = None
        self.last_commit: datetime | None = None
        self.started = 0.0

    def __bool__(self) -> bool:
        return self.transactions > 0

    def _unit(self, commit: BinlogPos, end: BinlogPos) -> None:
        if not self.transactions:
            self.first, self.started = commit, time.monotonic()
        self.transactions += 1
        self.last = end

    def add(
        self,
        txn: _Txn,
        defs: dict[tuple[str, str], TableDef],
        commit: BinlogPos,
        end: BinlogPos,
        xid: int,
        ts: datetime,
    ) -> None:
        self._unit(commit, end)
        self.last_commit = ts
        # Every row carries where its transaction's commit event STARTS (like PostgreSQL's commit LSN); the
        # batch's last_pos is where the last one ENDS.  Replay's snapshot check relies on it (binlog.in_snapshot).
        pos = commit.lsn
        for key, op, values, before in txn.rows:
            table = self.tables.get(key)
            if table is None:
                d = defs[key]
                table = self.tables[key] = TableChanges(
                    schema=d.target_schema,
                    table=d.target_table,
                    columns=[c.target for c in d.columns],
                    types=[c.target_type for c in d.columns],
                    key=[c.target for k in d.key for c in d.columns if c.name == k],
                    identity="d" if d.key else "f",
                )
            self.rows += 1
            table.rows.append(ChangeRow(op, pos, self.rows, xid, ts, values, [], before))

    def add_schema_change(self, change: dict[str, Any], commit: BinlogPos, end: BinlogPos) -> None:
        self._unit(commit, end)
        self.schema_changes.append(change)

    def batch(self, stream_id: str, seq: int) -> Batch:
        assert self.first is not None and self.last is not None
        return Batch(
            stream_id=stream_id,
            seq=seq,
            first_pos=self.first.lsn,
            last_pos=self.last.lsn,
            transactions=self.transactions,
            tables=list(self.tables.values()),
            schema_changes=self.schema_changes,
            created_at=utc_now(),
        )


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _pg_default(default: str | None, rule: str | None) -> str | None:
    """A MySQL literal default as the PostgreSQL literal replay adds the column with (None: no default)."""
    if default is None:
        return None
    if rule == "tinyint(1)" and default in ("0", "1", "'0'", "'1'"):
        return "true" if default.strip("'") == "1" else "false"
    if rule not in _LITERAL_DEFAULT_RULES:
        raise ValueError(default)
    if default.startswith("'"):
        return literal(mysql_string(default))
    return default


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?", re.I)


def _mysql_default(default: str | None) -> str | None:
    """A literal default as the MySQL literal replay adds the column with (a MySQL target takes the source's
    own): a string or a number; an expression (CURRENT_TIMESTAMP, a function) cannot be reproduced later."""
    if default is None or default.upper() == "NULL":
        return None
    if default.startswith("'") or _NUMBER.fullmatch(default):
        return default
    raise ValueError(default)


class _Session:
    """One connection's worth of capture: state recovered from the bucket, then the binlog read until told
    to stop.  ``captured`` only ever sits on a transaction boundary: everything before it is durable."""

    def __init__(self, task: Task, store: Store, report: Any, max_changes: int) -> None:
        from bulkmig.engines.mysql.source import type_settings

        self.task = task
        self.store = store
        self.report = report
        self.max_changes = max_changes
        self.stream_id = stream_id_for(task)
        self.prefix = stream_prefix(self.stream_id)
        self.settings = type_settings(task)
        self.value_forms = POSTGRESQL_FORMS  # a stream started before value forms existed holds PostgreSQL's
        self.ctl: Any = None
        self.reader: Any = None
        self.stream: dict[str, Any] = {}
        self.defs: dict[tuple[str, str], TableDef] = {}
        self.converters: dict[tuple[str, str], TableConverter] = {}
        self.basename = ""
        self.durable = 0  # ordinal: end of the last batch
        self.captured = 0  # ordinal: everything before it is stored or held nothing for the stream
        self.progress_at = 0  # captured as progress.json last said
        self.last_seq: int | None = None
        self.next_seq = 1
        self.stale = False
        self.file = ""  # where the reader stands: file and offset after the last event
        self.at = 0
        self.txn: _Txn | None = None
        self.group: BinlogPos | None = None  # where the open transaction (binlog event group) began
        self.builder = _Builder()
        self.source: BinlogPos | None = None
        self.lag_seconds: float | None = None
        self.warned: set[tuple[str, str]] = set()

    # ---------------------------------------------------------------------------- recovery

    def open(self) -> None:
        stream = read_own_stream(self.task, self.store)
        if stream is None:
            raise ConfigError(
                f"no change stream {self.stream_id} in {self.store.url}/cdc/",
                "start it first: bulkmig plan (full-load-and-cdc or cdc) writes the stream's start position",
            )
        self.stream = stream
        self.basename = self.stream["basename"]
        self.value_forms = str(stream.get("value_forms") or POSTGRESQL_FORMS)
        if value_forms_for(self.task.target.engine) != self.value_forms:
            raise ConfigError(
                f"change stream {self.stream_id} holds values for a {self.value_forms} target, the task's target "
                f"is {self.task.target.engine}",
                "point the task at the target the stream was started for, or start a new stream (bulkmig cleanup, "
                "then plan)",
            )
        self.ctl = control_connection(self.task)
        got = query_rows(self.ctl, "SELECT GET_LOCK(%s, 0)", (_lock_name(self.stream_id),))
        if not got or got[0][0] != 1:
            raise SourceError(
                f"another bulkmig capture is already running for stream {self.stream_id}",
                "run one capture per stream; stop the other one first",
            )
        facts = check_binlog_settings(self.ctl, self.task.source.user)
        if (
            self.stream.get("server_uuid")
            and facts["server_uuid"]
            and facts["server_uuid"] != self.stream["server_uuid"]
        ):
            raise SourceError(
                f"the source is now server {facts['server_uuid']}, the stream was started on "
                f"{self.stream['server_uuid']}: binlog positions of one server mean nothing on another",
                "point the task at the original server; after a failover a new full load is needed",
            )
        progress = read_progress(self.store, self.stream_id)
        seqs = list_batches(self.store, self.prefix)
        self.last_seq = seqs[-1] if seqs else None
        self.next_seq = seqs[-1] + 1 if seqs else 1
        self.durable = parse_lsn(self.stream["start_pos"])
        if seqs:
            self.durable = parse_lsn(str(read_manifest(self.store, self.prefix, seqs[-1])["last_pos"]))
        docs = (progress or self.stream)["tables"]
        self.defs = {(d["schema"], d["table"]): TableDef.from_doc(d) for d in docs}
        done = progress.get("last_batch_seq") if progress else None
        for seq in (s for s in seqs if done is None or s > done):  # batches whose drift progress.json lacks
            for change in read_manifest(self.store, self.prefix, seq).get("schema_changes", []):
                self._apply_change(change)
        self.converters = {k: self._converter(d) for k, d in self.defs.items()}
        self.progress_at = parse_lsn(progress["captured_through"]) if progress else 0
        self.captured = max(self.durable, self.progress_at)
        self.stale = progress is None or progress.get("last_batch_seq") != self.last_seq
        start = BinlogPos.from_ordinal(self.basename, self.captured)
        self.file, self.at = start.file, start.pos
        check_not_purged(self.ctl, start, "capture's position")
        self.report.captured_through = start.lsn
        say(f"capture: stream {self.stream_id} at {start}; {len(seqs)} batch(es) so far")

    def _converter(self, d: TableDef) -> TableConverter:
        return TableConverter(d.schema, d.table, d.columns, self.settings, self.value_forms)

    def _apply_change(self, change: dict[str, Any]) -> None:
        """Adopt a column added by a durable batch (the defs progress.json holds may predate it)."""
        key = (change.get("source_schema"), change.get("source_table"))
        d = self.defs.get(key)  # type: ignore[arg-type]
        if change.get("kind") != "column_added" or d is None:
            return
        if any(c.name == change["source_column"] for c in d.columns):
            return
        d.columns.append(
            ColumnSpec(
                name=change["source_column"],
                target=change["column"],
                column_type=change["column_type"],
                target_type=change["type"],
                charset=change.get("charset"),
                nullable=True,
                is_json=bool(change.get("is_json")),
            )
        )

    # ------------------------------------------------------------------------------ reading

    def open_reader(self) -> None:
        server_id = int(self.stream.get("reader_server_id") or _reader_server_id(self.stream_id))
        schemas = sorted({s for s, _ in self.defs})
        self.reader = open_reader(self.task, server_id, BinlogPos(self.file, self.at), schemas)

    def event(self) -> Any:
        """The next event (blocks at most about a heartbeat); a purged position becomes a clear error."""
        try:
            return self.reader.fetchone()
        except Exception as exc:
            if error_code(exc) == ER_MASTER_FATAL_ERROR_READING_BINLOG:
                here = BinlogPos(self.file, self.at)
                check_not_purged(self.ctl, here, "capture's position")
                raise SourceError(
                    f"the source refused to send the binlog from {here} ({exc.args[1] if len(exc.args) > 1 else exc})",
                    "a new full load is needed if the binlog was purged or reset",
                ) from None
            raise

    def handle(self, ev: Any) -> bool:
        """Take one event; returns True when it was a heartbeat (the source had nothing more to send)."""
        if isinstance(ev, HeartbeatLogEvent):
            return True
        start = BinlogPos(self.file, self.at)
        if isinstance(ev, RotateEvent):
            if BinlogPos(ev.next_binlog, 4).basename != self.basename:
                raise SourceError(
                    f"the binlog continues in {ev.next_binlog}, not a {self.basename}.* file: log_bin was changed",
                    "a new full load is needed",
                )
            self.file, self.at = ev.next_binlog, int(ev.position)
            return False
        if ev.packet.log_pos:
            self.at = int(ev.packet.log_pos)
        here = BinlogPos(self.file, self.at)
        if isinstance(ev, MariadbGtidEvent | GtidEvent):
            if self.txn is not None and self.txn.rows:
                raise SourceError(f"the binlog group before {start} ended without a commit", "report this")
            if isinstance(ev, MariadbGtidEvent) and ev.flags & 0xC0:
                self.stop(start, "an XA transaction", f"GTID {ev.gtid}")
            self.txn, self.group = _Txn(), start
        elif isinstance(ev, TableMapEvent):
            self.table_map(ev, start)
        elif isinstance(ev, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
            self.rows(ev)
        elif isinstance(ev, XidEvent):
            self.commit(start, here, ev.xid, ev.timestamp)
        elif isinstance(ev, QueryEvent):
            self.query(ev, start, here)
        elif isinstance(ev, XAPrepareEvent):
            self.stop(start, "an XA transaction", "XA PREPARE")
        elif isinstance(ev, NotImplementedEvent) and ev.event_type not in HARMLESS_EVENT_TYPES:
            self.stop(start, f"a binlog event of type {ev.event_type} that capture cannot read", "")
        return False

    def table_map(self, ev: Any, where: BinlogPos) -> None:
        key = (ev.schema, ev.table)
        conv = self.converters.get(key)
        if conv is None:
            return
        why = drift(conv.cols, ev.columns)
        if why:
            self.stop(where, f"rows of {ev.schema}.{ev.table} that do not fit its definition ({why})", "")
        prepare_binlog_columns(conv.cols, ev.columns)

    def rows(self, ev: Any) -> None:
        key = (ev.schema, ev.table)
        conv = self.converters.get(key)
        if conv is None:
            return
        if self.txn is None:
            self.txn, self.group = _Txn(), BinlogPos(self.file, self.at)
        out = self.txn.rows
        if isinstance(ev, UpdateRowsEvent):
            for r in ev.rows:
                before = conv.row(r["before_values"], r["before_none_sources"])
                out.append((key, "U", conv.row(r["after_values"], r["after_none_sources"]), before))
        elif isinstance(ev, DeleteRowsEvent):
            for r in ev.rows:
                old = conv.row(r["values"], r["none_sources"])
                out.append((key, "D", old, list(old)))
        else:
            for r in ev.rows:
                out.append((key, "I", conv.row(r["values"], r["none_sources"]), None))

    def commit(self, commit: BinlogPos, end: BinlogPos, xid: int, ts: int) -> None:
        txn, self.txn, self.group = self.txn, None, None
        if txn is not None and txn.rows:
            self.builder.add(txn, self.defs, commit, end, xid & 0x7FFFFFFFFFFFFFFF, _utc(ts))

    def query(self, ev: Any, start: BinlogPos, end: BinlogPos) -> None:
        schema = ev.schema.decode("utf-8", "replace") if isinstance(ev.schema, bytes) else str(ev.schema or "")
        st = classify(ev.query, schema)
        if st.kind == "begin":
            if self.txn is None:
                self.txn, self.group = _Txn(), start
            return
        if st.kind in ("commit", "rollback"):  # ROLLBACK ends a group whose non-transactional rows stayed
            self.commit(start, end, getattr(ev, "xid", 0) or 0, ev.timestamp)
            return
        if st.kind == "savepoint":
            return
        at = self.group or start  # where a restart re-reads this statement
        self.commit(start, start, 0, ev.timestamp)  # DDL commits what came before it (normally nothing)
        self.group = at
        captured = [t for t in st.tables if t in self.defs or (t[1] == "*" and any(s == t[0] for s, _ in self.defs))]
        schemas = {s for s, _ in self.defs}
        if st.kind == "xa":
            self.stop(start, st.why, st.text)
        elif st.kind == "dml":
            if schema in schemas or any(s.lower() in st.text.lower() for s in schemas):
                self.stop(start, st.why, st.text)
        elif st.kind == "truncate":
            if captured:
                txn = _Txn([(t, "T", [None] * len(self.defs[t].columns), None) for t in captured])
                self.builder.add(txn, self.defs, start, end, getattr(ev, "xid", 0) or 0, _utc(ev.timestamp))
        elif st.kind == "add_column" and captured:
            self.add_column(st, captured[0], start, end)
        elif st.kind == "create_table":
            for t in st.tables:
                if t in self.defs:
                    self.stop(start, f"re-creating captured table {t[0]}.{t[1]}", st.text)
                elif t[0] in schemas and t not in self.warned:
                    self.warned.add(t)
                    say(f"capture: table {t[0]}.{t[1]} was created on the source after the plan; it is not captured")
        elif st.kind in ("stop", "drop_schema") and (captured or (not st.tables and schema in schemas)):
            named = ", ".join(f"{s}.{t}" for s, t in captured) or f"database {schema}"
            self.stop(start, f"{st.why or 'a schema change'} ({named})", st.text)
        elif st.kind == "ignore" and captured:
            say(f"capture: {st.text[:120]!r} at {start} changes no rows; it is not applied to the target")
        self.group = None

    def add_column(self, st: Statement, key: tuple[str, str], start: BinlogPos, end: BinlogPos) -> None:
        """ADD COLUMN of a nullable column at the end: the batches before it are closed, the next batch
        carries the change (replay adds the column before that batch's rows), the definition grows."""
        from bulkmig.config.names import decide

        d = self.defs[key]
        assert st.column and st.column_type
        is_json = types.parse_column_type(st.column_type).name == "json"
        mapping = types.map_column(
            st.column_type, table=d.table, column=st.column, is_json=is_json, settings=self.settings
        )
        mysql = self.value_forms == MYSQL_FORMS
        try:
            if mysql:
                default = _mysql_default(st.default)
            else:
                default = _pg_default(st.default, mapping.rule.source if mapping.rule else None)
        except ValueError:
            self.stop(start, f"a column added to {d.qualname} with a DEFAULT replay cannot reproduce", st.text)
        charset = st.charset
        if charset is None and mapping.logical_type == "text":
            rows = query_rows(
                self.ctl,
                "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s AND COLUMN_NAME = %s",
                (d.schema, d.table, st.column),
            )
            charset = rows[0][0] if rows and rows[0][0] else None
        names = decide(
            "mysql",
            d.schema,
            {d.table: [*(c.name for c in d.columns), st.column]},
            [],
            self.task.settings.identifiers,
            self.task.mappings,
        )
        target = names.column(d.table, st.column) if st.column in names.table(d.table).columns else None
        if target is None:
            say(f"capture: column {st.column!r} added to {d.qualname} is removed by the table mappings")
            target = st.column
        # Rows before the change go in batches of their own (one column list per table); until the batch
        # holding the change is durable, a restart reads the statement again (from the group's start).
        self.flush(upto=self.group or start)
        # A MySQL target gets the column as the source has it (its own type, in its character set).
        target_type = mapping.target_type
        if mysql:
            target_type = st.column_type + (f" character set {charset}" if charset and st.charset else "")
        spec = ColumnSpec(st.column, target, st.column_type, target_type, charset, True, is_json, False)
        d.columns.append(spec)
        self.converters[key] = self._converter(d)
        if self.reader is not None:  # the reader reads a table map once per table id: make it read the next one
            for table_id, table in list(self.reader.table_map.items()):
                if (table.schema, table.table) == key:
                    del self.reader.table_map[table_id]
        detail = f"column {target!r} added ({st.column_type} → {target_type})"
        change = {
            "schema": d.target_schema,
            "table": d.target_table,
            "kind": "column_added",
            "column": target,
            "type": target_type,
            "default": default,
            "not_null": False,
            "detail": detail + (f" default {default}" if default else ""),
            "statement": st.text[:1000],
            "source_schema": d.schema,
            "source_table": d.table,
            "source_column": st.column,
            "column_type": st.column_type,
            "charset": charset,
            "is_json": is_json,
        }
        self.builder.add_schema_change(change, start, end)
        say(f"capture: {d.qualname}: {detail} at {start}; replay adds it")

    def stop(self, where: BinlogPos, what: str, statement: str) -> None:
        """Store everything before ``where``, then stop naming what was found there (a restart reads it again)."""
        self.txn = None
        self.flush(upto=self.group or where)
        shown = f": {statement[:300]}" if statement else ""
        raise SourceError(
            f"capture stopped at {where}: the binlog holds {what}{shown}",
            "the stream cannot go past it (everything before it is captured: replay it); a new full load is "
            "needed (bulkmig cleanup, then plan) — change schemas before a migration or after cutover",
        )

    # ------------------------------------------------------------------------------ storing

    def flush(self, upto: BinlogPos | None = None) -> None:
        """Write the batch under construction, then progress.json; ``captured`` moves to the boundary the
        reader stands on, or to ``upto`` (the start of a statement not taken yet)."""
        b = self.builder
        if b:
            batch = b.batch(self.stream_id, self.next_seq)
            write_captured_batch(self.store, self.prefix, batch)
            self.durable = parse_lsn(batch.last_pos)
            self.last_seq, self.next_seq = batch.seq, batch.seq + 1
            self.builder = _Builder()
            r = self.report
            r.batches += 1
            r.first_seq = batch.seq if r.first_seq is None else r.first_seq
            r.last_seq = batch.seq
            r.transactions += batch.transactions
            r.changes += batch.rows
            r.schema_changes += len(batch.schema_changes)
            tick("capture", parts=1, rows=batch.rows, note=f"captured through {batch.last_pos}")
            if b.last_commit is not None:
                self.lag_seconds = max(0.0, (datetime.now(UTC) - b.last_commit).total_seconds())
            self.stale = True
        if upto is not None:
            self.captured = max(self.captured, self.durable, upto.ordinal)
        elif self.txn is None:
            self.captured = max(self.captured, BinlogPos(self.file, self.at).ordinal)
        else:
            self.captured = max(self.captured, self.durable)
        if self.stale or self.captured != self.progress_at:
            self.write_progress()
        if b:
            lag = human_bytes(self.report.lag_bytes or 0)
            seconds = f", {self.lag_seconds:.0f}s behind" if self.lag_seconds is not None else ""
            say(
                f"capture: batch {self.last_seq}: {b.transactions} transactions, {b.rows} changes, through "
                f"{BinlogPos.from_ordinal(self.basename, self.durable)}, lag {lag}{seconds}"
                + (f", {len(b.schema_changes)} schema change(s)" if b.schema_changes else "")
            )

    def lag_bytes(self) -> int | None:
        """Binlog bytes between what is captured and what the source has written."""
        try:
            self.source = binlog_status(self.ctl)
            if self.source is None:
                return None
            here = BinlogPos.from_ordinal(self.basename, self.captured)
            if self.source.file == here.file:
                return max(0, self.source.pos - here.pos)
            sizes = binary_logs(self.ctl)
            total, counting = 0, False
            for name, size in sizes:
                if name == here.file:
                    total, counting = size - here.pos, True
                elif name == self.source.file:
                    return total + self.source.pos
                elif counting:
                    total += size
            return total
        except Exception as exc:
            if error_code(exc) is None:
                raise
            return None

    def write_progress(self) -> None:
        lag = self.lag_bytes()
        here = BinlogPos.from_ordinal(self.basename, self.captured)
        doc = {
            "format": PROGRESS_FORMAT,
            "version": PROGRESS_VERSION,
            "stream_id": self.stream_id,
            "engine": "mysql",
            "captured_through": here.lsn,
            "captured_binlog": str(here),
            "last_batch_seq": self.last_seq,
            "last_batch_pos": format_lsn(self.durable) if self.last_seq is not None else None,
            "source_pos": self.source.lsn if self.source else None,
            "source_binlog": str(self.source) if self.source else None,
            "lag_bytes": lag,
            "lag_seconds": self.lag_seconds,
            "tables": [d.to_doc() for d in self.defs.values()],
            "updated_at": utc_now(),
        }
        self.store.put_bytes(layout.join(self.prefix, PROGRESS_DOC), dump_document(doc))
        self.progress_at = self.captured
        self.stale = False
        self.report.captured_through = doc["captured_through"]
        self.report.lag_bytes = lag

    # ------------------------------------------------------------------------------ the loop

    def run(
        self,
        *,
        follow: bool,
        until_pos: int | None,
        stop: threading.Event,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 10.0,
    ) -> None:
        """Read until ``stop``, ``until_pos`` or (without ``follow``) the source's position at the start.  The
        binlog is pushed to the reader and an idle source pins nothing, so the intervals are not used."""
        goal = until_pos
        if goal is None and not follow:
            now = binlog_status(self.ctl)  # one pass: what the source had written when it started
            goal = now.ordinal if now is not None else self.captured
        if self.stale:
            self.write_progress()
        if goal is not None and self.captured >= goal:
            return
        self.open_reader()
        last_progress = time.monotonic()
        while not stop.is_set():
            ev = self.event()
            if ev is None:
                raise SourceError("the source closed the binlog stream", "rerun bulkmig capture; it resumes")
            idle = self.handle(ev)
            if self.txn is not None:
                continue  # inside a transaction: nothing can be stored or acknowledged yet
            b = self.builder
            now = time.monotonic()
            if b and (b.rows >= self.max_changes or idle or now - b.started >= FLUSH_SECONDS):
                self.flush()
                last_progress = now
            elif not b:
                self.captured = max(self.captured, BinlogPos(self.file, self.at).ordinal)
                if self.captured != self.progress_at and (idle or now - last_progress >= PROGRESS_SECONDS):
                    self.write_progress()
                    last_progress = now
            if goal is not None and self.captured >= goal:
                self.flush()
                return
        if self.txn is None:
            self.flush()  # whole transactions read before the stop are stored

    def lost(self, exc: BaseException) -> None:
        """Only :mod:`bulkmig.core.retry`'s table decides what a lost binlog connection is."""
        return None

    def close(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                self.reader.close()
            self.reader = None
        if self.ctl is not None:
            with contextlib.suppress(Exception):
                self.ctl.close()  # also releases GET_LOCK
            self.ctl = None


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
        used = query_rows(conn, "SELECT IS_USED_LOCK(%s)", (_lock_name(stream_id),))
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

    def session(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> _Session:
        return _Session(task, store, report, max_changes)

    def status(self, task: Task) -> dict[str, Any]:
        return stream_status(task)

    def drop(self, task: Task, *, delete_from_bucket: bool = False) -> dict[str, Any]:
        return drop_stream(task, delete_from_bucket=delete_from_bucket)


DRIVER = _Driver()


__all__ = [
    "DRIVER",
    "TableDef",
    "drop_stream",
    "read_own_stream",
    "start_stream",
    "start_stream_now",
    "stream_id_for",
    "stream_status",
]
