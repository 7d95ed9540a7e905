"""One connection's worth of MySQL/MariaDB capture: state from the bucket, then the binlog read into batches.

:meth:`CaptureSession.open` recovers the stream (``stream.json``, ``progress.json``, the last batch) and takes the
stream's lock; :meth:`CaptureSession.run` reads events, turns row events into changes (:mod:`.changes`), hands
statements to :mod:`.ddl`, and stores whole transactions (:mod:`.batching`), then ``progress.json``.  Why it is
shaped so: :mod:`.capture`.
"""

from __future__ import annotations

import contextlib
import threading
import time
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

from bulkmig.cdc.batch import list_batches, read_manifest, write_captured_batch
from bulkmig.cdc.driver import ReadLimits
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.cdc.stream import (
    PROGRESS_DOC,
    PROGRESS_FORMAT,
    PROGRESS_VERSION,
    no_stream_error,
    read_progress,
    stream_prefix,
)
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.log import human_bytes, say
from bulkmig.core.manifest import dump_document, utc_now
from bulkmig.core.store import Store
from bulkmig.engines.mysql import ddl
from bulkmig.engines.mysql.batching import BatchBuilder, Txn, utc
from bulkmig.engines.mysql.binlog import (
    ER_MASTER_FATAL_ERROR_READING_BINLOG,
    HARMLESS_EVENT_TYPES,
    BinlogPos,
    binary_logs,
    binlog_status,
    check_binlog_settings,
    check_not_purged,
    control_connection,
    error_code,
    open_reader,
    query_rows,
)
from bulkmig.engines.mysql.changes import (
    POSTGRESQL_FORMS,
    TableConverter,
    drift,
    prepare_binlog_columns,
    value_forms_for,
)
from bulkmig.engines.mysql.ddl import apply_change
from bulkmig.engines.mysql.stream import TableDef, lock_name, read_own_stream, reader_server_id, stream_id_for

# A batch is written at the latest this long after its first transaction was read.
FLUSH_SECONDS = 1.0
# progress.json is rewritten at most this often while the stream is idle.
PROGRESS_SECONDS = 2.0


class CaptureSession:
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
        self.txn: Txn | None = None
        self.group: BinlogPos | None = None  # where the open transaction (binlog event group) began
        self.builder = BatchBuilder()
        self.source: BinlogPos | None = None
        self.lag_seconds: float | None = None
        self.warned: set[tuple[str, str]] = set()

    # ---------------------------------------------------------------------------- recovery

    def open(self) -> None:
        stream = read_own_stream(self.task, self.store)
        if stream is None:
            raise no_stream_error(self.store, self.stream_id, "writes the stream's start position")
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
        got = query_rows(self.ctl, "SELECT GET_LOCK(%s, 0)", (lock_name(self.stream_id),))
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
                apply_change(self.defs, change)
        self.converters = {k: self.converter(d) for k, d in self.defs.items()}
        self.progress_at = parse_lsn(progress["captured_through"]) if progress else 0
        self.captured = max(self.durable, self.progress_at)
        self.stale = progress is None or progress.get("last_batch_seq") != self.last_seq
        start = BinlogPos.from_ordinal(self.basename, self.captured)
        self.file, self.at = start.file, start.pos
        check_not_purged(self.ctl, start, "capture's position")
        self.report.captured_through = start.lsn
        say(f"capture: stream {self.stream_id} at {start}; {len(seqs)} batch(es) so far")

    def converter(self, d: TableDef) -> TableConverter:
        return TableConverter(d.schema, d.table, d.columns, self.settings, self.value_forms)

    # ------------------------------------------------------------------------------ reading

    def open_reader(self) -> None:
        server_id = int(self.stream.get("reader_server_id") or reader_server_id(self.stream_id))
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
            self.txn, self.group = Txn(), start
        elif isinstance(ev, TableMapEvent):
            self.table_map(ev, start)
        elif isinstance(ev, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
            self.rows(ev)
        elif isinstance(ev, XidEvent):
            self.commit(start, here, ev.xid, ev.timestamp)
        elif isinstance(ev, QueryEvent):
            ddl.query(self, ev, start, here)
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
            self.txn, self.group = Txn(), BinlogPos(self.file, self.at)
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
            self.builder.add(txn, self.defs, commit, end, xid & 0x7FFFFFFFFFFFFFFF, utc(ts))

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
            self.builder = BatchBuilder()
            self.report.count_batch(batch)
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

    def run(self, limits: ReadLimits, stop: threading.Event) -> None:
        """Read until ``stop``, ``until_pos`` or (without ``follow``) the source's position at the start.  The
        binlog is pushed to the reader and an idle source pins nothing, so the intervals are not used."""
        goal = limits.until_pos
        if goal is None and not limits.follow:
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
