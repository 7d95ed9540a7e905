"""`bulkmig replay`: the runner, its lock and gap checks, the position ledger, and replay status.


Exactly once (DESIGN §5): each batch is applied in ONE target transaction together with the update
of its row in ``bulkmig.replay_position``, so a crash or ``kill -9`` at any moment repeats no batch and
skips none.  A batch whose seq is at or below the stored one is skipped; a batch missing in the bucket
while a later one exists stops replay by name (it never jumps over it).  A session-level advisory lock
per stream keeps a second replayer out.  Every session runs ``session_replication_role = replica``, so
target triggers do not fire and foreign keys are not checked while rows arrive in bulk.  That is the PostgreSQL
target's side of a session (``engines/postgres/target/replay.py``: lock, position, the batch's transaction); another
target engine supplies its own (MySQL/MariaDB: ``engines/mysql/target/apply.py``), and everything else here —
modes, gaps, reconnects, snapshot marks, lag — is the same loop for every target.

Fast: changes are not replayed one statement each, and not touched one Python object each.  Per batch
and table (:mod:`bulkmig.cdc.net`, on the batch file's Arrow columns with pyarrow and numpy):

- Changes are compacted per key to one net change: absent (delete if present), a whole row (upsert; last
  image wins, partial updates merged in), an update of the target's row that never writes the columns no
  change sent (unchanged TOAST: never NULL, never a placeholder), or a row moved by a key change, whose
  unsent columns are read from its old key on the target before anything is deleted.  A key change is a
  delete and an insert, so a key updated to another key's old value, swaps and chains need no order.  A
  row deleted and inserted again is deleted first (a new row, as on the source).
- TRUNCATE: everything of that table before its last TRUNCATE in the batch is dropped, and all truncates
  of a batch run first, in one statement (as the source did: a table referenced by a foreign key can only
  be truncated together with its referrers).
- Each kind of net change is COPYed (pyarrow's CSV) into a temp table typed like the target's columns
  (``CREATE TEMP TABLE … AS SELECT <columns> FROM <target> LIMIT 0``: the target's types and domains, no
  NOT NULL, column names of our own), so COPY's input functions parse the source's text output exactly
  as a load would; then, per table: the moved rows are read, ``DELETE … USING``, ``UPDATE … FROM`` per
  set of unsent columns, ``INSERT … SELECT … ON CONFLICT (key) DO UPDATE`` for whole rows, ``INSERT`` of
  the moved rows.  Generated columns are never written, identity columns are inserted with ``OVERRIDING
  SYSTEM VALUE`` and never SET.
- Where that cannot be proven to give what applying the changes one by one gives, the table's changes of
  that batch are applied one by one, in order (``Applier.apply_bulk`` says when: key types whose equality
  is not equality of their text, key changes in a table with columns replay does not write).
  ``replay(set_based=False)`` applies everything that way: the reference the equivalence tests compare.
- Key-less tables (``key == []`` under REPLICA IDENTITY FULL, and no primary key on the target): no
  compaction; inserts are COPYed, each update/delete changes exactly one row matching the whole old
  row (``before``), compared through the types' text output.  Correct rather than fast.

If the set-based path hits a unique violation on a *secondary* unique index (compaction reorders changes
across keys, e.g. an email moved from one row to another), the batch is rolled back and applied again
change by change in source order, which cannot hit it (the source did not).

Schema drift: ``column_added`` becomes ``ALTER TABLE … ADD COLUMN IF NOT EXISTS`` (nullable, no default)
in the batch's transaction, before its rows.  When the source added it with a DEFAULT, its existing
rows got that value without a single change in the stream: a literal default is added with the
column, an expression (``now()``, ``nextval(…)``) stops replay.  Any other change (drop, rename, type,
key, identity, table rename) stops replay with a :class:`TargetError` that names the table and the change, and
nothing of that batch is applied.  The operator applies the same change to the target by hand and
reruns with ``skip_drift_check=True`` (``bulkmig replay --skip-drift-check``), which accepts the
drift of that one batch only; or starts again with a new full load.  Independently of drift records,
every column a batch sends must exist on the target, so data never lands in the wrong column.

Names: every identifier is quoted; generated SQL qualifies user columns by our aliases, so columns
named ``Op``, ``__op``, ``s`` or ``select`` are just columns.  A PostgreSQL stream carries source names:
table and column names go through the task's table mappings (rename rules, removed columns, selection)
exactly as the full load did.  A stream whose ``stream.json`` says ``"names": "target"`` (MySQL capture
writes the names conversion gave the target tables, for the tables the plan selected) is applied as it
is: mapping those names again would rename them twice.

Changes the loaded rows already hold (MySQL sources).  A PostgreSQL plan's slot exports the snapshot every
part is read in, so the stream starts exactly where the parts end.  MySQL cannot hand a snapshot to another
process: capture starts at the plan's binlog position, while ``extract`` reads in its own, later snapshot,
whose position each part's sidecar records.  Replaying the changes in between onto rows that already hold
them converges only through idempotent upserts; a table without a key would get those inserts twice.  So
for a MySQL stream replay reads the imported volume's sidecars and, per table, skips every change committed
at or before the snapshot its parts were read in (:class:`TableMark`; which positions compare how is
``engines/mysql/binlog.in_snapshot``), exactly.  Parts of one table read in different snapshots (extract
resumed in a new run, or agents): a keyed table skips up to the lowest one (idempotent apply converges from
there); a table without a key is refused.  A column added on the source before the snapshot is not in the
parts (extract reads the planned columns): the changes after that ADD COLUMN are applied again (keyed) or
refused (no key).  The applied position moves over skipped changes like over applied ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from bulkmig.cdc.applying import ApplyStats
from bulkmig.cdc.batch import Batch
from bulkmig.cdc.loop import RECONNECT_DELAYS
from bulkmig.cdc.position import format_lsn, lsn_or_none
from bulkmig.config.task import Task
from bulkmig.core.errors import (
    BulkmigError,
    ConfigError,
    ConnectError,
    IntegrityError,
    StoreError,
    TargetError,
)
from bulkmig.core.log import human_bytes, human_duration, say, tick
from bulkmig.core.retry import Reason, Retry
from bulkmig.core.store import NotFound, open_store
from bulkmig.engines.postgres.connect import connect
from bulkmig.replay.marks import TableMark, _in_snapshot, names_are_target, refuse_mixed_keyless, volume_marks
from bulkmig.replay.stream import STREAM_MANIFEST, Stream, find_stream

# A gap (batch N missing while a later one exists) may be a writer that publishes out of order; wait
# this long for it before stopping.  Tests shorten it.
GAP_GRACE_SECONDS = 30.0
# How often follow mode lists the whole stream to look for a gap.
GAP_CHECK_SECONDS = 10.0
# follow mode's back-off when the target or the bucket cannot be reached: RECONNECT_DELAYS, the capture loop's.
# How often follow mode re-reads the source position for the lag figure.
SOURCE_POLL_SECONDS = 10.0
# --until-caught-up with capture not advancing: say what replay waits for this often (a silent wait at 3 a.m.
# looks like a hang; the usual cause is that no `bulkmig capture` is running).
WAITING_NOTE_SECONDS = 30.0


# ============================================================================================ replay


@dataclass
class ReplayReport:
    """What a replay run did and where it stands.  Positions are LSN text (``16/B374D848``)."""

    stream_id: str
    batches: int = 0  # applied by this run
    changes: int = 0  # change rows in those batches
    seconds: float = 0.0  # spent applying them (reading included), not waiting
    applied_seq: int | None = None
    applied_pos: str | None = None
    last_commit_ts: datetime | None = None
    source_pos: str | None = None  # the source's WAL position when last read
    lag_bytes: int | None = None  # source position − applied position
    lag_seconds: float | None = None  # now − commit time of the last applied change
    caught_up: bool = False  # the goal was reached (until_caught_up / until_pos), or nothing is pending
    missing_rows: int = 0  # updates that found no row to change on the target
    exact_batches: int = 0  # batches replayed change by change after the bulk path hit a reorder conflict
    pending: int = 0  # batches in the bucket not applied when the run ended
    snapshot_skipped: int = 0  # changes skipped because the rows loaded from the volume already hold them

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0


def _open_replay_target(
    task: Task,
    *,
    target_names: bool,
    marks: Mapping[tuple[str, str], TableMark],
    stream_doc: Mapping[str, Any],
    set_based: bool = True,
) -> Any:
    """The target side of one replay session, from the target engine (``replay_target``)."""
    from bulkmig.targets import target_for

    session: dict[str, Any] = {"target_names": target_names, "marks": marks, "stream_doc": stream_doc}
    if not set_based:  # the change-by-change reference only PostgreSQL's apply has (the equivalence tests')
        session["set_based"] = False
    return target_for(task).replay_target(**session)


def source_position(task: Task) -> int | None:
    """The source's current WAL position, or None when it cannot be read (not PostgreSQL, unreachable).
    A MySQL source's binlog position comes as the ordinal its change batches use (``engines/mysql/binlog``)."""
    if task.source.engine == "mysql":
        from bulkmig.engines.mysql.binlog import source_position as binlog_position

        return binlog_position(task)
    if task.source.engine != "postgresql":
        return None
    try:
        with connect(task.source, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text"
            ).fetchone()
    except (BulkmigError, psycopg.Error):
        return None
    return lsn_or_none(row[0]) if row else None


