"""SQLite as a full-load source: the catalog, rowid-range partitions, and rows → Arrow in one file state.

Consistency.  SQLite cannot hand a snapshot from one connection to another, so the readers are lined up
instead: each opens the file read-only and begins a read transaction, and the file's committed state
(:func:`~bulkmig.engines.sqlite.connect.file_version`) is taken before and after; equal, no commit came
in between and every reader sees the same state, for as long as it keeps its transaction open (in
rollback-journal mode that holds writers off until extraction ends; in WAL mode they go on).

Reading.  ``sqlite3`` hands over Python values; each column becomes an Arrow array of exactly the plan's
type.  Integers, reals, text and blobs go straight to ``pa.array`` when an SQL condition per row says
every value of those columns certainly fits (``values.ok_sql``); otherwise, and for every other type
(NUMERIC(p,s) → Decimal, dates, booleans, JSON, …), each value goes through :mod:`.values`, the same
check that made the catalog's report.  A value that does not fit stops the read with an error naming
the table, the row (rowid or key), the column, the value and the fix — never loaded as something else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from bulkmig.config import table_settings
from bulkmig.config.engine_settings import settings_of
from bulkmig.core import partitions
from bulkmig.core.catalog import Catalog
from bulkmig.core.errors import SourceError
from bulkmig.core.model import Column, Partition, Table, part_count
from bulkmig.engines.literals import scalar_literal
from bulkmig.engines.lob_sizes import largest_values
from bulkmig.engines.partitioning import partition_by_settings
from bulkmig.engines.postgres.reader import arrow_schema
from bulkmig.engines.protocols import ClosingSnapshot
from bulkmig.engines.sqlite import connect as lite
from bulkmig.engines.sqlite import reflect as rf
from bulkmig.engines.sqlite import sqltext, types, values

quote_ident = rf.quote_ident
EXPORTED_BY = "sqlite-read-transaction"
# Readers that keep seeing commits while they start give up after this many tries.
START_ATTEMPTS = 5


def literal(value: Any) -> str:
    """An SQLite literal for a value in generated SQL (table-mapping filters)."""
    plain = scalar_literal(value, true="1", false="0")
    if plain is not None:
        return plain
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return "'" + str(value).replace("'", "''") + "'"


def type_settings(task: Any) -> types.TypeSettings:
    """The task's ``settings.sqlite`` as :class:`types.TypeSettings` (defaults when the task has none)."""
    return settings_of(task, "sqlite", types.TypeSettings)


def _position(version: str) -> dict[str, Any]:
    return {
        "lsn": None,
        "file_version": version,
        "exported_by": EXPORTED_BY,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _selected(task: Any, conn: Any) -> set[str] | None:
    """The tables the task's mappings select (scanned for values); None: all of them."""
    mappings = getattr(task, "mappings", None)
    if mappings is None:
        return None
    names = [(rf.SCHEMA, t.name) for t in rf.list_tables(conn)]
    return {sel.table for sel in mappings.select(names)}


def open_catalog(task: Any) -> tuple[Catalog, dict[str, Any]]:
    """The catalog of the task's source file, read in one read transaction, and that state's position.

    Every table is reflected (so selection rules can be checked against them all); only the selected ones
    get the value scan, which reads every row.
    """
    conn = lite.connect(task.source)
    try:
        lite.begin(conn)
        version = lite.file_version(lite.database_path(task.source))
        selected = _selected(task, conn)
        catalog = rf.reflect(conn, type_settings(task), scan=True if selected is None else selected)
        return catalog, _position(version)
    finally:
        lite.end(conn)


# ------------------------------------------------------------------------------------------- partitions


def partition_table(conn: Any, table: Table, max_part_bytes: int, workers: int = 1) -> list[Partition]:
    """Split a table into rowid ranges of about ``max_part_bytes`` (a rowid table's b-tree is ordered by
    rowid, so each part is one range scan).  WITHOUT ROWID tables are read whole.  The first and last
    ranges are open-ended, so rows outside the bounds seen at plan time are never lost."""
    n = part_count(table.estimated_bytes, max_part_bytes, workers)
    ref = _row_ref(conn, table) if n > 1 else None
    if ref is None or ref.label != "rowid":
        return partitions.whole(table)
    lo, hi = conn.execute(f"SELECT min({ref.sql}), max({ref.sql}) FROM main.{quote_ident(table.name)}").fetchone()
    if lo is None:
        return partitions.whole(table)
    split = {"method": "rowid-range", "column": ref.sql}
    return partitions.ranges(table, n, lo, hi, ref=ref.sql, split=split, bounds_extra={"column": ref.sql})


def partition_tables(task: Any, tables: list[Table]) -> None:
    """Fill every table's partitions (the engine contract, see ``bulkmig.engines``): as its DMS
    table-settings ``parallel-load`` says (SQLite has no partitions: only ``ranges`` and ``none``), else by
    rowid ranges."""
    conn = lite.connect(task.source)
    try:
        partition_by_settings(
            task, tables, conn, quote_ident=quote_ident, literal=literal, native=_no_partitions, by_size=partition_table
        )
    finally:
        lite.end(conn)


def _no_partitions(conn: Any, table: Table, rule: table_settings.TableSettingsRule) -> list[Partition]:
    """A ``parallel-load`` by partitions, refused: SQLite tables have none."""
    raise table_settings.not_partitioned(rule, table.qualified, "partitions (SQLite has none)")


def lob_columns(table: Table) -> list[str]:
    """The copied columns DMS's LOB settings would apply to: text, blob and JSON (SQLite bounds no length)."""
    return [c.name for c in table.copied_columns if c.logical_type in ("text", "binary", "json")]


def measure_lobs(task: Any, requests: list[tuple[Table, list[str]]]) -> list[dict[str, int]]:
    """Per request, the largest value of each named column in bytes, over the rows the table's filter moves."""
    conn = lite.connect(task.source)
    try:
        return largest_values(
            requests,
            length_sql=lambda c: f"max(length(CAST({quote_ident(c)} AS BLOB)))",
            table_sql=lambda table: f"main.{quote_ident(table.name)}",
            one_row=lambda sql: conn.execute(sql).fetchone(),
        )
    finally:
        lite.end(conn)


def _row_ref(conn: Any, table: Table) -> rf.RowRef:
    row = conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table.name,)).fetchone()
    without_rowid = sqltext.parse_create_table(row[0] or "").without_rowid if row else False
    names = [r[1] for r in conn.execute(f"PRAGMA main.table_xinfo({quote_ident(table.name)})")]
    return rf.row_ref(names or [c.name for c in table.columns], without_rowid, table.primary_key)


