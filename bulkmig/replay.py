"""`bulkmig replay`: apply the captured change batches to the target, exactly once, in bulk.

Exactly once (DESIGN §5): each batch is applied in ONE target transaction together with the update
of its row in ``bulkmig.replay_position``, so a crash or ``kill -9`` at any moment repeats no batch and
skips none.  A batch whose seq is at or below the stored one is skipped; a batch missing in the bucket
while a later one exists stops replay by name (it never jumps over it).  A session-level advisory lock
per stream keeps a second replayer out.  Every session runs ``session_replication_role = replica``, so
target triggers do not fire and foreign keys are not checked while rows arrive in bulk.

Fast: changes are not replayed one statement each.  Per batch and table (in ``seq`` order):

- Changes are compacted per key (last one wins).  An update whose TOASTed columns were not sent
  (``unchanged``) takes them from an earlier insert/update of the same key in the batch when there is
  one; otherwise those columns keep the target's value — never NULL, never a placeholder.
- TRUNCATE is a barrier; since it empties the table, everything of that table before its last
  TRUNCATE in the batch is dropped and all truncates of a batch run first, in one statement (as the
  source did: a table referenced by a foreign key can only be truncated together with its referrers).
- An update that changes the key (``before`` key ≠ new key) is applied as ``UPDATE … SET <key> = new
  … WHERE <key> = old`` and is a barrier for the two keys it involves: when the run being compacted
  already touched either, that run is applied first.  (Key changes of untouched keys join the run and
  go first, in one statement.)  A change that cannot be merged into the earlier one of its key is a
  barrier too.
- Each compacted run is COPYed into temp tables typed like the target's columns (``CREATE TEMP TABLE
  … AS SELECT <columns> FROM <target> LIMIT 0``: the target's types and domains, no NOT NULL, column
  names of our own), so COPY's input functions parse the source's text output exactly as a load
  would; then ``DELETE … USING`` for deletes (delete-if-present), ``INSERT … SELECT … ON CONFLICT (key)
  DO UPDATE`` for whole rows (insert = upsert), and ``UPDATE … FROM`` per set of unchanged columns,
  never touching those columns.  Generated columns are never written, identity columns are inserted
  with ``OVERRIDING SYSTEM VALUE``.
- Key-less tables (``key == []`` under REPLICA IDENTITY FULL, and no primary key on the target): no
  compaction; inserts are COPYed, each update/delete changes exactly one row matching the whole old
  row (``before``), compared through the types' text output.  Correct rather than fast.

If the bulk path hits a unique violation on a *secondary* unique index (compaction reorders changes
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

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from bulkmig.cdc.batch import Batch, ChangeRow, TableChanges, list_batches, read_batch
from bulkmig.cdc.position import format_lsn, parse_lsn
from bulkmig.config.task import Task
from bulkmig.core import layout
from bulkmig.core.errors import (
    BulkmigError,
    ConfigError,
    ConnectError,
    IntegrityError,
    PlanError,
    StoreError,
    TargetError,
)
from bulkmig.core.log import human_bytes, human_duration, say
from bulkmig.core.manifest import PartManifest
from bulkmig.core.model import Table
from bulkmig.core.retry import Reason, Retry
from bulkmig.core.store import NotFound, Store, open_store
from bulkmig.engines.postgres.connect import connect
from bulkmig.engines.postgres.sql import ident, qualified
from bulkmig.fullload.plan import Plan as VolumePlan

POSITION_DDL = """
CREATE SCHEMA IF NOT EXISTS bulkmig;
CREATE TABLE IF NOT EXISTS bulkmig.replay_position (
    stream_id text PRIMARY KEY,
    seq bigint NOT NULL,
    pos text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    commit_ts timestamptz
);
"""
# commit_ts: the source commit time of the last change applied, so `status` can show the lag in time
# after a restart (the other four columns are what the exactly-once guarantee needs).

STREAM_MANIFEST = "stream.json"
# Sidecars read at once when replay takes the snapshot positions of an imported volume's parts.
SIDECAR_READERS = 8
PROGRESS = "progress.json"
# A gap (batch N missing while a later one exists) may be a writer that publishes out of order; wait
# this long for it before stopping.  Tests shorten it.
GAP_GRACE_SECONDS = 30.0
# How long a second replayer waits for the stream's lock before giving up (a killed one's session may
# take a moment to end on the server).
LOCK_WAIT_SECONDS = 15.0
# How often follow mode lists the whole stream to look for a gap.
GAP_CHECK_SECONDS = 10.0
# follow mode's back-off when the target or the bucket cannot be reached, in seconds (the last repeats).
RECONNECT_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# How often follow mode re-reads the source position for the lag figure.
SOURCE_POLL_SECONDS = 10.0
# Errors the bulk path can meet only because compaction reorders changes across keys; the batch is
# then replayed change by change in source order.
REORDER_ERRORS = (pgerrors.UniqueViolation, pgerrors.ExclusionViolation, pgerrors.CardinalityViolation)

Key = tuple[str | None, ...]
# A column default that is a constant (how pg_get_expr prints one): the same value on every existing row.
_LITERAL_DEFAULT = re.compile(
    r"^\(?(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|NULL|'(?:[^']|'')*')\)?"
    r"(?:::[A-Za-z_][A-Za-z0-9_ ]*(?:\(\d+(?:,\d+)?\))?(?:\[\])*)?$"
)


# ============================================================================================ compaction
#
# Pure functions: a table's changes in one batch → the steps that have the same effect on the target.


@dataclass
class Entry:
    """The net effect of a batch's changes on one key.

    ``kind``: ``upsert`` (the whole row is known), ``update`` (some columns were not sent: keep the
    target's values of ``unchanged``), ``delete``.  ``values`` is in the table's column order.
    """

    kind: str
    values: list[str | None]
    unchanged: frozenset[str] = frozenset()
    seq: int = 0


@dataclass
class Truncate:
    """Empty the table (always the first step: what came before it in the batch no longer matters)."""


@dataclass
class KeyChange:
    """An update that moves a row to a new key: ``UPDATE … WHERE <old key>``."""

    old_key: Key
    values: list[str | None]
    unchanged: frozenset[str]
    seq: int


@dataclass
class Segment:
    """A run of changes that can be applied in bulk: first the key changes (``moves``), then at most
    one entry per key.  No key is touched by two of them, so their order across keys does not matter;
    a change that would touch a key twice starts the next segment (the barrier)."""

    moves: list[KeyChange] = field(default_factory=list)
    entries: dict[Key, Entry] = field(default_factory=dict)
    moved: set[Key] = field(default_factory=set)  # old and new keys of the moves


@dataclass
class RowInsert:
    """Key-less tables: consecutive inserts, COPYed as they are."""

    rows: list[list[str | None]]


@dataclass
class RowChange:
    """Key-less tables: one update (``values`` set) or delete (``values`` None) of one whole old row."""

    before: list[str | None]
    values: list[str | None] | None
    unchanged: frozenset[str]
    seq: int


Step = Truncate | Segment | RowInsert | RowChange


def after_last_truncate(rows: Sequence[ChangeRow]) -> tuple[bool, list[ChangeRow]]:
    """(truncated?, the rows after the last TRUNCATE), in seq order."""
    ordered = sorted(rows, key=lambda r: r.seq)
    last = max((i for i, r in enumerate(ordered) if r.op == "T"), default=None)
    if last is None:
        return False, ordered
    return True, ordered[last + 1 :]


def _key_values(row: ChangeRow, columns: Sequence[str], key_idx: Sequence[int], old: bool) -> Key:
    """The row's key: the old key (``before``, falling back to the new values) or the new one.

    A key column that is itself unchanged TOAST is taken from ``before``; without one the row cannot
    be identified, which capture should never produce.
    """
    if old and row.before is not None:
        return tuple(row.before[i] for i in key_idx)
    if not row.unchanged:
        return tuple(row.values[i] for i in key_idx)
    out = []
    for i in key_idx:
        if columns[i] in row.unchanged:
            if row.before is None:
                raise IntegrityError(
                    f"a change (seq {row.seq}) does not identify its row: key column {columns[i]!r} was not sent",
                    "the change stream is incomplete; capture must send the old key for such updates",
                )
            out.append(row.before[i])
        else:
            out.append(row.values[i])
    return tuple(out)


_NOTHING: frozenset[str] = frozenset()


def compact(changes: TableChanges, key: Sequence[str]) -> list[Step]:
    """The steps that replay a keyed table's changes of one batch (see the module docstring).

    A key change is a barrier for the two keys it involves: when the current segment already holds a
    change of either, the segment is closed first.  Changes of other keys do not commute with it only
    through secondary unique indexes, and those conflicts send the batch down the exact path.
    Entries share the batch's value lists (never mutated); merging makes new ones.
    """
    columns = changes.columns
    key_idx = [columns.index(k) for k in key]
    truncated, rows = after_last_truncate(changes.rows)
    steps: list[Step] = [Truncate()] if truncated else []
    seg = Segment()
    entries = seg.entries

    def flush() -> None:
        nonlocal seg, entries
        if seg.entries or seg.moves:
            steps.append(seg)
            seg = Segment()
            entries = seg.entries

    for row in rows:
        op = row.op
        if op == "T":  # only the last TRUNCATE can remain, and it was cut off above
            continue
        if op == "D":
            k = _key_values(row, columns, key_idx, old=True)
            entries[k] = Entry("delete", row.before if row.before is not None else row.values, seq=row.seq)
            continue
        if op != "I" and op != "U":
            raise IntegrityError(f"a change (seq {row.seq}) has op {op!r}", "expected I, U, D or T")
        k = _key_values(row, columns, key_idx, old=False)
        unchanged = frozenset(row.unchanged) if row.unchanged else _NOTHING
        if row.before is not None and op == "U":
            old = _key_values(row, columns, key_idx, old=True)
            if old != k:
                if old in entries or k in entries or old in seg.moved or k in seg.moved:
                    flush()
                seg.moves.append(KeyChange(old, row.values, unchanged, row.seq))
                seg.moved.update((old, k))
                continue
        if not unchanged:
            entries[k] = Entry("upsert", row.values, seq=row.seq)
            continue
        prev = entries.get(k)
        if prev is None:
            entries[k] = Entry("update", row.values, unchanged, row.seq)
        elif prev.kind == "delete":
            # An update of a deleted row: not something the source produces; keep the order exact.
            flush()
            entries[k] = Entry("update", row.values, unchanged, row.seq)
        else:
            merged = [prev.values[i] if c in unchanged else row.values[i] for i, c in enumerate(columns)]
            if prev.kind == "upsert":
                entries[k] = Entry("upsert", merged, seq=row.seq)
            else:
                entries[k] = Entry("update", merged, prev.unchanged & unchanged, row.seq)
    flush()
    return steps


def keyless_steps(changes: TableChanges) -> list[Step]:
    """The steps for a table without a usable key: every change in order, inserts grouped for COPY."""
    truncated, rows = after_last_truncate(changes.rows)
    steps: list[Step] = [Truncate()] if truncated else []
    for row in rows:
        if row.op == "I":
            if steps and isinstance(steps[-1], RowInsert):
                steps[-1].rows.append(row.values)
            else:
                steps.append(RowInsert([row.values]))
        elif row.op in ("U", "D"):
            before = row.before if row.before is not None else (row.values if row.op == "D" else None)
            if before is None:
                raise IntegrityError(
                    f"an update (seq {row.seq}) of {changes.schema}.{changes.table}, a table without a key, "
                    "came without its old row",
                    "set REPLICA IDENTITY FULL on the source table (or give it a primary key) and capture again",
                )
            values = list(row.values) if row.op == "U" else None
            steps.append(RowChange(list(before), values, frozenset(row.unchanged), row.seq))
        elif row.op != "T":
            raise IntegrityError(f"a change (seq {row.seq}) has op {row.op!r}", "expected I, U, D or T")
    return steps


# ============================================================================================ target


@dataclass
class TargetTable:
    """What replay needs to know about a target table, read from its catalog."""

    schema: str
    name: str
    oid: int
    relkind: str
    types: dict[str, str]  # column -> format_type, in attnum order
    generated: set[str]  # GENERATED ALWAYS AS (…) STORED: never written
    identity_always: set[str]  # GENERATED ALWAYS AS IDENTITY: inserted with OVERRIDING, never SET
    primary_key: list[str]
    unique_keys: list[frozenset[str]]  # immediate, non-partial, non-expression unique indexes

    @property
    def sql(self) -> str:
        return qualified(self.schema, self.name)


def read_target_table(conn: psycopg.Connection, schema: str, name: str) -> TargetTable | None:
    row = conn.execute(
        "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c WHERE c.oid = to_regclass(%s)",
        (qualified(schema, name),),
    ).fetchone()
    if row is None:
        return None
    oid, relkind = int(row[0]), str(row[1])
    types: dict[str, str] = {}
    generated: set[str] = set()
    always: set[str] = set()
    for attname, typ, gen, ident_always in conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attgenerated <> '', attidentity = 'a' "
        "FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ):
        types[attname] = typ
        if gen:
            generated.add(attname)
        if ident_always:
            always.add(attname)
    primary: list[str] = []
    uniques: list[frozenset[str]] = []
    for is_primary, cols in conn.execute(
        "SELECT i.indisprimary, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) "
        "FROM pg_catalog.pg_index i WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid "
        "AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY NOT i.indisprimary",
        (oid,),
    ):
        if is_primary:
            primary = list(cols)
        uniques.append(frozenset(cols))
    return TargetTable(schema, name, oid, relkind, types, generated, always, primary, uniques)


@dataclass
class Plan:
    """How one batch's changes of one source table go into one target table."""

    table: TargetTable
    changes: TableChanges
    src_idx: list[int]  # indexes into changes.columns of the columns written
    cols: list[str]  # their target names, same order
    key: list[str]  # source names of the key columns ([] = key-less)
    key_cols: list[str]  # their target names


def _p(name: str) -> str:
    """An identifier for a statement that also has %s parameters (psycopg reads % in the text)."""
    return ident(name).replace("%", "%%")


# ============================================================================================ apply


@dataclass
class ApplyStats:
    changes: int = 0  # change rows in the batch
    statements: int = 0
    skipped: int = 0  # changes the rows loaded from the volume already hold (TableMark)
    missing: int = 0  # updates/deletes that found no row (delete-if-present is fine; updates are counted)


class Applier:
    """Applies batches on one target connection; caches target catalogs between batches."""

    def __init__(
        self,
        conn: psycopg.Connection,
        task: Task,
        *,
        names_are_target: bool = False,
        marks: Mapping[tuple[str, str], TableMark] | None = None,
    ) -> None:
        self.conn = conn
        self.task = task
        self.names_are_target = names_are_target  # the stream's names are the target's: no mapping applies
        self.marks: dict[tuple[str, str], TableMark] = {}  # target table -> what its loaded rows already hold
        self._marks_below: int | None = None
        self.use_marks(marks or {})
        self._ordinals: dict[str, int] = {}
        self._tables: dict[tuple[str, str], TargetTable] = {}
        self._tmp = 0
        self._temps: dict[tuple[int, tuple[str, ...], tuple[str, ...]], str] = {}
        self._selected: dict[tuple[str, str], bool] = {}

    # ------------------------------------------------------------------ names and catalogs

    def use_marks(self, marks: Mapping[tuple[str, str], TableMark]) -> None:
        """Skip the changes these tables' loaded rows already hold (see :class:`TableMark`)."""
        self.marks = dict(marks)
        self._marks_below = max((m.below for m in self.marks.values()), default=None)

    def forget(self) -> None:
        """Drop the cached catalogs (after a rollback or a schema change)."""
        self._tables.clear()

    def target_names(self, schema: str, table: str) -> tuple[str, str]:
        if self.names_are_target:
            return schema, table
        return self.task.mappings.target_table_name(schema, table)

    def target_columns(self, schema: str, table: str, columns: Sequence[str]) -> dict[str, str]:
        """Stream column -> target column, those the mappings remove left out (none for a target-name stream)."""
        if self.names_are_target:
            return {c: c for c in columns}
        return self.task.mappings.target_columns(schema, table, columns)

    def target_table(self, schema: str, table: str) -> TargetTable:
        tname = self.target_names(schema, table)
        cached = self._tables.get(tname)
        if cached is None:
            cached = read_target_table(self.conn, *tname)
            if cached is None:
                raise TargetError(
                    f"table {tname[0]}.{tname[1]} (source {schema}.{table}) does not exist on the target",
                    "create it (the full load does), or exclude the table in the table mappings",
                )
            self._tables[tname] = cached
        return cached

    def selected(self, schema: str, table: str) -> bool:
        """Whether the table mappings move this table (a change of another one is skipped, said once)."""
        if self.names_are_target:
            return True  # capture wrote only the tables the plan selected, under their target names
        chosen = self._selected.get((schema, table))
        if chosen is None:
            chosen = self._selected[(schema, table)] = bool(self.task.mappings.select([(schema, table)]))
            if not chosen:
                say(f"replay: changes of {schema}.{table} are skipped: the table mappings do not select it")
        return chosen

    def plan(self, changes: TableChanges) -> Plan:
        """Map the batch's columns onto the target table; refuse any column the target lacks."""
        table = self.target_table(changes.schema, changes.table)
        mapped = self.target_columns(changes.schema, changes.table, changes.columns)
        where = f"{table.schema}.{table.name}"
        missing = [f"{dst!r}" for dst in mapped.values() if dst not in table.types]
        if missing:
            raise TargetError(
                f"table {where} on the target has no column {', '.join(missing)}, which the change stream sends",
                "the target's schema drifted from the source's: add the column(s) on the target "
                "(or fix the table mappings), then rerun `bulkmig replay`",
            )
        src_idx, cols = [], []
        for i, c in enumerate(changes.columns):
            dst = mapped.get(c)
            if dst is not None and dst not in table.generated:
                src_idx.append(i)
                cols.append(dst)
        key = self._key(changes, table, mapped)
        return Plan(table, changes, src_idx, cols, key, [mapped[k] for k in key])

    @staticmethod
    def _key(changes: TableChanges, table: TargetTable, mapped: dict[str, str]) -> list[str]:
        """Source names of the columns that identify a row, or [] for row-by-row matching.

        Under REPLICA IDENTITY FULL every old row comes whole, so the target's primary key (when all
        its columns are sent) identifies rows just as well and makes them compactable.
        """
        if changes.identity != "f" and changes.key:
            lost = [k for k in changes.key if k not in mapped or mapped[k] in table.generated]
            if lost:
                raise TargetError(
                    f"the key column(s) {', '.join(map(repr, lost))} of {changes.schema}.{changes.table} "
                    "are removed by the table mappings or generated on the target",
                    "keep the replica identity columns in the table mappings",
                )
            return list(changes.key)
        inverse = {dst: src for src, dst in mapped.items()}
        if table.primary_key and all(c in inverse for c in table.primary_key):
            return [inverse[c] for c in table.primary_key]
        return []

    # ------------------------------------------------------------------ one batch

    def apply(self, batch: Batch, *, exact: bool, accept_drift: bool) -> ApplyStats:
        """Apply ``batch`` inside the caller's transaction (drift first, then truncates, then rows)."""
        stats = ApplyStats(changes=batch.rows)
        self._temps = {}  # the previous transaction dropped them
        self._ordinals = {}
        where = ""
        try:
            self.apply_drift(batch, accept_drift)
            plans = []
            marked = self._marks_below is not None and _in_snapshot(_lsn(batch.first_pos), self._marks_below)
            for t in batch.tables:
                if t.rows and self.selected(t.schema, t.table):
                    where = f" into {t.schema}.{t.table}"
                    if marked:
                        t = self.unseen(t, stats)
                    if t.rows:
                        plans.append(self.plan(t))
            truncated = [p for p in plans if any(r.op == "T" for r in p.changes.rows)]
            if truncated:
                where = " (TRUNCATE)"
                items = ", ".join(("" if p.table.relkind == "p" else "ONLY ") + p.table.sql for p in truncated)
                self.run(f"TRUNCATE TABLE {items}", stats=stats)
            for p in plans:
                where = f" into {p.table.schema}.{p.table.name}"
                if exact or not p.key:
                    self.apply_exact(p, stats)
                else:
                    self.apply_bulk(p, stats)
        except ConfigError as exc:  # a mapping problem discovered only now
            raise TargetError(exc.message, exc.hint) from None
        except (BulkmigError, *REORDER_ERRORS):
            raise
        except psycopg.Error as exc:
            raise TargetError(
                f"replay of batch {batch.seq}{where} failed: {_first_line(exc)}",
                "fix the cause on the target and rerun `bulkmig replay` (this batch is retried whole)",
            ) from exc
        return stats

    def unseen(self, changes: TableChanges, stats: ApplyStats) -> TableChanges:
        """The table's changes that its rows loaded from the volume do not hold yet (see :class:`TableMark`).

        Changes after an ADD COLUMN the parts do not hold (the source added it before their snapshot) are
        all kept for a keyed table: the parts lack that column's values and applying again is idempotent.
        """
        mark = self.marks.get(self.target_names(changes.schema, changes.table))
        if mark is None:
            return changes
        from bulkmig.engines.mysql.binlog import in_snapshot  # only MySQL streams have marks

        kept = [r for r in changes.rows if not in_snapshot(self._ordinal(r.pos), mark.below)]
        if len(kept) == len(changes.rows):
            return changes
        mapped = self.target_columns(changes.schema, changes.table, changes.columns)
        added = [c for c in mapped.values() if c not in mark.columns]
        if added:
            if self.plan(changes).key:
                return changes
            raise PlanError(
                f"column(s) {', '.join(map(repr, added))} of {mark.table} were added on the source before the "
                f"snapshot its rows were read in ({', '.join(mark.snapshots)}), so the loaded rows lack their "
                "values, and the table has no key to apply the changes since again without doubling rows",
                "re-plan now that the schema change is done (`bulkmig plan --restart`) and load again",
            )
        stats.skipped += len(changes.rows) - len(kept)
        return replace(changes, rows=kept)

    def _ordinal(self, pos: str) -> int:
        found = self._ordinals.get(pos)
        if found is None:
            found = _lsn(pos)
            if found is None:
                raise IntegrityError(f"a change batch row has position {pos!r}", "expected an LSN like 2A/4D2")
            self._ordinals[pos] = found
        return found

    def run(self, statement: str, params: Sequence[Any] | None = None, *, stats: ApplyStats) -> int:
        stats.statements += 1
        cur = self.conn.execute(statement, params)
        return cur.rowcount

    # ------------------------------------------------------------------ drift

    def apply_drift(self, batch: Batch, accept: bool) -> None:
        """Add new columns; refuse every other change unless the operator accepted this batch's drift."""
        if accept:
            self.forget()  # the operator changed the target by hand
        refused: list[tuple[dict[str, object], str]] = []
        for change in batch.schema_changes:
            schema, table = str(change.get("schema", "")), str(change.get("table", ""))
            kind, column = str(change.get("kind", "")), change.get("column")
            if not self.selected(schema, table):
                continue
            if kind == "column_added" and isinstance(column, str):
                problem = self._add_column(batch, schema, table, column, change, accept)
                if problem:
                    refused.append((change, problem))
            elif not accept:
                refused.append((change, _describe(change)))
        if refused:
            first = refused[0][0]
            what = "; ".join(text for _, text in refused)
            raise TargetError(
                f"schema drift in batch {batch.seq} on table {first.get('schema')}.{first.get('table')}: {what}. "
                "Replay cannot apply this safely and applied nothing of this batch",
                "apply the same change to the target by hand (ALTER TABLE …), then rerun "
                "`bulkmig replay --skip-drift-check` (it accepts the drift of this batch only); "
                "or start again with a new full load",
            )

    def _add_column(
        self, batch: Batch, schema: str, table: str, column: str, change: dict[str, object], accept: bool
    ) -> str | None:
        """``ADD COLUMN IF NOT EXISTS``; returns why not, when it cannot be done safely.

        A source ``ADD COLUMN … DEFAULT`` fills the existing rows without a single change in the stream,
        so the target must get the same default: done for a literal (``0``, ``'x'::text``, ``false``),
        refused for an expression (``now()``, ``nextval(…)``), whose value on the source rows replay
        cannot know.
        """
        mapped = self.target_columns(schema, table, [column])
        if column not in mapped:
            return None  # the mappings do not move this column
        # The table's own type list in this batch is the most precise; the drift record is the fallback.
        typ = str(change.get("type") or "")
        for t in batch.tables:
            if (t.schema, t.table) == (schema, table) and column in t.columns:
                typ = t.types[t.columns.index(column)] or typ
        target = self.target_table(schema, table)
        where = f"{target.schema}.{target.name}"
        name = mapped[column]
        default = change.get("default")
        extra = ""
        if default is not None and not accept:
            if not isinstance(default, str) or not _LITERAL_DEFAULT.match(default):
                return (
                    f"column {column!r} was added with DEFAULT {default}, which gave the existing source rows values "
                    "replay cannot know"
                )
            extra = f" DEFAULT {default}" + (" NOT NULL" if change.get("not_null") else "")
        try:
            with self.conn.transaction():  # a savepoint: to_regtype raises on a malformed name
                known = self.conn.execute("SELECT to_regtype(%s)", (typ,)).fetchone()
        except psycopg.Error:
            known = None
        if not typ or known is None or known[0] is None:
            raise TargetError(
                f"column {column!r} was added to {where} on the source with type {typ!r}, "
                "which the target does not know",
                "create the type on the target, add the column by hand, then rerun `bulkmig replay --skip-drift-check`",
            )
        self.conn.execute(f"ALTER TABLE {target.sql} ADD COLUMN IF NOT EXISTS {ident(name)} {typ}{extra}")
        say(f"replay: batch {batch.seq}: added column {name!r} ({typ}{extra}) to {where}")
        self._tables.pop((target.schema, target.name), None)
        return None

    # ------------------------------------------------------------------ keyed tables, in bulk

    def _temp(self, plan: Plan, old: Sequence[str], cols: Sequence[str], rows: Iterable[Sequence[str | None]]) -> str:
        """A temp table holding ``rows``: columns ``o0…`` typed like the target's ``old`` (old key
        values), then ``c0…`` typed like ``cols``, so COPY parses the source's text with the target's
        own input functions.  Positional names cannot clash with any user column name.  One temp
        table per shape and transaction (ON COMMIT DROP), emptied for each reuse: a batch cut into many
        segments holds a handful of them, not thousands of locks."""
        shape = (plan.table.oid, tuple(old), tuple(cols))
        name = self._temps.get(shape)
        if name is None:
            self._tmp += 1
            name = f"pg_temp.{ident(f'bulkmig_replay_{self._tmp}')}"
            select = ", ".join(
                [f"t.{ident(c)} AS o{i}" for i, c in enumerate(old)]
                + [f"t.{ident(c)} AS c{i}" for i, c in enumerate(cols)]
            )
            self.conn.execute(
                f"CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {select} FROM {plan.table.sql} AS t LIMIT 0"
            )
            self._temps[shape] = name
        else:
            self.conn.execute(f"TRUNCATE {name}")
        with self.conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return name

    @staticmethod
    def _match(plan: Plan, cols: Sequence[str], old: bool = False) -> str:
        """``t.<key> = s.<its temp column>`` for every key column: the old key (``o<j>``) or the key
        among ``cols``."""
        return " AND ".join(
            f"t.{ident(k)} = s.{'o' + str(j) if old else 'c' + str(cols.index(k))}" for j, k in enumerate(plan.key_cols)
        )

    def apply_bulk(self, plan: Plan, stats: ApplyStats) -> None:
        for step in compact(plan.changes, plan.key):
            if isinstance(step, Segment):
                self._segment(plan, step, stats)

    def _segment(self, plan: Plan, seg: Segment, stats: ApplyStats) -> None:
        """Moves, deletes, whole rows, then partial rows: one COPY and one statement for each."""
        t = plan.table
        key_src = [plan.changes.columns.index(k) for k in plan.key]
        if seg.moves:
            self._moves(plan, seg.moves, stats)
        deletes = [e for e in seg.entries.values() if e.kind == "delete"]
        upserts = [e for e in seg.entries.values() if e.kind == "upsert"]
        updates: dict[frozenset[str], list[Entry]] = {}
        for e in seg.entries.values():
            if e.kind == "update":
                updates.setdefault(e.unchanged, []).append(e)
        if deletes:
            tmp = self._temp(plan, [], plan.key_cols, ([e.values[i] for i in key_src] for e in deletes))
            self.run(f"DELETE FROM {t.sql} AS t USING {tmp} AS s WHERE {self._match(plan, plan.key_cols)}", stats=stats)
        if upserts:
            tmp = self._temp(plan, [], plan.cols, ([e.values[i] for i in plan.src_idx] for e in upserts))
            self._upsert_from(plan, tmp, stats)
        for unchanged, entries in updates.items():
            sent = [
                (i, c)
                for i, c in zip(plan.src_idx, plan.cols, strict=True)
                if plan.changes.columns[i] not in unchanged and c not in plan.key_cols and c not in t.identity_always
            ]
            if not sent:
                continue  # nothing to set: the row keeps every value it has
            cols = list(plan.key_cols) + [c for _, c in sent]
            idx = key_src + [i for i, _ in sent]
            tmp = self._temp(plan, [], cols, ([e.values[i] for i in idx] for e in entries))
            sets = ", ".join(f"{ident(c)} = s.c{j}" for j, c in enumerate(cols) if j >= len(key_src))
            found = self.run(
                f"UPDATE {t.sql} AS t SET {sets} FROM {tmp} AS s WHERE {self._match(plan, cols)}", stats=stats
            )
            stats.missing += max(len(entries) - found, 0)

    def _moves(self, plan: Plan, moves: list[KeyChange], stats: ApplyStats) -> None:
        """Key changes, in bulk: ``UPDATE … SET <key> = new … WHERE <key> = old`` per set of unchanged
        columns.  A whole row whose old key is not on the target (snapshot: none) is inserted."""
        t = plan.table
        groups: dict[frozenset[str], list[KeyChange]] = {}
        for m in moves:
            groups.setdefault(m.unchanged, []).append(m)
        for unchanged, group in groups.items():
            sent = [
                (i, c)
                for i, c in zip(plan.src_idx, plan.cols, strict=True)
                if plan.changes.columns[i] not in unchanged and c not in t.identity_always
            ]
            cols = [c for _, c in sent]
            tmp = self._temp(
                plan, plan.key_cols, cols, (list(m.old_key) + [m.values[i] for i, _ in sent] for m in group)
            )
            sets = ", ".join(f"{ident(c)} = s.c{j}" for j, c in enumerate(cols))
            found = self.run(
                f"UPDATE {t.sql} AS t SET {sets} FROM {tmp} AS s WHERE {self._match(plan, cols, old=True)}",
                stats=stats,
            )
            if found < len(group) and not unchanged and all(k in cols for k in plan.key_cols):
                select = ", ".join(f"s.c{j}" for j in range(len(cols)))
                found += self.run(
                    f"INSERT INTO {t.sql} ({', '.join(ident(c) for c in cols)}) OVERRIDING SYSTEM VALUE "
                    f"SELECT {select} FROM {tmp} AS s WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {t.sql} AS t WHERE {self._match(plan, cols)})",
                    stats=stats,
                )
            stats.missing += max(len(group) - found, 0)

    def _upsert_from(self, plan: Plan, tmp: str, stats: ApplyStats) -> None:
        """Whole rows: insert = upsert.  Without a unique index on the key on the target (ON CONFLICT
        needs one), update what is there and insert the rest."""
        t = plan.table
        cols = plan.cols
        collist = ", ".join(ident(c) for c in cols)
        select = ", ".join(f"s.c{j}" for j in range(len(cols)))
        settable = [(j, c) for j, c in enumerate(cols) if c not in plan.key_cols and c not in t.identity_always]
        match = self._match(plan, cols)
        if frozenset(plan.key_cols) in t.unique_keys:
            conflict = ", ".join(ident(c) for c in plan.key_cols)
            action = (
                "DO UPDATE SET " + ", ".join(f"{ident(c)} = EXCLUDED.{ident(c)}" for _, c in settable)
                if settable
                else "DO NOTHING"
            )
            self.run(
                f"INSERT INTO {t.sql} AS t ({collist}) OVERRIDING SYSTEM VALUE SELECT {select} FROM {tmp} AS s "
                f"ON CONFLICT ({conflict}) {action}",
                stats=stats,
            )
            return
        if settable:
            sets = ", ".join(f"{ident(c)} = s.c{j}" for j, c in settable)
            self.run(f"UPDATE {t.sql} AS t SET {sets} FROM {tmp} AS s WHERE {match}", stats=stats)
        self.run(
            f"INSERT INTO {t.sql} ({collist}) OVERRIDING SYSTEM VALUE SELECT {select} FROM {tmp} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t.sql} AS t WHERE {match})",
            stats=stats,
        )

    # ------------------------------------------------------------------ one row at a time

    def _sent(self, plan: Plan, values: Sequence[str | None], unchanged: frozenset[str]) -> list[tuple[str, Any]]:
        """(target column, value) of the columns a change carries, generated ones and unsent TOAST left out."""
        return [
            (c, values[i])
            for i, c in zip(plan.src_idx, plan.cols, strict=True)
            if plan.changes.columns[i] not in unchanged
        ]

    def _where_key(self, plan: Plan, key: Key) -> tuple[str, list[Any]]:
        return " AND ".join(f"{_p(c)} = %s" for c in plan.key_cols), list(key)

    def _row_upsert(self, plan: Plan, values: Sequence[str | None], stats: ApplyStats) -> None:
        t = plan.table
        pairs = self._sent(plan, values, frozenset())
        collist = ", ".join(_p(c) for c, _ in pairs)
        marks = ", ".join("%s" for _ in pairs)
        params = [v for _, v in pairs]
        settable = [c for c, _ in pairs if c not in plan.key_cols and c not in t.identity_always]
        if frozenset(plan.key_cols) in t.unique_keys:
            conflict = ", ".join(_p(c) for c in plan.key_cols)
            action = (
                "DO UPDATE SET " + ", ".join(f"{_p(c)} = EXCLUDED.{_p(c)}" for c in settable)
                if settable
                else "DO NOTHING"
            )
            self.run(
                f"INSERT INTO {_pq(t)} ({collist}) OVERRIDING SYSTEM VALUE VALUES ({marks}) "
                f"ON CONFLICT ({conflict}) {action}",
                params,
                stats=stats,
            )
            return
        key = tuple(values[plan.changes.columns.index(k)] for k in plan.key)
        if self._row_update(plan, key, [(c, v) for c, v in pairs if c in settable], stats, count_missing=False):
            return
        self.run(f"INSERT INTO {_pq(t)} ({collist}) OVERRIDING SYSTEM VALUE VALUES ({marks})", params, stats=stats)

    def _row_update(
        self, plan: Plan, key: Key, pairs: list[tuple[str, Any]], stats: ApplyStats, *, count_missing: bool = True
    ) -> bool:
        """UPDATE one row by key; True when it was there."""
        where, wparams = self._where_key(plan, key)
        if not pairs:  # nothing to set: only whether the row exists matters
            found = self.run(f"SELECT 1 FROM {_pq(plan.table)} WHERE {where}", wparams, stats=stats) > 0
        else:
            sets = ", ".join(f"{_p(c)} = %s" for c, _ in pairs)
            found = (
                self.run(
                    f"UPDATE {_pq(plan.table)} SET {sets} WHERE {where}", [v for _, v in pairs] + wparams, stats=stats
                )
                > 0
            )
        if not found and count_missing:
            stats.missing += 1
        return found

    def _key_change(self, plan: Plan, kc: KeyChange, stats: ApplyStats) -> None:
        pairs = [(c, v) for c, v in self._sent(plan, kc.values, kc.unchanged) if c not in plan.table.identity_always]
        if self._row_update(plan, kc.old_key, pairs, stats, count_missing=False):
            return
        if not kc.unchanged:  # the old row is not there (snapshot: none): the new row is whole, so upsert it
            self._row_upsert(plan, kc.values, stats)
        else:
            stats.missing += 1

    def apply_exact(self, plan: Plan, stats: ApplyStats) -> None:
        """Every change in source order, one statement each: key-less tables, and the fallback."""
        if not plan.key:
            self._apply_keyless(plan, stats)
            return
        columns = plan.changes.columns
        key_idx = [columns.index(k) for k in plan.key]
        for row in after_last_truncate(plan.changes.rows)[1]:
            unchanged = frozenset(row.unchanged)
            if row.op == "D":
                where, params = self._where_key(plan, _key_values(row, columns, key_idx, old=True))
                self.run(f"DELETE FROM {_pq(plan.table)} WHERE {where}", params, stats=stats)
                continue
            new = _key_values(row, columns, key_idx, old=False)
            old = _key_values(row, columns, key_idx, old=True) if row.before is not None else new
            if old != new:
                self._key_change(plan, KeyChange(old, list(row.values), unchanged, row.seq), stats)
            elif not unchanged:
                self._row_upsert(plan, row.values, stats)
            else:
                pairs = [
                    (c, v)
                    for c, v in self._sent(plan, row.values, unchanged)
                    if c not in plan.key_cols and c not in plan.table.identity_always
                ]
                self._row_update(plan, new, pairs, stats)

    # ------------------------------------------------------------------ key-less tables

    def _apply_keyless(self, plan: Plan, stats: ApplyStats) -> None:
        t = plan.table
        for step in keyless_steps(plan.changes):
            if isinstance(step, RowInsert):
                collist = ", ".join(ident(c) for c in plan.cols)
                stats.statements += 1
                with self.conn.cursor().copy(f"COPY {t.sql} ({collist}) FROM STDIN") as copy:
                    for values in step.rows:
                        copy.write_row([values[i] for i in plan.src_idx])
            elif isinstance(step, RowChange):
                self._keyless_change(plan, step, stats)

    def _keyless_change(self, plan: Plan, change: RowChange, stats: ApplyStats) -> None:
        """Change one row equal to the whole old row.  Values are compared as the types' text output
        (what the source sent): exact for every type, including those without an equality operator
        (json, point…) or whose ``=`` is loose (box compares areas)."""
        t = plan.table
        conds, params = [], []
        for i, c in zip(plan.src_idx, plan.cols, strict=True):
            value = change.before[i]
            if value is None:
                conds.append(f"{_p(c)} IS NULL")
            else:
                conds.append(f"{_p(c)} IS NOT NULL AND format('%%s', {_p(c)}) = %s")
                params.append(value)
        found = self.conn.execute(
            f"SELECT tableoid, ctid FROM {_pq(t)} WHERE {' AND '.join(conds) or 'true'} LIMIT 1 FOR UPDATE", params
        ).fetchone()
        stats.statements += 1
        if found is None:
            stats.missing += 1
            return
        found = (str(found[0]), str(found[1]))  # sent untyped: the server reads them as oid and tid
        where = "tableoid = %s AND ctid = %s"
        if change.values is None:
            self.run(f"DELETE FROM {_pq(t)} WHERE {where}", list(found), stats=stats)
            return
        pairs = [(c, v) for c, v in self._sent(plan, change.values, change.unchanged) if c not in t.identity_always]
        if pairs:
            sets = ", ".join(f"{_p(c)} = %s" for c, _ in pairs)
            self.run(f"UPDATE {_pq(t)} SET {sets} WHERE {where}", [v for _, v in pairs] + list(found), stats=stats)


def _pq(table: TargetTable) -> str:
    return table.sql.replace("%", "%%")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(change: dict[str, object]) -> str:
    """Capture's own words for a schema change (``detail``), else built from its kind and column."""
    if change.get("detail"):
        return str(change["detail"])
    kind = str(change.get("kind", "?")).replace("_", " ")
    column = change.get("column")
    return f"column {column!r} {kind.removeprefix('column ')}" if column else kind


# ============================================================================================ snapshot marks


@dataclass(frozen=True)
class TableMark:
    """What the rows of one table loaded from the volume already hold (MySQL sources; module docstring).

    ``below`` is the binlog ordinal of the snapshot the table's parts were read in — the lowest, when they
    were read in several — and ``engines/mysql/binlog.in_snapshot(pos, below)`` says whether a change is
    already in them: replay skips those.
    """

    table: str  # the source table, schema.table, for messages
    below: int
    snapshots: tuple[str, ...]  # the distinct snapshot positions (binlog file:offset), lowest first
    columns: frozenset[str]  # the target columns the parts hold values of (the plan's)
    source_key: bool  # the source table has a primary key (the stream sends it as the key)

    @property
    def mixed(self) -> bool:
        """The parts were read in more than one snapshot."""
        return len(self.snapshots) > 1


def snapshot_marks(
    plan: VolumePlan, positions: Mapping[tuple[str, str, int], Mapping[str, Any] | None], basename: str | None = None
) -> dict[tuple[str, str], TableMark]:
    """Target (schema, table) -> :class:`TableMark`, from each part's sidecar ``source_position`` (by source
    schema, table and part index) of a MySQL plan.  ``basename``: the stream's binlog base name, which
    every position must share (ordinals of another binlog mean nothing)."""
    from bulkmig.engines.mysql.binlog import snapshot_position

    out: dict[tuple[str, str], TableMark] = {}
    for table in plan.tables:
        found = []
        for part in table.partitions:
            pos = snapshot_position(positions.get((table.schema, table.name, part.index)))
            if pos is None or (basename and pos.basename != basename):
                what = f"binlog position {pos}, not in the stream's {basename}.* files" if pos else "no binlog position"
                raise IntegrityError(
                    f"part {part.index} of {table.qualified} on volume {plan.volume_id} records {what}, so replay "
                    "cannot tell which changes its rows already hold",
                    "extract with the binlog on (log_bin) from the server the stream reads, or re-plan "
                    "(`bulkmig plan --restart`)",
                )
            found.append(pos)
        if not found:
            continue
        distinct = sorted(set(found), key=lambda p: p.ordinal)
        out[table.target_qualified] = TableMark(
            table=table.qualified,
            below=distinct[0].ordinal,
            snapshots=tuple(str(p) for p in distinct),
            columns=frozenset(c.target for c in table.columns),
            source_key=bool(table.primary_key),
        )
    return out


def refuse_mixed_keyless(
    marks: Mapping[tuple[str, str], TableMark], has_key: Callable[[tuple[str, str]], bool]
) -> None:
    """Refuse a table without a key whose parts were read in different snapshots: the changes between them
    are in some of its loaded rows and not in others, and no key says which rows.  ``has_key(target)``:
    whether the target table has a primary key after all (replay then applies by it, idempotently)."""
    bad = [m for t, m in marks.items() if m.mixed and not m.source_key and not has_key(t)]
    if bad:
        m = bad[0]
        others = f" (and {', '.join(b.table for b in bad[1:])})" if len(bad) > 1 else ""
        raise PlanError(
            f"table {m.table}{others} has no primary key and its parts were read in {len(m.snapshots)} different "
            f"snapshots (binlog {', '.join(m.snapshots)}): replay cannot apply the changes between them exactly",
            "re-extract the table in one extract run and load it again, or re-plan (`bulkmig plan --restart`)",
        )


def volume_marks(task: Task, stream: Stream, stream_doc: Mapping[str, Any] | None) -> dict[tuple[str, str], TableMark]:
    """The :class:`TableMark` of every table of the imported volume, for a MySQL stream; {} for any other
    stream (a PostgreSQL plan's parts are all read in the slot's own snapshot), for ``migration_type: cdc``
    and when the bucket holds no volume (nothing was loaded from one).  Sidecars are checked against the
    sealed manifest: a wrong position would skip or repeat changes silently.  ``stream_doc``: the stream's
    ``stream.json`` (None: absent), read once by :func:`replay`.  The sidecars are read a few at a time:
    one small GET per part adds up to minutes of latency on a large volume."""
    from bulkmig.volume.verify import run_parallel

    doc = stream_doc or {}
    if str(doc.get("engine") or task.source.engine) != "mysql" or task.migration_type == "cdc":
        return {}
    from bulkmig.fullload.load import find_volume

    try:
        volume, manifest, plan = find_volume(task)
    except PlanError:
        if any(i.key.endswith("/" + layout.VOLUME_MANIFEST) for i in stream.store.list("volumes/")):
            raise
        say(f"replay: {task.bucket} holds no imported volume: every change of stream {stream.stream_id} is applied")
        return {}

    def position(part: tuple[Table, int]) -> Mapping[str, Any] | None:
        table, index = part
        key = layout.sidecar_key(table.schema, table.name, index)
        where = f"{volume.url}/{key}"
        try:
            data = volume.get_bytes(key)
        except NotFound:
            raise IntegrityError(f"{where} is missing from the imported volume", "re-import the volume") from None
        entry = manifest.entry(key)
        if entry is None or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(f"{where} does not match the sealed manifest", "re-import the volume") from None
        return PartManifest.from_bytes(data, where).source_position

    parts = plan.parts()
    found = run_parallel(position, parts, SIDECAR_READERS)  # in order; the first failing part raises
    positions = {(table.schema, table.name, index): p for (table, index), p in zip(parts, found, strict=True)}
    marks = snapshot_marks(plan, positions, doc.get("basename"))
    start = _lsn(doc.get("start_pos"))
    early = [m for m in marks.values() if start is not None and m.below < start]
    if early:
        raise IntegrityError(
            f"the parts of {early[0].table} were read at binlog {early[0].snapshots[0]}, before change stream "
            f"{stream.stream_id} starts ({doc.get('start_binlog')}): the changes in between are in neither",
            "the stream and the volume come from different plans; start over with a new plan and a new stream",
        )
    return marks


def _in_snapshot(pos: int | None, below: int) -> bool:
    from bulkmig.engines.mysql.binlog import in_snapshot  # only MySQL streams have marks

    return pos is not None and in_snapshot(pos, below)


def names_are_target(task: Task, doc: Mapping[str, Any] | None) -> bool:
    """Whether the stream carries target names (``stream.json`` ``doc``: ``"names": "target"``; MySQL
    capture).  Without the document the source engine decides: only MySQL capture writes target names."""
    if doc is None:
        return task.source.engine == "mysql"
    return doc.get("names") == "target"


# ============================================================================================ streams


@dataclass
class Stream:
    """One change stream in the bucket: ``cdc/<stream_id>/``."""

    store: Store  # the bucket (task.bucket)
    stream_id: str

    @property
    def prefix(self) -> str:
        return layout.join("cdc", self.stream_id)

    def batches(self) -> list[int]:
        return list_batches(self.store, self.prefix)

    def read(self, seq: int) -> Batch | None:
        """The batch, or None while its batch.json is not there (a batch without it does not exist)."""
        try:
            batch = read_batch(self.store, self.prefix, seq)
        except NotFound:
            return None
        if batch.stream_id != self.stream_id or batch.seq != seq:
            raise IntegrityError(
                f"{self.store.url}/{self.prefix}/{layout.batch_dir(seq)} says it is batch {batch.seq} of stream "
                f"{batch.stream_id!r}",
                "the bucket holds a batch copied from another stream; remove it and restore the right one",
            )
        return batch

    def document(self, name: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.store.get_bytes(layout.join(self.prefix, name)))
        except NotFound:
            return None
        return doc if isinstance(doc, dict) else None

    def captured_through(self) -> int | None:
        """``progress.json``'s ``captured_through``: every change committed up to it is in a batch."""
        doc = self.document(PROGRESS)
        return _lsn(doc.get("captured_through")) if doc else None


def _lsn(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        try:
            return parse_lsn(value)
        except ValueError:
            return None
    return None


def find_stream(task: Task, store: Store | None = None) -> Stream:
    """This task's change stream: the only one under ``cdc/``, or the one of the task's slot."""
    store = store or open_store(task.bucket, task.s3_options())
    ids = sorted({info.key.split("/")[1] for info in store.list("cdc/") if info.key.count("/") >= 2})
    if not ids:
        raise PlanError(
            f"{task.bucket} holds no change stream (nothing under cdc/)",
            f"start capture first: `bulkmig capture --task {task.path or 'task.yaml'}`",
        )
    if len(ids) == 1:
        return Stream(store, ids[0])
    # Several streams (an earlier, abandoned one?): the one capture names after this task's slot.
    from bulkmig.cdc.stream import stream_names
    from bulkmig.engines.postgres.capture import stream_id_for

    slot = stream_names(task)[0]
    matching = [i for i in ids if i == stream_id_for(slot)]
    if not matching:
        matching = [i for i in ids if (Stream(store, i).document(STREAM_MANIFEST) or {}).get("slot") == slot]
    if len(matching) == 1:
        return Stream(store, matching[0])
    raise ConfigError(
        f"{task.bucket} holds {len(ids)} change streams ({', '.join(ids)}) and none is the stream of slot {slot!r}",
        "set settings.slot_name in the task to the slot of the stream to replay",
    )


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


def _open_target(task: Task) -> psycopg.Connection:
    conn = connect(task.target, autocommit=True)
    try:
        conn.execute("SET session_replication_role = replica")
    except psycopg.Error as exc:
        conn.close()
        raise TargetError(
            f"target {task.target.redacted()}: cannot SET session_replication_role = replica ({_first_line(exc)})",
            "replay as a superuser (or a role allowed to set it) so target triggers do not fire",
        ) from None
    for attempt in range(2):  # a concurrent `load` may create the schema at the same moment
        try:
            conn.execute(POSITION_DDL)
            break
        except pgerrors.UniqueViolation:
            if attempt:
                raise
    return conn


def _position(conn: psycopg.Connection, stream_id: str, *, lock: bool = False) -> tuple[int, str, Any] | None:
    row = conn.execute(
        "SELECT seq, pos, commit_ts FROM bulkmig.replay_position WHERE stream_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (stream_id,),
    ).fetchone()
    return (int(row[0]), str(row[1]), row[2]) if row else None


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
    return _lsn(row[0]) if row else None


class _Runner:
    """One replay run: the lock, the next batch to apply, gap detection, and the report."""

    def __init__(
        self,
        task: Task,
        stream: Stream,
        conn: psycopg.Connection,
        report: ReplayReport,
        *,
        marks: Mapping[tuple[str, str], TableMark] | None = None,
        target_names: bool = False,
        stream_doc: Mapping[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.stream = stream
        # stream.json is written once, before any batch: read once per replay() rather than per session.
        self.stream_doc = dict(stream_doc or {})
        self.conn = conn
        self.report = report
        self.marks = dict(marks or {})
        self.applier = Applier(conn, task, names_are_target=target_names, marks=self.marks)
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
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        key = f"bulkmig.replay:{self.stream.stream_id}"
        while not self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TargetError(
                    f"another `bulkmig replay` is applying stream {self.stream.stream_id} to this target",
                    "let it run (or stop it) — two replayers of one stream are never needed",
                )
            time.sleep(0.5)

    def start(self) -> None:
        pos = _position(self.conn, self.stream.stream_id)
        if pos is not None:
            self.next_seq = pos[0] + 1
            self.report.applied_seq, self.report.applied_pos, self.report.last_commit_ts = pos
        self._use_marks(_lsn(pos[1]) if pos is not None else None)
        self.check_gap(self.stream.batches())

    def _use_marks(self, applied: int | None) -> None:
        """Forget the snapshot marks once the target is past all of them (every change still to come is
        newer); else refuse what cannot be exact, and say what is skipped."""
        if not self.marks:
            return
        if applied is not None and not any(_in_snapshot(applied, m.below) for m in self.marks.values()):
            self.marks.clear()
            self.applier.use_marks({})
            return
        refuse_mixed_keyless(self.marks, self._target_has_key)
        seen = sorted({s for m in self.marks.values() for s in m.snapshots})
        say(
            f"replay: the loaded rows were read at binlog {', '.join(seen)}; the changes of each table committed "
            "before its rows were read are skipped"
        )

    def _target_has_key(self, target: tuple[str, str]) -> bool:
        table = read_target_table(self.conn, *target)
        return table is not None and bool(table.primary_key)

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
        commit_ts = _last_commit(batch)
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
        """Apply one batch with its position row in one transaction; replay it change by change if the
        bulk path hits a conflict that only the reordering of compaction can cause."""
        for exact in (False, True):
            try:
                with self.conn.transaction():
                    pos = _position(self.conn, self.stream.stream_id, lock=True)
                    if pos is not None and pos[0] >= batch.seq:
                        raise TargetError(
                            f"batch {batch.seq} of stream {self.stream.stream_id} is already applied "
                            f"(the target is at batch {pos[0]})",
                            "another replayer ran at the same time; rerun `bulkmig replay`",
                        )
                    if pos is not None and pos[0] + 1 != batch.seq:
                        raise IntegrityError(
                            f"the target is at batch {pos[0]} of stream {self.stream.stream_id}, the next one to "
                            f"apply would be {batch.seq}",
                            "something else changed bulkmig.replay_position; restore it or start over",
                        )
                    stats = self.applier.apply(batch, exact=exact, accept_drift=accept_drift)
                    self.conn.execute(
                        "INSERT INTO bulkmig.replay_position (stream_id, seq, pos, applied_at, commit_ts) "
                        "VALUES (%s, %s, %s, clock_timestamp(), %s) ON CONFLICT (stream_id) DO UPDATE SET "
                        "seq = EXCLUDED.seq, pos = EXCLUDED.pos, applied_at = EXCLUDED.applied_at, "
                        "commit_ts = COALESCE(EXCLUDED.commit_ts, bulkmig.replay_position.commit_ts)",
                        (self.stream.stream_id, batch.seq, batch.last_pos, _last_commit(batch)),
                    )
                return stats, exact
            except REORDER_ERRORS as exc:
                self.applier.forget()
                if exact:
                    raise TargetError(
                        f"replay of batch {batch.seq} failed: {_first_line(exc)}",
                        "the target refuses a row the source accepted; compare the constraints of the two "
                        "tables, fix the target, and rerun `bulkmig replay`",
                    ) from exc
                say(f"replay: batch {batch.seq}: {_first_line(exc)}; applying it again change by change")
            except psycopg.Error as exc:  # reading or writing the position
                self.applier.forget()
                raise TargetError(
                    f"replay of batch {batch.seq} failed: {_first_line(exc)}",
                    "fix the cause on the target and rerun `bulkmig replay` (this batch is retried whole)",
                ) from exc
            except BaseException:
                self.applier.forget()  # the transaction rolled back, so may have a column it added
                raise
        raise AssertionError("unreachable")

    def pending(self) -> int:
        if self.next_seq is None:
            return len(self.stream.batches())
        return len([s for s in self.stream.batches() if s >= self.next_seq])


def _last_commit(batch: Batch) -> datetime | None:
    return max((r.commit_ts for t in batch.tables for r in t.rows if r.commit_ts is not None), default=None)


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
) -> None:
    """One session of :func:`replay`: connect, lock, apply until the mode says stop."""
    conn = _open_target(task)
    runner: _Runner | None = None
    try:
        runner = _Runner(task, stream, conn, report, marks=marks, target_names=target_names, stream_doc=stream_doc)
        runner.lock()
        runner.start()
        session["started"] = session["fresh"] = True
        last_source = last_listing = time.monotonic()
        while not stop.is_set():
            # progress.json first: every batch it vouches for is durable, so listed by the steps below.
            captured = stream.captured_through() if goal is not None else None
            while not stop.is_set() and runner.step(accept_drift=session["accept"]):
                session["accept"] = False
            if stop.is_set():
                break
            applied = _lsn(report.applied_pos)
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
        conn.close()


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
            _run(task, stream, report, goal, follow, poll_interval, stop, session, marks, target_names, stream_doc)
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
        applied = _lsn(report.applied_pos)
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
    with connect(task.target, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('bulkmig.replay_position') IS NOT NULL").fetchone()[0]
        row = None
        if exists:
            row = conn.execute(
                "SELECT seq, pos, applied_at, commit_ts FROM bulkmig.replay_position WHERE stream_id = %s",
                (stream.stream_id,),
            ).fetchone()
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
    applied = _lsn(status["applied_pos"])
    status["lag_bytes"] = max(source - applied, 0) if source is not None and applied is not None else None
    status["lag_seconds"] = _age(row[3]) if row and row[3] else None
    return status


__all__ = [
    "POSITION_DDL",
    "ReplayReport",
    "Stream",
    "compact",
    "TableMark",
    "find_stream",
    "keyless_steps",
    "names_are_target",
    "refuse_mixed_keyless",
    "replay",
    "replay_status",
    "snapshot_marks",
    "volume_marks",
]