class _Runner:
    """One replay run: the lock, the next batch to apply, gap detection, and the report."""

    def __init__(
        self,
        task: Task,
        stream: Stream,
        target: Any,
        report: ReplayReport,
        *,
        marks: Mapping[tuple[str, str], TableMark] | None = None,
        stream_doc: Mapping[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.stream = stream
        # stream.json is written once, before any batch: read once per replay() rather than per session.
        self.stream_doc = dict(stream_doc or {})
        self.target = target  # the target's side: lock, position, apply (the target engine's replay_target)
        self.report = report
        self.marks = dict(marks or {})
        self.next_seq: int | None = None  # None: no position yet and no batch seen
        self.gap_since: float | None = None
        # The next batch is downloaded and decoded while this one is applied (the server's work
        # releases the GIL), so a run of batches costs max(read, apply) per batch, not the sum.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulkmig-replay-read")
        self._ahead: tuple[int, Future[Batch | None]] | None = None

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)

    def _read(self, seq: int) -> Batch | None:
        ahead, self._ahead = self._ahead, None
        batch = None
        if ahead is not None and ahead[0] == seq:
            batch = ahead[1].result()  # a read error surfaces here, for the batch it concerns
        if batch is None:  # not read ahead, or it was not there yet then
            batch = self.stream.read(seq)
        if batch is not None:
            self._ahead = (seq + 1, self._reader.submit(self.stream.read, seq + 1))
        return batch

    def lock(self) -> None:
        self.target.lock(self.stream.stream_id)

    def start(self) -> None:
        pos = self.target.position(self.stream.stream_id)
        if pos is not None:
            self.next_seq = pos[0] + 1
            self.report.applied_seq, self.report.applied_pos, self.report.last_commit_ts = pos
        self._use_marks(lsn_or_none(pos[1]) if pos is not None else None)
        self.check_gap(self.stream.batches())

    def _use_marks(self, applied: int | None) -> None:
        """Forget the snapshot marks once the target is past all of them (every change still to come is
        newer); else refuse what cannot be exact, and say what is skipped."""
        if not self.marks:
            return
        if applied is not None and not any(_in_snapshot(applied, m.below) for m in self.marks.values()):
            self.marks.clear()
            self.target.use_marks({})
            return
        refuse_mixed_keyless(self.marks, self._target_has_key)
        seen = sorted({s for m in self.marks.values() for s in m.snapshots})
        say(
            f"replay: the loaded rows were read at binlog {', '.join(seen)}; the changes of each table committed "
            "before its rows were read are skipped"
        )

    def _target_has_key(self, target: tuple[str, str]) -> bool:
        return bool(self.target.has_key(target))

    def check_gap(self, seqs: list[int]) -> bool:
        """True when the next batch is known to be missing while later ones exist; raises after the grace."""
        if self.next_seq is None:
            if not seqs:
                return False
            first = seqs[0]
            expected = self.stream_doc.get("first_seq")
            allowed = (expected,) if isinstance(expected, int) else (0, 1)
            if first not in allowed:
                raise IntegrityError(
                    f"stream {self.stream.stream_id} in {self.stream.store.url} starts at batch {first}; "
                    f"the batches before it are missing and this target has applied none",
                    "restore the missing batches, or start over with a new full load and a new capture",
                )
            self.next_seq = first
        later = [s for s in seqs if s > self.next_seq]
        if self.next_seq in seqs or not later:
            self.gap_since = None
            return False
        now = time.monotonic()
        self.gap_since = self.gap_since or now
        if now - self.gap_since >= GAP_GRACE_SECONDS:
            raise IntegrityError(
                f"batch {self.next_seq} of stream {self.stream.stream_id} is missing from {self.stream.store.url} "
                f"while batch {later[0]} exists; replay stops rather than skip it",
                "restore the batch from a backup of the bucket, or start over with a new full load",
            )
        return True

    def step(self, *, accept_drift: bool) -> bool:
        """Apply the next batch if it is there.  False when there is nothing to apply now."""
        if self.next_seq is None:
            self.check_gap(self.stream.batches())
            if self.next_seq is None:
                return False
        started = time.monotonic()
        batch = self._read(self.next_seq)
        if batch is None:
            return False
        stats, exact = self.apply(batch, accept_drift=accept_drift)
        elapsed = time.monotonic() - started
        r = self.report
        r.batches += 1
        r.changes += batch.rows
        r.seconds += elapsed
        r.missing_rows += stats.missing
        r.exact_batches += exact
        r.snapshot_skipped += stats.skipped
        r.applied_seq, r.applied_pos = batch.seq, batch.last_pos
        tick("replay", parts=1, rows=batch.rows, note=f"applied through {batch.last_pos}")
        commit_ts = batch.last_commit_ts()
        if commit_ts is not None:
            r.last_commit_ts = commit_ts
        self.next_seq = batch.seq + 1
        self.gap_since = None
        rate = batch.rows / elapsed if elapsed > 0 else 0.0
        lag = f", {human_duration(_age(r.last_commit_ts))} behind the source" if r.last_commit_ts else ""
        say(
            f"replay: batch {batch.seq} applied: {batch.transactions:,} transactions, {batch.rows:,} changes "
            f"in {elapsed:.2f}s ({rate:,.0f} changes/s){' change by change' if exact else ''}; "
            f"through {batch.last_pos}{lag}"
            + (f"; {stats.skipped:,} already in the loaded rows, skipped" if stats.skipped else "")
            + (f"; {stats.missing:,} updates found no row" if stats.missing else "")
        )
        return True

    def apply(self, batch: Batch, *, accept_drift: bool) -> tuple[ApplyStats, bool]:
        """Apply one batch with its position in one target transaction (the target's ``apply``)."""
        stats, exact = self.target.apply(batch, self.stream.stream_id, accept_drift=accept_drift)
        return stats, bool(exact)

    def pending(self) -> int:
        if self.next_seq is None:
            return len(self.stream.batches())
        return len([s for s in self.stream.batches() if s >= self.next_seq])


def _age(ts: datetime | None) -> float:
    if ts is None:
        return 0.0
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return max((datetime.now(UTC) - ts).total_seconds(), 0.0)


def _run(
    task: Task,
    stream: Stream,
    report: ReplayReport,
    goal: int | None,
    follow: bool,
    poll_interval: float,
    stop: threading.Event,
    session: dict[str, bool],
    marks: Mapping[tuple[str, str], TableMark],
    target_names: bool,
    stream_doc: Mapping[str, Any] | None,
    set_based: bool,
) -> None:
    """One session of :func:`replay`: connect, lock, apply until the mode says stop."""
    target = _open_replay_target(
        task, target_names=target_names, marks=marks, stream_doc=stream_doc or {}, set_based=set_based
    )
    runner: _Runner | None = None
    try:
        runner = _Runner(task, stream, target, report, marks=marks, stream_doc=stream_doc)
        runner.lock()
        runner.start()
        session["started"] = session["fresh"] = True
        last_source = last_listing = last_progress = time.monotonic()
        last_captured: int | None = None
        while not stop.is_set():
            # progress.json first: every batch it vouches for is durable, so listed by the steps below.
            captured = stream.captured_through() if goal is not None else None
            while not stop.is_set() and runner.step(accept_drift=session["accept"]):
                session["accept"] = False
                if goal is not None and (lsn_or_none(report.applied_pos) or 0) >= goal:
                    break  # there: a capture that writes batches as fast as they apply must not keep us going
            if stop.is_set():
                break
            applied = lsn_or_none(report.applied_pos)
            if goal is not None and applied is not None and applied >= goal:
                report.caught_up = True
                break
            # A full listing finds a gap (the next batch missing while later ones exist); it is not free
            # on a long stream, so follow mode does it now and then, the other modes when deciding to end.
            deciding = not follow and (goal is None or (captured is not None and captured >= goal))
            now = time.monotonic()
            if deciding or now - last_listing >= GAP_CHECK_SECONDS:
                last_listing = now
                if not runner.check_gap(stream.batches()) and deciding:
                    report.caught_up = True
                    break
            if goal is not None and not follow:
                if captured != last_captured:
                    last_captured, last_progress = captured, now
                elif now - last_progress >= WAITING_NOTE_SECONDS:
                    last_progress = now
                    say(
                        f"replay: waiting for capture to pass {format_lsn(goal)} (captured through "
                        f"{format_lsn(captured) if captured is not None else 'nothing yet'}, nothing new for "
                        f"{WAITING_NOTE_SECONDS:.0f}s): is `bulkmig capture` running for this task?"
                    )
            if follow and now - last_source >= SOURCE_POLL_SECONDS:
                last_source = now
                _update_lag(task, report)
            stop.wait(poll_interval)
        report.pending = runner.pending()
        if goal is None:
            report.caught_up = report.pending == 0
    finally:
        if runner is not None:
            runner.close()
        target.close()


def replay(
    task: Task,
    *,
    follow: bool = False,
    until_caught_up: bool = False,
    until_pos: int | None = None,
    poll_interval: float = 1.0,
    stop: threading.Event | None = None,
    skip_drift_check: bool = False,
    stream: Stream | None = None,
    set_based: bool = True,
) -> ReplayReport:
    """Apply the pending change batches of this task's stream to the target, in order, exactly once.

    - default: apply what is in the bucket now and return.
    - ``until_caught_up``: read the source's WAL position once at the start, then apply and wait (for
      capture) until every batch is applied and ``progress.json`` says capture got past that position.
    - ``until_pos``: the same with a position given (an LSN as int), e.g. cutover's.
    - ``follow``: never return (until ``stop`` is set); a lost connection to the target or the bucket is
      retried with back-off (each batch is atomic, so starting over is safe).
    - ``skip_drift_check``: accept the non-additive schema drift of the first batch applied by this run
      (after the operator applied it to the target by hand).
    - ``set_based=False``: apply every batch change by change, in source order (slow; the reference that
      the equivalence tests and ``bench.replay`` compare the set-based path with).
    """
    stop = stop or threading.Event()
    store = stream.store if stream else open_store(task.bucket, task.s3_options())
    stream = stream or find_stream(task, store)
    report = ReplayReport(stream.stream_id)
    stream_doc = stream.document(STREAM_MANIFEST)  # written once, before any batch: one read serves the run
    target_names = names_are_target(task, stream_doc)
    marks = volume_marks(task, stream, stream_doc)
    goal = until_pos
    if goal is None and until_caught_up:
        goal = source_position(task)
        if goal is None:
            raise ConfigError(
                f"cannot read the current WAL position of source {task.source.redacted()}",
                "replay --until-caught-up needs the source reachable; or replay without it",
            )
        report.source_pos = format_lsn(goal)
        say(f"replay: applying stream {stream.stream_id} until it reaches the source's position {format_lsn(goal)}")
    # accept: the drift acceptance, consumed by the first batch applied (across reconnects); started: a
    # session got as far as holding the lock, so a later connection failure is a blip, not a wrong URL.
    session = {"accept": skip_drift_check, "started": False}
    retry = Retry(
        "replay", task.settings.retry_timeout, hint="each batch is applied whole, exactly once", sleep=stop.wait
    )
    failures, since = 0, 0.0
    while True:
        try:
            _run(
                task,
                stream,
                report,
                goal,
                follow,
                poll_interval,
                stop,
                session,
                marks,
                target_names,
                stream_doc,
                set_based,
            )
            break
        except (ConnectError, StoreError, TargetError, psycopg.OperationalError) as exc:
            # A target restart or a network blip: every batch is atomic, so starting over is safe.  Which
            # database errors are worth it is bulkmig.core.retry's table (every mode); follow mode also waits
            # out the bucket.  "Cannot connect" counts only once a session got going (not a wrong URL).
            retry.established = session["started"]
            reason = retry.should_retry(exc)
            bucket = isinstance(exc, StoreError) and not isinstance(exc, NotFound)
            if reason is None and follow and session["started"] and bucket:
                reason = Reason("lost", "bucket unreachable")
            if reason is None or stop.is_set():
                raise
            if session.pop("fresh", False) or not failures:  # a session got going since: a new streak
                failures, since = 0, time.monotonic()
            retry.wait(exc, reason, failures, since, base=RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
            failures += 1
            if stop.is_set():
                break
    _update_lag(task, report)
    say(
        f"replay: {report.batches:,} batches, {report.changes:,} changes in {report.seconds:.1f}s "
        f"({report.changes_per_second:,.0f} changes/s); stream {stream.stream_id} applied through "
        f"{report.applied_pos or 'nothing yet'}"
        + (f", {human_bytes(report.lag_bytes)} of WAL behind the source" if report.lag_bytes is not None else "")
        + (f"; {report.pending} batches pending" if report.pending else "")
        + (
            f"; {report.snapshot_skipped:,} changes skipped as already in the loaded rows"
            if report.snapshot_skipped
            else ""
        )
    )
    return report


def _update_lag(task: Task, report: ReplayReport) -> None:
    source = source_position(task)
    if source is not None:
        report.source_pos = format_lsn(source)
        applied = lsn_or_none(report.applied_pos)
        report.lag_bytes = max(source - applied, 0) if applied is not None else None
    report.lag_seconds = _age(report.last_commit_ts) if report.last_commit_ts else None


def replay_status(task: Task) -> dict[str, Any]:
    """Where replay stands, for ``bulkmig status``: applied seq/position, pending batches, lag.

    Read only; works while a replay runs.  Keys: ``stream_id``, ``applied_seq``, ``applied_pos``,
    ``applied_at``, ``last_commit_ts`` (ISO text or None), ``batches_in_bucket``, ``pending_batches``,
    ``latest_seq``, ``captured_through``, ``source_pos``, ``lag_bytes``, ``lag_seconds``.
    """
    store = open_store(task.bucket, task.s3_options())
    stream = find_stream(task, store)
    seqs = stream.batches()
    status: dict[str, Any] = {
        "stream_id": stream.stream_id,
        "applied_seq": None,
        "applied_pos": None,
        "applied_at": None,
        "last_commit_ts": None,
        "batches_in_bucket": len(seqs),
        "latest_seq": seqs[-1] if seqs else None,
        "pending_batches": len(seqs),
    }
    from bulkmig.targets import target_for

    row = target_for(task).replay_position(stream.stream_id)  # seq, position, applied at, last commit time
    if row:
        status.update(
            applied_seq=int(row[0]),
            applied_pos=str(row[1]),
            applied_at=row[2].isoformat() if row[2] else None,
            last_commit_ts=row[3].isoformat() if row[3] else None,
            pending_batches=len([s for s in seqs if s > int(row[0])]),
        )
    captured = stream.captured_through()
    status["captured_through"] = format_lsn(captured) if captured is not None else None
    source = source_position(task)
    status["source_pos"] = format_lsn(source) if source is not None else None
    applied = lsn_or_none(status["applied_pos"])
    status["lag_bytes"] = max(source - applied, 0) if source is not None and applied is not None else None
    status["lag_seconds"] = _age(row[3]) if row and row[3] else None
    return status


__all__ = ["ReplayReport", "replay", "replay_status", "source_position"]