def check_columns(conn: Any, tables: list[Table]) -> None:
    """Refuse to extract a table whose planned columns changed since the plan (data would land in the
    wrong target columns).  Columns added since are not read."""
    for table in tables:
        now = {r[1]: r[2] or "" for r in conn.execute(f"PRAGMA main.table_xinfo({quote_ident(table.name)})")}
        table.refuse_changed_columns(now, "in the source file")


# ------------------------------------------------------------------------------------------- snapshot


class Snapshot(ClosingSnapshot):
    """``workers`` read-only connections on one committed state of the file (see the module docstring)."""

    def __init__(self, endpoint: Any, workers: int = 1, *, batch_rows: int = 65536) -> None:
        self.endpoint = endpoint
        path = lite.database_path(endpoint)
        self.connections: list[Any] = []
        for attempt in range(START_ATTEMPTS):
            before = lite.file_version(path) if os.path.isfile(path) else ""
            try:
                for _ in range(max(1, workers)):
                    conn = lite.connect(endpoint)
                    self.connections.append(conn)
                    lite.begin(conn)
            except BaseException:
                self.close()
                raise
            after = lite.file_version(path)
            if before == after:
                break
            self.close()
            time.sleep(0.1 * (attempt + 1))
        else:
            raise SourceError(
                f"{endpoint.redacted()} kept changing while {workers} reader(s) started: no consistent state to read",
                "stop the application's writes (or extract from a copy of the file), then rerun",
            )
        self.version = after
        self.snapshot_id = f"sqlite-{after}"
        self.position = _position(after)
        self.readers = [Reader(c, self.snapshot_id, self.position, batch_rows) for c in self.connections]

    @property
    def lsn(self) -> str | None:
        return None

    def check_columns(self, tables: list[Table]) -> None:
        if self.connections:
            check_columns(self.connections[0], tables)

    def close(self) -> None:
        for conn in self.connections:
            lite.end(conn)
        self.connections = []


def open_snapshot(endpoint: Any, workers: int, *, batch_rows: int = 65536) -> Snapshot:
    """``workers`` readers on one state of the file (the engine contract, see ``bulkmig.engines``)."""
    return Snapshot(endpoint, workers, batch_rows=batch_rows)


# ----------------------------------------------------------------------------------------------- reading

FIX_HINT = (
    "fix the value in the source file, or read the column as another type with settings.sqlite.column_types "
    "(e.g. {example}) and re-plan; `bulkmig convert` lists every such value"
)


def select_sql(table: Table, partition: Partition | None, ref: rf.RowRef, kinds: list[values.Kind]) -> str:
    """The partition's SELECT: the row reference, each copied column through its ``read_as``, and one flag
    per row saying whether some natively read column holds a value that needs a closer look."""
    exprs = [ref.sql or "NULL"]
    checks = []
    for col, k in zip(table.copied_columns, kinds, strict=True):
        q = quote_ident(col.name)
        exprs.append(rf.value_expression(q, col.read_as))
        if k.fast:
            checks.append(values.ok_sql(k, q))
    exprs.append(f"NOT ({' AND '.join(checks)})" if checks else "0")
    sql = f"SELECT {', '.join(exprs)} FROM main.{quote_ident(table.name)}"
    if partition is not None and partition.where:
        sql += f" WHERE {partition.where}"
    return sql


