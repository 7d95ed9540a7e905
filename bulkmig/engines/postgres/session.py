"""One connection's worth of PostgreSQL capture: state from the bucket, then the slot read into batches.

Two readers of the slot feed one batching and acknowledgement path (:meth:`CaptureSession.take`,
:meth:`CaptureSession.commit`):

* **stream** (the default, ``settings.capture_read: stream``): ``START_REPLICATION`` on a
  ``replication=database`` connection (``replication.py``).  The walsender decodes the WAL once, from the
  slot's confirmed position, and keeps streaming; capture confirms with a standby status update.
* **peek** (``settings.capture_read: peek``): ``pg_logical_slot_peek_binary_changes`` polls on an ordinary
  connection, confirmed with ``pg_replication_slot_advance``.  Every poll re-decodes from the slot's
  restart point, which a long open transaction on the source pins, so it slows down quadratically under
  one; it is kept for a server or pooler that offers no WAL sender (``max_wal_senders = 0``, a proxy
  that does not speak the replication protocol).

The exactly-once rules are the same for both (DESIGN §5, §6):

* **Store, then confirm.**  A batch is written (its ``batch.json`` last and only once), then
  ``progress.json``, and only then is the slot told (``confirm``): the flush position sent to the server
  is never past what ``progress.json`` records.  Killed anywhere in between, the next session reads again
  from the slot's confirmed position and skips the transactions whose commit end LSN is at or before the
  last batch's ``last_pos``: nothing is written twice, nothing is lost.  In stream mode a
  :class:`Writer` thread does the writing behind the reader, and ``progress.json`` (so the slot's
  position) moves about once a second rather than per batch; the order of the three steps is the same.
* **Whole transactions, one column list per table**: :mod:`bulkmig.engines.postgres.batching`.  Drift is
  judged against the definitions this stream last stored (``stream.json``, then ``progress.json``).
* **WAL hygiene.**  After ``heartbeat_interval`` without progress a ``bulkmig`` logical message is emitted;
  it comes back through the slot and moves ``captured_through``.  In stream mode a keepalive that asks for
  a reply (the server shutting down, or silent for half of ``wal_sender_timeout``) also moves it to the
  keepalive's position once everything before it is durable: the server has sent every transaction that
  commits before that position.
* **One writer per stream**: a session-level advisory lock on the source, released by the server when
  the connection dies (even after kill -9).
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from dataclasses import replace
from typing import Any

import psycopg

from bulkmig.cdc.batch import list_batches, read_manifest, write_captured_batch
from bulkmig.cdc.driver import CaptureReport, ReadLimits
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.cdc.stream import (
    FIRST_SEQ,
    PROGRESS_DOC,
    PROGRESS_FORMAT,
    PROGRESS_VERSION,
    no_stream_error,
    read_progress,
    read_stream,
    stream_names,
    stream_prefix,
)
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import ConfigError, ConnectError, SourceError
from bulkmig.core.log import human_bytes, say
from bulkmig.core.manifest import dump_document, utc_now
from bulkmig.core.retry import Reason
from bulkmig.core.store import Store
from bulkmig.engines.postgres.batching import BatchBuilder, has_rows, relations_of
from bulkmig.engines.postgres.commits import Commit, Writer, collect_now, collector_paused
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.pgoutput import Column, LogicalMessage, Relation
from bulkmig.engines.postgres.pgoutput_decoder import Decoder
from bulkmig.engines.postgres.pgoutput_transactions import Transaction, TransactionAssembler, decode_transactions
from bulkmig.engines.postgres.replication import ReplicationStream, StreamEnded, open_replication, start_replication
from bulkmig.engines.postgres.slot import advance, emit_heartbeat, peek, slot_lag
from bulkmig.transform.changes import transform_batch

SLOT_GONE = "the slot was dropped"
SLOT_GONE_HINT = "the stream cannot continue; a new full load is needed (bulkmig cleanup, then bulkmig plan --force)"
# Stream mode: a standby status update at least this often (the server's wal_sender_timeout is 60 s by
# default), asking for a reply; a server silent for SILENT_LIMIT after such a request is taken as lost.
STATUS_INTERVAL = 10.0
SILENT_LIMIT = 30.0
# Stream mode: progress.json (and so the slot's confirmed position) moves at most this often, and at the end.
PROGRESS_INTERVAL = 1.0
# The longest the stream loop blocks on the socket, so that `stop` is seen promptly.
MAX_WAIT = 0.2


def stream_id_for(slot_name: str) -> str:
    return f"pg-{slot_name}"


def advisory_key(slot: str) -> int:
    """A stable signed 64-bit advisory lock key for 'the capture of this slot'."""
    return int.from_bytes(hashlib.sha256(f"bulkmig capture {slot}".encode()).digest()[:8], "big", signed=True)


def relation_doc(rel: Relation, type_names: dict[tuple[int, int], str]) -> dict[str, Any]:
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


def relation_from_doc(doc: dict[str, Any]) -> Relation:
    columns = tuple(
        Column(c["name"], int(c["type_oid"]), int(c["typmod"]), 1 if c["key"] else 0) for c in doc["columns"]
    )
    return Relation(int(doc["rel_id"]), doc["schema"], doc["table"], doc["identity"], columns)


class CaptureSession:
    """State recovered from the bucket in :meth:`open`, then the slot read until :meth:`run` returns."""

    def __init__(self, task: Task, store: Store, report: CaptureReport, max_changes: int) -> None:
        self.task = task
        self.store = store
        self.report = report
        self.max_changes = max_changes
        self.slot, self.publication = stream_names(task)
        self.stream_id = stream_id_for(self.slot)
        self.prefix = stream_prefix(self.stream_id)
        self.type_names: dict[tuple[int, int], str] = {}
        self.added_columns: dict[tuple[object, ...], object] = {}  # add-column rules compiled per table shape
        self.conn: psycopg.Connection | None = None  # SQL: lock, catalog, slot state, heartbeats
        self.stream: ReplicationStream | None = None  # stream mode: the walsender's COPY BOTH
        self.writer: Writer | None = None  # stream mode: makes batches durable behind the reader
        self.known: dict[int, Relation] = {}  # each table's definition as of the last durable batch
        self.durable = 0  # last_pos of the last batch: every transaction ending at or before it is stored
        self.captured = 0  # captured_through: everything before it is stored or held nothing for us
        self.acked = 0  # the flush position the slot has been (or is being) told
        self.pending_ack = 0  # where captured_through may move once the batch being built is durable
        self.reported = 0  # stream mode: the write position last reported to the walsender
        self.last_seq: int | None = None
        self.next_seq = FIRST_SEQ
        self.lag: Any = None
        self.stale = False  # progress.json lags behind the batches (a crash came between them)
        self.builder = BatchBuilder({}, self.type_name, self.column_facts)
        self.last_status = time.monotonic()  # stream mode: when the walsender last heard from us

    # ---------------------------------------------------------------------------- recovery

    def open(self) -> None:
        stream = read_stream(self.store, self.stream_id)
        if stream is None:
            raise no_stream_error(self.store, self.stream_id, "creates the slot and the stream")
        if stream.get("publication") != self.publication:
            raise ConfigError(
                f"stream {self.stream_id} reads publication {stream.get('publication')!r}, the task says "
                f"{self.publication!r}",
                "restore settings.publication_name to the stream's",
            )
        self.conn = conn = connect(self.task.source, autocommit=True)
        key = advisory_key(self.slot)
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
        self.known = {int(d["rel_id"]): relation_from_doc(d) for d in docs}
        for d in docs:
            for c in d["columns"]:
                if c.get("type"):
                    self.type_names[(int(c["type_oid"]), int(c["typmod"]))] = c["type"]
        self.captured = max(self.durable, parse_lsn(progress["captured_through"]) if progress else 0)
        self.pending_ack = self.captured
        self.stale = progress is None or progress.get("last_batch_seq") != self.last_seq
        confirmed = self.lag["confirmed_flush_lsn"] or 0
        if confirmed > self.captured:
            # Only this loop advances the slot, and only after progress.json says so: someone else moved it.
            raise SourceError(
                f"replication slot {self.slot!r} is at {format_lsn(confirmed)}, past everything stream "
                f"{self.stream_id} stored ({format_lsn(self.captured)}): changes in between may be missing",
                "something else advanced or consumed the slot; a new full load is needed",
            )
        # Until the first commit step the slot is told nothing new: with a stale progress.json the
        # definitions of the re-read transactions must be stored before the slot moves past them.
        self.acked = self.reported = confirmed
        self.builder = BatchBuilder(self.known, self.type_name, self.column_facts)
        self.report.captured_through = format_lsn(self.captured)
        self.report.lag_bytes = self.lag_bytes()
        mode = "streaming" if self.task.settings.capture_read == "stream" else "peeking"
        say(
            f"capture: stream {self.stream_id} (slot {self.slot}, publication {self.publication}) at "
            f"{format_lsn(self.captured)}; {len(seqs)} batch(es) so far; {mode}"
        )
        if self.task.settings.capture_read == "stream":
            repl = open_replication(self.task.source)
            try:
                self.stream = start_replication(repl, self.slot, self.publication)
            except BaseException:
                repl.close()
                raise
            self.writer = Writer(
                self.persist, self.write_progress, self.acked if self.stale else self.captured, PROGRESS_INTERVAL
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

    # ------------------------------------------------------------------------- the source's catalog

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

    # ------------------------------------------------------------------ batching and acknowledging

    def take(self, unit: Transaction | LogicalMessage) -> None:
        """One whole transaction (or stand-alone message) off the slot, in stream order."""
        if unit.__class__ is LogicalMessage:
            # a heartbeat (ours or another stream's) or someone's message: nothing to store
            self.pending_ack = max(self.pending_ack, unit.lsn)  # type: ignore[union-attr]
            return
        txn: Transaction = unit  # type: ignore[assignment]
        builder = self.builder
        if txn.end_lsn <= self.durable:
            # Already in a durable batch (a crash came between writing it and confirming it): never
            # stored again, but its table definitions are the ones in force from here on.
            builder.known.update(relations_of(txn))
            self.report.skipped_transactions += 1
        elif has_rows(txn):
            used = relations_of(txn)
            if builder.transactions and not builder.fits(used):
                self.commit()  # a table's definition changed: the next batch starts with this transaction
                builder = self.builder
            builder.add(txn, used)
        if txn.end_lsn > self.pending_ack:
            self.pending_ack = txn.end_lsn

    @property
    def pending(self) -> bool:
        """Something taken is not yet handed to :meth:`commit`: rows, a position, definitions to record."""
        return bool(
            self.builder.transactions
            or self.pending_ack > self.captured
            or self.stale
            or self.builder.known != self.known
        )

    def commit(self, keepalive: int = 0, *, urgent: bool = False) -> None:
        """Hand what was taken over to be made durable (the batch, then ``progress.json``); the slot is
        confirmed once it is (:meth:`confirm_done`).  ``keepalive``: a position the server said it has sent
        everything before (stream mode, between transactions), which ``captured_through`` may move to."""
        step = self.step(keepalive, urgent)
        if self.writer is not None:
            self.writer.submit(step, self.keep_alive)
        else:
            self.persist(step)  # peeking: every step recorded, then the slot advanced
            if step.progress:
                self.write_progress(step)
            self.confirm(step.captured)

    def step(self, keepalive: int = 0, urgent: bool = False) -> Commit:
        """What was taken, as a :class:`Commit`; the session's state moves on as if it were durable."""
        builder = self.builder
        batch = builder.batch(self.stream_id, self.next_seq) if builder.transactions else None
        if batch is not None:
            self.durable = parse_lsn(batch.last_pos)
            self.last_seq, self.next_seq = batch.seq, batch.seq + 1
        ack = max(self.pending_ack, keepalive)
        progress = ack > self.captured or self.stale or builder.known != self.known
        if progress:
            self.known = builder.known
            self.captured = max(self.captured, ack)
            self.stale = False
        self.builder = BatchBuilder(self.known, self.type_name, self.column_facts)
        return Commit(batch, progress, self.captured, self.last_seq, self.durable, self.known, urgent)

    def persist(self, step: Commit) -> None:
        """Write the step's batch (its ``batch.json`` last).  On the writer thread in stream mode, in order."""
        batch = step.batch
        if batch is None:
            return
        # DMS masking and add-column rules, applied before the batch leaves this host (bulkmig.transform).
        batch = transform_batch(batch, self.task.mappings, self.added_columns)
        write_captured_batch(self.store, self.prefix, batch)
        self.report.count_batch(batch)
        say(
            f"capture: batch {batch.seq}: {batch.transactions} transactions, {batch.rows} changes, "
            f"through {batch.last_pos}, lag {human_bytes(max(0, self.lag['current_lsn'] - step.captured))}"
            + (f", {len(batch.schema_changes)} schema change(s)" if batch.schema_changes else "")
        )
        if not gc.isenabled():
            step.batch = None
            del batch  # the batch's rows go now; then a cheap collection of the young (collector_paused)
            collect_now()

    def confirm(self, position: int) -> None:
        """Tell the slot that everything before ``position`` is stored (``progress.json`` says so already):
        the server may recycle that WAL and will not send it again."""
        self.acked = max(self.acked, position)
        if self.stream is not None:
            self.send_status()
        else:
            assert self.conn is not None
            # Also when nothing moved: after a crash the slot may still be behind what progress.json records.
            advance(self.conn, self.slot, position)

    def confirm_done(self) -> None:
        """Stream mode: confirm what the writer has finished, if that is more than the slot was told."""
        assert self.writer is not None
        self.writer.check()
        if self.writer.done > self.acked:
            self.confirm(self.writer.done)

    def send_status(self, *, reply: bool = False) -> None:
        assert self.stream is not None
        self.reported = max(self.reported, self.pending_ack, self.acked)
        self.stream.send_status(self.reported, self.acked, reply=reply)
        self.last_status = time.monotonic()

    def keep_alive(self) -> None:
        """While the reader waits for the writer: a status update now and then, so that the walsender
        (wal_sender_timeout) does not take the silence for a dead client."""
        if self.stream is not None and time.monotonic() - self.last_status >= STATUS_INTERVAL:
            self.send_status()

    def lag_bytes(self) -> int:
        return max(0, self.lag["current_lsn"] - self.captured)

    def write_progress(self, step: Commit) -> None:
        """Rewrite progress.json.  Written before the slot is confirmed: it must never claim less than the
        slot has confirmed (a restart treats a slot ahead of it as tampering), and the table definitions
        it records must cover every durable batch."""
        assert self.conn is not None
        self.check_slot()
        lag = max(0, self.lag["current_lsn"] - step.captured)
        doc = {
            "format": PROGRESS_FORMAT,
            "version": PROGRESS_VERSION,
            "stream_id": self.stream_id,
            "captured_through": format_lsn(step.captured),
            "last_batch_seq": step.last_seq,
            "last_batch_pos": format_lsn(step.durable) if step.last_seq is not None else None,
            "source_pos": format_lsn(self.lag["current_lsn"]),
            "lag_bytes": lag,
            "retained_bytes": self.lag["retained_bytes"],
            "relations": [relation_doc(r, self.type_names) for r in step.known.values()],
            "updated_at": utc_now(),
        }
        self.store.put_bytes(layout.join(self.prefix, PROGRESS_DOC), dump_document(doc))
        self.report.captured_through = doc["captured_through"]
        self.report.lag_bytes = lag

    def heartbeat(self) -> int:
        assert self.conn is not None
        self.report.heartbeats += 1
        return emit_heartbeat(self.conn, self.stream_id)

    def flushed(self) -> int:
        """The source's WAL flush position: what a one-pass capture reads up to."""
        assert self.conn is not None
        return parse_lsn(self.conn.execute("SELECT pg_catalog.pg_current_wal_flush_lsn()::text").fetchone()[0])

    # ------------------------------------------------------------------------------- reading

    def run(self, limits: ReadLimits, stop: threading.Event) -> None:
        """Read until ``stop``, until ``captured_through`` reaches ``until_pos``, or (``follow=False``
        without ``until_pos``) after one pass over what the source had flushed when this began."""
        if not limits.follow and limits.until_pos is None:
            # One pass: what was flushed when it started.  Under a steady write load the stream never runs dry,
            # so "until nothing is left" would never end.
            limits = replace(limits, horizon=self.flushed())
        if self.stream is not None:
            self.run_stream(limits, stop)
        else:
            self.run_peek(limits, stop)

    def run_stream(self, limits: ReadLimits, stop: threading.Event) -> None:
        """Stream mode.  A batch is committed when it holds ``max_changes`` changes, when the oldest thing
        taken has waited ``poll_interval``, and when the pass is over; the walsender is answered when it
        asks, told our write position when it pings past it (so it stops pinging), and sent a status
        update every ``STATUS_INTERVAL``."""
        stream = self.stream
        assert stream is not None
        # locals, read on every pass of the loop below
        until_pos, horizon, poll_interval = limits.until_pos, limits.horizon, limits.poll_interval
        decode = Decoder(binary=False).decode
        assembler = TransactionAssembler()
        feed, take = assembler.feed, self.take
        max_changes = self.max_changes
        now = time.monotonic()
        last_move, last_beat = now, None
        asked_at: float | None = None  # when a status update asked the server for a reply
        since: float | None = None  # when the oldest thing not yet committed was taken
        # The highest position the stream itself has shown: a unit's end, a keepalive between transactions.
        # A one-pass ends on it, not on pending_ack: after a crash pending_ack starts at the durable batch's end,
        # and the slot has yet to send again what lies before it (those transactions are skipped, and counted).
        streamed = 0
        captured = self.captured
        with collector_paused():
            while True:
                if stop.is_set():
                    break
                wait = MAX_WAIT if since is None else max(0.0, min(MAX_WAIT, since + poll_interval - now))
                items = stream.read(wait)
                for item in items:
                    if item.__class__ is tuple:
                        lsn, payload = item  # type: ignore[misc]
                        unit = feed(decode(payload, lsn))
                        if unit is not None:
                            take(unit)
                            streamed = max(streamed, unit.lsn if unit.__class__ is LogicalMessage else unit.end_lsn)  # type: ignore[union-attr]
                            if self.builder.rows >= max_changes:
                                self.commit()
                        continue
                    wal_end, reply = item  # type: ignore[misc]
                    if not assembler.in_transaction and wal_end > streamed:
                        streamed = wal_end
                    if reply:
                        if not assembler.in_transaction:
                            self.commit(keepalive=wal_end, urgent=True)  # confirmed once durable, a moment later
                        self.send_status()
                    elif wal_end > self.reported:
                        self.reported = wal_end
                        self.send_status()
                self.confirm_done()
                now = time.monotonic()
                if items:
                    asked_at = None
                pending = self.pending
                if not pending:
                    since = None  # committed meanwhile (a full batch)
                elif since is None:
                    since = now
                reached = horizon is not None and streamed >= horizon
                if pending and (
                    reached
                    or now - since >= poll_interval  # type: ignore[operator]
                    or (until_pos is not None and self.pending_ack >= until_pos)
                ):
                    self.commit()
                    since = None
                if self.captured > captured:
                    captured, last_move = self.captured, now
                if until_pos is not None and self.captured >= until_pos:
                    break
                if reached and since is None:
                    break
                if until_pos is not None:
                    # Caught up with what is flushed but short of until_pos: the WAL up to it may hold nothing
                    # for this slot, and a heartbeat past it is what lets captured_through get there.  Paced,
                    # in case until_pos lies in the future.
                    if not items and (last_beat is None or now - last_beat >= poll_interval):
                        self.heartbeat()
                        last_beat = now
                elif limits.follow and now - max(last_move, last_beat or 0.0) >= limits.heartbeat_interval:
                    self.heartbeat()  # an idle slot must not pin WAL: a fresh position to confirm
                    last_beat = now
                if now - self.last_status >= STATUS_INTERVAL:
                    self.send_status(reply=True)
                    asked_at = asked_at or now
                    collect_now()  # an idle stream commits nothing: collect here too
                if asked_at is not None and now - asked_at >= SILENT_LIMIT:
                    raise StreamEnded(
                        f"the source sent nothing on the replication stream of slot {self.slot!r} for "
                        f"{SILENT_LIMIT:.0f}s after being asked to",
                        "the connection is dead; capture reconnects",
                    )
            assert self.writer is not None
            self.writer.drain(self.step(), self.keep_alive)  # what is left, then progress.json: all recorded
            self.confirm_done()
            self.stream = None
            stream.finish()  # the last status update is processed before this returns

    def run_peek(self, limits: ReadLimits, stop: threading.Event) -> None:
        """Peek mode: one peek, one batch, one advance, then wait ``poll_interval`` if nothing moved."""
        last_move = time.monotonic()
        last_beat: float | None = None
        while not stop.is_set():
            # Poll before judging whether to stop: after a crash the first poll is what acknowledges the
            # re-peeked transactions and brings progress.json up to date, even when nothing is new.
            moved = self.poll()
            if (limits.until_pos is not None and self.captured >= limits.until_pos) or (
                limits.horizon is not None and self.captured >= limits.horizon
            ):
                return
            if moved:
                last_move = time.monotonic()
                continue  # more may be waiting
            now = time.monotonic()
            if limits.until_pos is not None:
                if last_beat is None or now - last_beat >= limits.poll_interval:
                    self.heartbeat()
                    last_beat = now
                    continue
            elif not limits.follow:
                return
            elif now - max(last_move, last_beat or 0.0) >= limits.heartbeat_interval:
                self.heartbeat()
                last_beat = now
                continue
            stop.wait(limits.poll_interval)

    def poll(self) -> bool:
        """One peek: store the whole transactions it returned, then acknowledge.  Returns whether
        ``captured_through`` moved (False: nothing new was flushed for this slot)."""
        assert self.conn is not None
        try:
            rows = peek(self.conn, self.slot, self.publication, self.max_changes)
        except SourceError:
            if not self.conn.broken:
                self.check_slot()  # turn "does not exist" into the slot-dropped message
            raise
        if not rows:
            return False
        before = self.captured
        for unit in decode_transactions(rows, Decoder(binary=False)):  # a fresh decoding context per peek
            self.take(unit)
        self.commit()
        return self.captured > before

    # ------------------------------------------------------------------------------- endings

    def lost(self, exc: BaseException) -> Reason | None:
        """A broken connection is a lost source; another connection error is said as one."""
        if isinstance(exc, StreamEnded):
            return Reason("lost", "connection lost")  # the server ended streaming: shutting down, or silent
        if (self.conn is not None and self.conn.broken) or (self.stream is not None and self.stream.broken):
            return Reason("lost", "connection lost")
        if isinstance(exc, psycopg.OperationalError):
            raise ConnectError(
                f"lost the connection to the source {self.task.source.redacted()} ({exc})",
                "rerun bulkmig capture; it resumes where the bucket says",
            ) from None
        return None

    def close(self) -> None:
        """Close without telling the slot anything more (a kill -9 would not either)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.stream is not None:
            self.stream.conn.close()
            self.stream = None
        if self.conn is not None:
            self.conn.close()  # also releases the advisory lock
