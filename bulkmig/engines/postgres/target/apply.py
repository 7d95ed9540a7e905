"""Applying one batch's steps to the target in one transaction: bulk, change by change, key-less
(schema drift first: :mod:`bulkmig.engines.postgres.target.drift`).

PostgreSQL's apply for replay (:mod:`.replay` opens the session); the why of replay is in
:mod:`bulkmig.replay.runner`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import errors as pgerrors

from bulkmig.cdc.applying import ApplyStats, TableMark
from bulkmig.cdc.batch import Batch, TableChanges
from bulkmig.cdc.compact import (
    Key,
    KeyChange,
    RowChange,
    RowInsert,
    _key_values,
    after_last_truncate,
    keyless_steps,
)
from bulkmig.cdc.net import NetChanges, col, net_changes, old, only_inserts
from bulkmig.cdc.position import lsn_or_none
from bulkmig.config.task import Task
from bulkmig.core.errors import (
    BulkmigError,
    ConfigError,
    IntegrityError,
    PlanError,
    TargetError,
)
from bulkmig.core.log import say
from bulkmig.engines.postgres.sql import ident
from bulkmig.engines.postgres.target.drift import apply_drift
from bulkmig.engines.postgres.target.tables import TablePlan, TargetTable, _p, read_target_table

# Errors the bulk path can meet only because compaction reorders changes across keys; the batch is
# then replayed change by change in source order.
REORDER_ERRORS = (pgerrors.UniqueViolation, pgerrors.ExclusionViolation, pgerrors.CardinalityViolation)


# Key types whose equality is the equality of their text output, which compaction compares (see
# Applier.not_set_based); text types only with a deterministic collation (TargetTable.loose).
_TEXT_KEY_TYPES = re.compile(
    r"^(?:smallint|integer|bigint|oid|text|uuid|date|boolean|bytea|character varying(?:\(\d+\))?"
    r"|character(?:\(\d+\))?|numeric\(\d+,\d+\)|time(?:stamp)?(?:\(\d\))? with(?:out)? time zone)$"
)

# How many temp tables a replay session keeps (see Applier._temp) before it drops them all.
MAX_TEMPS = 64

# ============================================================================================ apply


class Applier:
    """Applies batches on one target connection; caches target catalogs between batches."""

    def __init__(
        self,
        conn: psycopg.Connection,
        task: Task,
        *,
        names_are_target: bool = False,
        marks: Mapping[tuple[str, str], TableMark] | None = None,
        set_based: bool = True,
    ) -> None:
        self.conn = conn
        self.set_based = set_based  # False: every batch change by change (the reference the tests and bench compare)
        self.task = task
        self.names_are_target = names_are_target  # the stream's names are the target's: no mapping applies
        self.marks: dict[tuple[str, str], TableMark] = {}  # target table -> what its loaded rows already hold
        self._marks_below: int | None = None
        self.use_marks(marks or {})
        self._ordinals: dict[str, int] = {}
        self._tables: dict[tuple[str, str], TargetTable] = {}
        self._tmp = 0
        # Temp tables by shape, kept for the session (ON COMMIT DELETE ROWS: creating them anew for every
        # batch cost more than filling them); the ones used in the current transaction.
        self._temps: dict[tuple[int, str, tuple[str, ...], tuple[str, ...]], str] = {}
        self._used: set[str] = set()
        self._said: set[tuple[str, str, str]] = set()  # fallbacks already reported
        self._selected: dict[tuple[str, str], bool] = {}

    # ------------------------------------------------------------------ names and catalogs

    def use_marks(self, marks: Mapping[tuple[str, str], TableMark]) -> None:
        """Skip the changes these tables' loaded rows already hold (see :class:`TableMark`)."""
        self.marks = dict(marks)
        self._marks_below = max((m.below for m in self.marks.values()), default=None)

    def forget(self) -> None:
        """Drop the cached catalogs and temp tables (after a rollback, which may have dropped temp tables
        it created, or a schema change)."""
        self._tables.clear()
        self._temps.clear()

    def forget_table(self, schema: str, table: str) -> None:
        """Drop one target table's cached catalog (its columns changed: :mod:`.drift`)."""
        self._tables.pop((schema, table), None)

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

    def plan(self, changes: TableChanges) -> TablePlan:
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
        return TablePlan(table, changes, src_idx, cols, key, [mapped[k] for k in key])

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
        self._used = set()
        if len(self._temps) > MAX_TEMPS:  # every commit empties each of them: keep the set small
            self.conn.execute("DROP TABLE IF EXISTS " + ", ".join(self._temps.values()))
            self._temps.clear()
        self._ordinals = {}
        where = ""
        try:
            apply_drift(self, batch, accept_drift)
            plans = []
            marked = False
            if self._marks_below is not None and (first := lsn_or_none(batch.first_pos)) is not None:
                from bulkmig.engines.mysql.binlog import in_snapshot  # only MySQL streams have marks

                marked = in_snapshot(first, self._marks_below)
            for t in batch.tables:
                if t.count and self.selected(t.schema, t.table):
                    where = f" into {t.schema}.{t.table}"
                    if marked:
                        t = self.unseen(t, stats)
                    if t.count:
                        plans.append(self.plan(t))
            truncated = [p for p in plans if "T" in p.changes.ops()]
            if truncated:
                where = " (TRUNCATE)"
                items = ", ".join(("" if p.table.relkind == "p" else "ONLY ") + p.table.sql for p in truncated)
                self.run(f"TRUNCATE TABLE {items}", stats=stats)
            for p in plans:
                where = f" into {p.table.schema}.{p.table.name}"
                if exact or not p.key or not self.set_based:
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
        return changes.with_rows(kept)

    def _ordinal(self, pos: str) -> int:
        found = self._ordinals.get(pos)
        if found is None:
            found = lsn_or_none(pos)
            if found is None:
                raise IntegrityError(f"a change batch row has position {pos!r}", "expected an LSN like 2A/4D2")
            self._ordinals[pos] = found
        return found

    def run(self, statement: str, params: Sequence[Any] | None = None, *, stats: ApplyStats) -> int:
        stats.statements += 1
        cur = self.conn.execute(statement, params)
        return cur.rowcount

    # ------------------------------------------------------------------ keyed tables, set-based

    def _temp(self, plan: TablePlan, role: str, old: Sequence[str], cols: Sequence[str], data: pa.Table | None) -> str:
        """A temp table holding ``data`` (text columns, in order): columns ``o0…`` typed like the target's
        ``old`` (old key values), then ``c0…`` typed like ``cols``, so COPY parses the source's text with
        the target's own input functions.  Positional names cannot clash with any user column name.  One
        temp table per role and shape for the session, emptied by every commit (ON COMMIT DELETE ROWS)
        and for a second use in one transaction."""
        shape = (plan.table.oid, role, tuple(old), tuple(cols))
        name = self._temps.get(shape)
        if name is None:
            self._tmp += 1
            name = f"pg_temp.{ident(f'bulkmig_replay_{self._tmp}')}"
            select = ", ".join(
                [f"t.{ident(c)} AS o{i}" for i, c in enumerate(old)]
                + [f"t.{ident(c)} AS c{i}" for i, c in enumerate(cols)]
            )
            self.conn.execute(
                f"CREATE TEMP TABLE {name} ON COMMIT DELETE ROWS AS SELECT {select} FROM {plan.table.sql} AS t LIMIT 0"
            )
            self._temps[shape] = name
        elif name in self._used:
            self.conn.execute(f"TRUNCATE {name}")
        self._used.add(name)
        if data is not None and data.num_rows:
            self._copy(name, data)
        return name

    def _copy(self, into: str, data: pa.Table) -> None:
        """COPY the text columns of ``data`` into ``into`` (a table and its column list).  pyarrow's CSV
        writer quotes every string and writes NULL as nothing, so COPY's CSV reads back exactly the same
        values, "" included: in C, not a Python call per value."""
        sink = io.BytesIO()
        pa_csv.write_csv(data, sink, pa_csv.WriteOptions(include_header=False))
        with self.conn.cursor().copy(f"COPY {into} FROM STDIN (FORMAT csv, ENCODING 'UTF8')") as copy:
            copy.write(sink.getbuffer())

    @staticmethod
    def _match(plan: TablePlan, cols: Sequence[str], old: bool = False) -> str:
        """``t.<key> = s.<its temp column>`` for every key column: the old key (``o<j>``) or the key
        among ``cols``."""
        return " AND ".join(
            f"t.{ident(k)} = s.{'o' + str(j) if old else 'c' + str(cols.index(k))}" for j, k in enumerate(plan.key_cols)
        )

    def not_set_based(self, plan: TablePlan) -> str | None:
        """Why this table's changes cannot be applied set-based with a proven same result, or None.

        Compaction compares keys as the text the source sent, so a key column's type must have an
        equality that is equality of its text output (``numeric`` without a scale has 1.0 = 1.00, citext
        and nondeterministic collations ignore case, floats have -0 = 0, domains may be anything).
        """
        t = plan.table
        loose = [c for c in plan.key_cols if c in t.loose or not _TEXT_KEY_TYPES.match(t.types.get(c, ""))]
        if loose:
            return (
                f"key column(s) {', '.join(f'{c!r} ({t.types.get(c)})' for c in loose)} have an equality that "
                "is not the equality of their text"
            )
        return None

    def apply_bulk(self, plan: TablePlan, stats: ApplyStats) -> None:
        """Set-based: the batch's net change per key (:mod:`bulkmig.cdc.net`), then per table one COPY
        into a temp table and one statement per kind of change, in an order in which no statement sees a
        key twice: read the rows moved by key changes, delete, update, upsert whole rows, insert the moved
        rows.  A key updated to another key's old value is a delete and an insert, and never collides.

        Foreign keys are not checked (``session_replication_role = replica``, as in PostgreSQL's own
        logical replication): each batch ends on a transaction boundary of the source, where they hold.  A
        secondary unique index can see a value move between rows in an order the source never had; that
        raises, and the runner replays the batch change by change (:data:`REORDER_ERRORS`).

        Falls back to :meth:`apply_exact` (one change at a time, in order) for a table where the result
        is not proven the same: see :meth:`not_set_based` and, for a batch that changes keys, ``carried``
        in :func:`~bulkmig.cdc.net.net_changes`.
        """
        t = plan.table
        why = self.not_set_based(plan)
        net = None
        if why is None:
            carried = [c for c in t.types if c not in plan.cols and c not in t.generated]
            first_wins = [
                plan.changes.columns[i] for i, c in zip(plan.src_idx, plan.cols, strict=True) if c in t.identity_always
            ]
            net = net_changes(plan.changes, plan.key, first_wins=first_wins, carried=bool(carried))
            if net is None:
                why = (
                    "the batch changes keys, and a moved row keeps the values of columns that replay does not "
                    f"write ({', '.join(map(repr, carried or sorted(t.identity_always)))}: not in the change "
                    "stream, or GENERATED ALWAYS AS IDENTITY)"
                )
        if net is None:
            if (t.schema, t.name, why) not in self._said:
                self._said.add((t.schema, t.name, why))
                say(f"replay: {t.schema}.{t.name} is applied change by change: {why}")
            self.apply_exact(plan, stats)
            return
        self._apply_net(plan, net, stats)

    def _apply_net(self, plan: TablePlan, net: NetChanges, stats: ApplyStats) -> None:
        t = plan.table
        names = plan.changes.columns
        key_src = [names.index(k) for k in plan.key]
        stats.missing += net.missing
        moved = None  # the rows moved by key changes, whole, read before anything is deleted
        expected = 0
        for inherit, rows in net.derived:
            lit = [(i, c) for i, c in zip(plan.src_idx, plan.cols, strict=True) if names[i] not in inherit]
            data = rows.select([old(j) for j in range(len(key_src))] + [col(i) for i, _ in lit])
            tmp = self._temp(plan, "derived", plan.key_cols, [c for _, c in lit], data)
            if moved is None:
                moved = self._temp(plan, "moved", [], plan.cols, None)
            position = {c: j for j, (_, c) in enumerate(lit)}
            select = ", ".join(f"s.c{position[c]}" if c in position else f"t.{ident(c)}" for c in plan.cols)
            found = self.run(
                f"INSERT INTO {moved} SELECT {select} FROM {tmp} AS s JOIN {t.sql} AS t "
                f"ON {self._match(plan, [], old=True)}",
                stats=stats,
            )
            expected += rows.num_rows
            stats.missing += max(rows.num_rows - found, 0)
        if net.deletes is not None and net.deletes.num_rows:
            tmp = self._temp(plan, "delete", [], plan.key_cols, net.deletes.select([col(j) for j in key_src]))
            self.run(f"DELETE FROM {t.sql} AS t USING {tmp} AS s WHERE {self._match(plan, plan.key_cols)}", stats=stats)
        for unsent, rows in net.updates:
            sent = [
                (i, c)
                for i, c in zip(plan.src_idx, plan.cols, strict=True)
                if names[i] not in unsent and c not in plan.key_cols and c not in t.identity_always
            ]
            if not sent:
                continue  # nothing to set: the row keeps every value it has
            cols = list(plan.key_cols) + [c for _, c in sent]
            data = rows.select([col(j) for j in key_src] + [col(i) for i, _ in sent])
            tmp = self._temp(plan, "update", [], cols, data)
            sets = ", ".join(f"{ident(c)} = s.c{j}" for j, c in enumerate(cols) if j >= len(key_src))
            found = self.run(
                f"UPDATE {t.sql} AS t SET {sets} FROM {tmp} AS s WHERE {self._match(plan, cols)}", stats=stats
            )
            stats.missing += max(rows.num_rows - found, 0)
        if net.full is not None and net.full.num_rows:
            tmp = self._temp(plan, "full", [], plan.cols, net.full.select([col(i) for i in plan.src_idx]))
            self._upsert_from(plan, tmp, stats)
        if moved is not None and expected:
            collist = ", ".join(ident(c) for c in plan.cols)
            select = ", ".join(f"c{j}" for j in range(len(plan.cols)))
            self.run(
                f"INSERT INTO {t.sql} ({collist}) OVERRIDING SYSTEM VALUE SELECT {select} FROM {moved}", stats=stats
            )

    def _upsert_from(self, plan: TablePlan, tmp: str, stats: ApplyStats) -> None:
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

    def _sent(self, plan: TablePlan, values: Sequence[str | None], unchanged: frozenset[str]) -> list[tuple[str, Any]]:
        """(target column, value) of the columns a change carries, generated ones and unsent TOAST left out."""
        return [
            (c, values[i])
            for i, c in zip(plan.src_idx, plan.cols, strict=True)
            if plan.changes.columns[i] not in unchanged
        ]

    def _where_key(self, plan: TablePlan, key: Key) -> tuple[str, list[Any]]:
        return " AND ".join(f"{_p(c)} = %s" for c in plan.key_cols), list(key)

    def _row_upsert(self, plan: TablePlan, values: Sequence[str | None], stats: ApplyStats) -> None:
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
        self, plan: TablePlan, key: Key, pairs: list[tuple[str, Any]], stats: ApplyStats, *, count_missing: bool = True
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

    def _key_change(self, plan: TablePlan, kc: KeyChange, stats: ApplyStats) -> None:
        pairs = [(c, v) for c, v in self._sent(plan, kc.values, kc.unchanged) if c not in plan.table.identity_always]
        if self._row_update(plan, kc.old_key, pairs, stats, count_missing=False):
            return
        if not kc.unchanged:  # the old row is not there (snapshot: none): the new row is whole, so upsert it
            self._row_upsert(plan, kc.values, stats)
        else:
            stats.missing += 1

    def apply_exact(self, plan: TablePlan, stats: ApplyStats) -> None:
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

    def _apply_keyless(self, plan: TablePlan, stats: ApplyStats) -> None:
        """Inserts are COPYed as they come; each update and delete changes one row.  A batch of nothing
        but inserts (a history or log table) is COPYed straight from its Arrow columns."""
        t = plan.table
        inserts = only_inserts(plan.changes)
        if inserts is not None:
            if inserts.num_rows:
                stats.statements += 1
                self._copy(f"{t.sql} ({', '.join(ident(c) for c in plan.cols)})", inserts.select(plan.src_idx))
            return
        for step in keyless_steps(plan.changes):
            if isinstance(step, RowInsert):
                collist = ", ".join(ident(c) for c in plan.cols)
                stats.statements += 1
                with self.conn.cursor().copy(f"COPY {t.sql} ({collist}) FROM STDIN") as copy:
                    for values in step.rows:
                        copy.write_row([values[i] for i in plan.src_idx])
            elif isinstance(step, RowChange):
                self._keyless_change(plan, step, stats)

    def _keyless_change(self, plan: TablePlan, change: RowChange, stats: ApplyStats) -> None:
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