class _BadAt(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index, self.reason = index, reason


def _convert_all(convert: Any, vals: tuple[Any, ...]) -> list[Any]:
    out = []
    for i, v in enumerate(vals):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(convert(v))
        except values.Misfit as exc:
            raise _BadAt(i, exc.reason) from None
    return out


class Reader:
    """One worker's connection inside a :class:`Snapshot`: streams partitions as Arrow record batches."""

    def __init__(self, conn: Any, snapshot: str, position: dict[str, Any], batch_rows: int = 65536) -> None:
        self.conn = conn
        self.snapshot = snapshot
        self.snapshot_lsn: str | None = None
        self.position = dict(position)
        self.batch_rows = batch_rows
        self._refs: dict[str, rf.RowRef] = {}

    def source_position(self) -> dict[str, Any]:
        """What a part's sidecar records about where its rows come from."""
        return {k: self.position.get(k) for k in ("file_version", "exported_by")}

    def close(self) -> None:
        if self.conn is not None:
            lite.end(self.conn)
            self.conn = None

    def batches(
        self, table: Table, partition: Partition | None, as_text: frozenset[str] = frozenset()
    ) -> Iterator[pa.RecordBatch]:
        """The partition's rows in batches of up to ``batch_rows``, typed as ``arrow_schema(table)`` says."""
        schema = arrow_schema(table, as_text)
        columns = table.copied_columns
        kinds = [values.kind_of(c.logical_type, c.arrow_type, c.target_type) for c in columns]
        if table.name not in self._refs:
            self._refs[table.name] = _row_ref(self.conn, table)
        ref = self._refs[table.name]
        where = table.qualified + (f" part {partition.index}" if partition is not None else "")
        try:
            cur = self.conn.execute(select_sql(table, partition, ref, kinds))
            while rows := cur.fetchmany(self.batch_rows):
                yield self._batch(rows, columns, kinds, schema, as_text, ref, where, table)
        except SourceError:
            raise
        except Exception as exc:
            if "decode" in str(exc):
                raise self._bad_text(table, partition, columns, ref, where) from None
            raise SourceError(
                f"reading {where} failed: {exc}",
                "check that the file is intact (PRAGMA integrity_check); rerun extract to retry this part",
            ) from None

    def _batch(
        self,
        rows: list[tuple[Any, ...]],
        columns: list[Column],
        kinds: list[values.Kind],
        schema: pa.Schema,
        as_text: frozenset[str],
        ref: rf.RowRef,
        where: str,
        table: Table,
    ) -> pa.RecordBatch:
        cols = list(zip(*rows, strict=True))
        refs, suspect = cols[0], any(cols[-1])
        arrays = []
        for j, (col, k, fld) in enumerate(zip(columns, kinds, schema, strict=True)):
            vals = cols[j + 1]
            try:
                if col.name in as_text:
                    arrays.append(pa.array(_convert_all(lambda v, k=k: values.as_text(k, v), vals), pa.string()))
                elif k.fast and not suspect:
                    arrays.append(pa.array(vals, type=fld.type))
                else:
                    arrays.append(pa.array(_convert_all(values.converter(k), vals), type=fld.type))
            except _BadAt as bad:
                example = f"{{'{table.name}.{col.name}': 'TEXT'}}"
                raise SourceError(
                    f"{where}: {ref.describe(refs[bad.index])}, column {col.name!r}: {bad.reason}",
                    FIX_HINT.format(example=example),
                ) from None
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _bad_text(
        self, table: Table, partition: Partition | None, columns: list[Column], ref: rf.RowRef, where: str
    ) -> SourceError:
        """Find the value that is not UTF-8 (sqlite3 cannot decode it) and name it."""
        old = self.conn.text_factory
        self.conn.text_factory = bytes
        try:
            cond = f" AND ({partition.where})" if partition is not None and partition.where else ""
            for col in columns:
                q = quote_ident(col.name)
                cur = self.conn.execute(
                    f"SELECT {ref.sql or 'NULL'}, {q} FROM main.{quote_ident(table.name)} "
                    f"WHERE typeof({q}) = 'text'{cond}"
                )
                for r, raw in cur:
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        shown = values.describe(raw).replace("blob", "text bytes", 1)
                        return SourceError(
                            f"{where}: {ref.describe(r.decode() if isinstance(r, bytes) else r)}, column {col.name!r}: "
                            f"{shown} is not valid UTF-8",
                            "fix the value in the source file (PostgreSQL text must be valid UTF-8), or read the "
                            f"column as BLOB with settings.sqlite.column_types ({{'{table.name}.{col.name}': 'BLOB'}})",
                        )
        finally:
            self.conn.text_factory = old
        return SourceError(
            f"reading {where} failed: a text value is not valid UTF-8", "fix the text in the source file"
        )
