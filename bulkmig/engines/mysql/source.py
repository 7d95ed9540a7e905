"""MySQL/MariaDB as a full-load source: one consistent snapshot for N readers, partitioning, rows → Arrow.

Consistency (DESIGN §5).  MySQL cannot export a snapshot to other sessions the way PostgreSQL does, so the
readers are lined up on one moment instead: a holder connection takes ``FLUSH TABLES WITH READ LOCK`` (every
write waits), each reader opens ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (REPEATABLE READ), the holder
reads the binlog position and GTID set, and ``UNLOCK TABLES`` lets writes go on.  Every reader then sees the
database exactly as of that binlog position, for as long as it keeps its transaction open.  The lock lasts
milliseconds, but FTWRL first waits for running statements to finish, holding up writes meanwhile: it gives
up after :data:`LOCK_WAIT_SECONDS` rather than stall the source.  Tables of non-transactional engines
(MyISAM, Aria, MEMORY) are read after the lock is released and are not part of the snapshot.

Reading.  A server-side cursor (``SSCursor``) streams each partition; values arrive as the server's text
(no Python converters) and become Arrow arrays of the plan's types by Arrow casts, which are exact for every
type the map sends natively: DECIMAL text → decimal128/256 (never through float), DATETIME/TIMESTAMP text →
timestamp[us] (TIMESTAMP read with ``time_zone '+00:00'``: UTC), DATE → date32, integers, and FLOAT read as
``CAST(… AS DOUBLE)`` because MySQL prints FLOAT with 6 digits, which does not round-trip.  Columns that
travel as text are read with the ``Column.read_as`` template the type map built (TIME, JSON, SET, BIT, …).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import MySQLdb.converters
import pyarrow as pa
import pyarrow.compute as pc

from bulkmig.config import table_settings
from bulkmig.config.engine_settings import settings_of
from bulkmig.core import partitions
from bulkmig.core.catalog import Catalog
from bulkmig.core.errors import ConfigError, SourceError
from bulkmig.core.log import say
from bulkmig.core.model import Column, Partition, Table, part_count
from bulkmig.engines.mysql import connect as my
from bulkmig.engines.mysql import scan, types
from bulkmig.engines.mysql.reflect import quote_ident, reflect
from bulkmig.engines.postgres.reader import arrow_schema
from bulkmig.engines.protocols import ClosingSnapshot

# How long FLUSH TABLES WITH READ LOCK may wait for running statements (writes are held up meanwhile).
LOCK_WAIT_SECONDS = 60
NON_TRANSACTIONAL_ENGINES = ("MyISAM", "Aria", "MEMORY", "CSV", "ARCHIVE", "MRG_MyISAM", "MERGE")
INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint")
EXPORTED_BY = "flush-tables-read-lock"

ER_LOCK_WAIT_TIMEOUT = 1205
ER_TABLE_DEF_CHANGED = 1412

# Encoders only (for query parameters): with no decoders mysqlclient returns numbers and dates as the
# server's text (bytes), strings as str (bytes for binary ones), which the Arrow casts below parse in C++.
_RAW_CONV = {k: v for k, v in MySQLdb.converters.conversions.items() if not isinstance(k, int)}


def literal(value: Any) -> str:
    """A MySQL literal for a value in generated SQL (the session's sql_mode keeps backslash escapes)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "''").replace("\0", "\\0")
    return f"'{text}'"


def _one(conn: Any, sql: str) -> tuple[Any, ...] | None:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchone()
    finally:
        cur.close()


def _exec(conn: Any, sql: str) -> None:
    cur = conn.cursor()
    try:
        cur.execute(sql)
    finally:
        cur.close()


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes | bytearray) else value


# ----------------------------------------------------------------------------------------------- snapshot


def binlog_position(conn: Any, mariadb: bool, version: tuple[int, int, int]) -> dict[str, Any]:
    """The binlog coordinates and GTID set now (call it under FTWRL), with ``lsn`` = ``<file>:<pos>``.

    Binlog off: file, position and lsn are None — fine for a full load, not for CDC.  A user without
    REPLICATION CLIENT (MySQL) / BINLOG MONITOR (MariaDB 10.5+) cannot read it: :class:`SourceError`.
    """
    status_sql = "SHOW BINARY LOG STATUS" if not mariadb and version >= (8, 4, 0) else "SHOW MASTER STATUS"
    try:
        row = _one(conn, status_sql)
    except my.DriverError as exc:
        grant = "GRANT BINLOG MONITOR ON *.*" if mariadb else "GRANT REPLICATION CLIENT ON *.*"
        raise SourceError(
            f"cannot read the binlog position ({status_sql}: {my.error_text(exc)})",
            f"as an admin run: {grant} TO the migration user",
        ) from None
    file, pos = (_text(row[0]), int(row[1])) if row else (None, None)
    gtid_sql = "SELECT @@GLOBAL.gtid_binlog_pos" if mariadb else "SELECT @@GLOBAL.gtid_executed"
    gtid_row = _one(conn, gtid_sql)
    gtid = _text(gtid_row[0]) if gtid_row and gtid_row[0] else None
    server_row = _one(conn, "SELECT @@GLOBAL.server_id")
    return {
        "name": None,
        "lsn": f"{file}:{pos}" if file else None,
        "binlog_file": file,
        "binlog_pos": pos,
        "gtid_set": gtid.strip() if gtid else None,
        "server_id": int(server_row[0]) if server_row else None,
        "exported_by": EXPORTED_BY,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class Snapshot(ClosingSnapshot):
    """``workers`` connections reading one moment of the source, and that moment's binlog position.

    ``raw`` connections return values as the server's text (for :class:`Reader`); ``raw=False`` gives the
    driver's Python values (for reflection).  Use as a context manager, or ``close()``: a reader's
    transaction holds InnoDB undo history on the source until it ends.
    """

    def __init__(self, endpoint: Any, workers: int = 1, *, raw: bool = True, batch_rows: int = 65536) -> None:
        if not endpoint.database:
            raise ConfigError(
                f"{endpoint.role} {endpoint.redacted()} names no database",
                f"write the database to migrate in the URL: mysql://user@host/dbname in `{endpoint.role}:`",
            )
        self.endpoint = endpoint
        self.snapshot_id = f"mysql-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        self.connections: list[Any] = []
        self.position: dict[str, Any] = {}
        holder = my.connect(endpoint)
        try:
            self.version, self.mariadb = my.server_info(holder)
            numbers = my.version_tuple(self.version)
            kwargs: dict[str, Any] = {"conv": _RAW_CONV} if raw else {}
            # Connect every reader before taking the lock: writes wait only for the few statements below.
            for _ in range(max(1, workers)):
                self.connections.append(my.connect(endpoint, streaming=raw, **kwargs))
            _exec(holder, f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}")
            self._lock(holder)
            try:
                for conn in self.connections:
                    _exec(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    _exec(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                self.position = binlog_position(holder, self.mariadb, numbers)
            finally:
                _exec(holder, "UNLOCK TABLES")
        except BaseException:
            self.close()
            raise
        finally:
            holder.close()
        self.readers = [
            Reader(c, self.snapshot_id, self.position, batch_rows, float_as_double=_has_cast_double(self))
            for c in self.connections
        ]

    def _lock(self, holder: Any) -> None:
        try:
            _exec(holder, "FLUSH TABLES WITH READ LOCK")
        except my.DriverError as exc:
            code = my.error_code(exc)
            if code in (my.ER_SPECIFIC_ACCESS_DENIED, my.ER_DBACCESS_DENIED, 1045):
                raise my.privilege_error(
                    self.endpoint,
                    exc,
                    "run FLUSH TABLES WITH READ LOCK, which lines every reader up on one consistent snapshot",
                    "GRANT RELOAD ON *.*",
                ) from None
            if code == ER_LOCK_WAIT_TIMEOUT:
                raise SourceError(
                    f"FLUSH TABLES WITH READ LOCK waited {LOCK_WAIT_SECONDS} s for running statements on "
                    f"{self.endpoint.redacted()} and gave up (writes were held up meanwhile)",
                    "let the long-running query or transaction finish (SHOW PROCESSLIST), then rerun",
                ) from None
            raise SourceError(
                f"FLUSH TABLES WITH READ LOCK failed on {self.endpoint.redacted()}: {my.error_text(exc)}",
                "check the source server's error log",
            ) from None

    @property
    def lsn(self) -> str | None:
        return self.position.get("lsn")

    def check_columns(self, tables: list[Table]) -> None:
        """:func:`check_columns` on a fresh connection, after the snapshot was taken: a schema change after
        that point makes the readers fail with "table definition has changed" rather than read it."""
        conn = my.connect(self.endpoint)
        try:
            check_columns(conn, tables)
        finally:
            conn.close()

    def close(self) -> None:
        for conn in self.connections:
            with contextlib.suppress(my.DriverError):
                conn.close()
        self.connections = []


def open_snapshot(endpoint: Any, workers: int, *, batch_rows: int = 65536) -> Snapshot:
    """``workers`` readers in one consistent snapshot (the engine contract, see ``bulkmig.engines``)."""
    return Snapshot(endpoint, workers, raw=True, batch_rows=batch_rows)


def _has_cast_double(snap: Snapshot) -> bool:
    """CAST(x AS DOUBLE) exists from MariaDB 10.4.? / MySQL 8.0.17; before, ``x + 0E0`` does the same but
    turns -0 into 0."""
    v = my.version_tuple(snap.version)
    return v >= (10, 4, 0) if snap.mariadb else v >= (8, 0, 17)


def type_settings(task: Any) -> types.TypeSettings:
    """The task's ``settings.mysql`` as :class:`types.TypeSettings` (defaults when the task has none)."""
    return settings_of(task, "mysql", types.TypeSettings)


@dataclass
class CatalogSnapshot:
    """The plan's view of the source: the catalog, read in a snapshot that stays open for partitioning."""

    snapshot: Snapshot
    catalog: Catalog
    conn: Any = field(repr=False)

    @property
    def position(self) -> dict[str, Any]:
        return self.snapshot.position

    def close(self) -> None:
        self.snapshot.close()

    def __enter__(self) -> CatalogSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog_snapshot(task: Any, *, objects: bool = True) -> CatalogSnapshot:
    """Reflect the source database inside a fresh consistent snapshot and keep the snapshot open."""
    snap = Snapshot(task.source, 1, raw=False)
    try:
        conn = snap.connections[0]
        catalog = reflect(conn, task.source.database, type_settings(task), objects=objects)
    except BaseException:
        snap.close()
        raise
    _warn_non_transactional(catalog)
    return CatalogSnapshot(snap, catalog, conn)


def open_catalog(task: Any) -> tuple[Catalog, dict[str, Any]]:
    """The source catalog and the binlog position of the snapshot it was read in (the engine contract),
    with the value scan's counts in the column notes (read in the same snapshot)."""
    with open_catalog_snapshot(task) as cs:
        scan_catalog(cs.conn, cs.catalog, task)
        return cs.catalog, dict(cs.position)


def scan_catalog(conn: Any, catalog: Catalog, task: Any) -> None:
    """:func:`scan.scan_values` over what the task moves: the tables its mappings select, with their row
    filters, without the columns they remove (every table whole when the task has no mappings)."""
    mappings = getattr(task, "mappings", None)
    scopes: dict[str, scan.Scope] | None = None
    if mappings is not None:
        scopes = {}
        for sel in mappings.select([(catalog.schema, t.table.name) for t in catalog.tables]):
            columns = [c.name for c in catalog.table(sel.table).columns]
            removed = mappings.removed_columns(catalog.schema, sel.table, columns)
            scopes[sel.table] = scan.Scope(sel.where_sql(quote_ident, literal), frozenset(removed))
    scan.scan_values(conn, catalog, type_settings(task), scopes)


def _warn_non_transactional(catalog: Catalog) -> None:
    odd = [t.table.name for t in catalog.tables if (t.engine or "") in NON_TRANSACTIONAL_ENGINES]
    if odd:
        say(
            f"plan: warning: {', '.join(odd)} use a non-transactional engine (MyISAM, Aria, MEMORY…): they are "
            "read outside the consistent snapshot, so writes to them during extraction may show up partially"
        )


def check_cdc_ready(task: Any) -> None:
    """Refuse ``full-load-and-cdc`` up front when the binlog cannot feed change capture.

    Change capture's own check (``binlog.check_binlog_settings``) decides, so plan refuses exactly the
    servers capture would, before hours of loading.  Imported here, not at the top: it pulls in the replication
    client, which a full load never needs.
    """
    from bulkmig.engines.mysql import binlog

    conn = my.connect(task.source)
    try:
        binlog.check_binlog_settings(conn, user=task.source.user)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------- partitions


def split_key(table: Table) -> str | None:
    """The single integer primary-key column, the one cheap way to split a MySQL table into ranges."""
    if len(table.primary_key) != 1:
        return None
    col = next((c for c in table.columns if c.name == table.primary_key[0]), None)
    if col is None:
        return None
    return col.name if types.parse_column_type(col.source_type).name in INTEGER_TYPES else None


def partition_table(conn: Any, table: Table, max_part_bytes: int, workers: int = 1) -> list[Partition]:
    """Split a table into parts of about ``max_part_bytes`` (InnoDB's DATA_LENGTH estimate).

    By ranges of an integer single-column primary key (InnoDB clusters rows by it: each part is one
    range scan), else one part for the whole table.  The first and last ranges are open-ended, so rows
    outside the bounds seen at plan time are never lost.  Run inside the plan's snapshot.
    """
    n = part_count(table.estimated_bytes, max_part_bytes, workers)
    key = split_key(table) if n > 1 else None
    if key is None:
        return partitions.whole(table)
    ref = quote_ident(key)
    row = _one(conn, f"SELECT MIN({ref}), MAX({ref}) FROM {quote_ident(table.schema)}.{quote_ident(table.name)}")
    if not row or row[0] is None or row[1] is None:
        return partitions.whole(table)
    split = {"method": "key-range", "column": key}
    return partitions.ranges(table, n, int(row[0]), int(row[1]), ref=ref, split=split, bounds_extra={"column": key})


def partition_tables(task: Any, tables: list[Table]) -> None:
    """Fill every table's partitions (the engine contract, see ``bulkmig.engines``): as its DMS
    table-settings ``parallel-load`` says, else by size (:func:`partition_table`).

    The key bounds come from a plain connection, outside the catalog's snapshot: they only balance the
    parts, and the open-ended first and last ranges cover every row whatever the bounds are.
    """
    conn = my.connect(task.source)
    try:
        for table in tables:
            rule = table_settings.rule_for(task, table)
            load = rule.parallel_load if rule is not None else None
            parts = partitions.by_settings(table, load, quote_ident=quote_ident, literal=literal)
            if parts is None and rule is not None and load is not None:
                parts = _native_partitions(conn, table, rule)
            if parts is None:
                parts = partition_table(conn, table, task.settings.max_part_bytes, task.settings.workers)
            table.partitions = parts
    finally:
        conn.close()


def _native_partitions(conn: Any, table: Table, rule: table_settings.TableSettingsRule) -> list[Partition]:
    """Parts from the table's own MySQL partitions (``FROM t PARTITION (p…)``, see :func:`select_sql`).

    ``partitions-auto``: one part per partition; ``subpartitions-auto``: one per subpartition;
    ``partitions-list``: one per listed partition or subpartition, and one more for all the others
    (bulkmig never skips rows), refusing a name the table does not have.
    """
    load = rule.parallel_load
    assert load is not None
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT PARTITION_NAME, SUBPARTITION_NAME FROM information_schema.PARTITIONS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND PARTITION_NAME IS NOT NULL "
            "ORDER BY PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION",
            (table.schema, table.name),
        )
        rows = [(_text(p), _text(sp) if sp is not None else None) for p, sp in cur.fetchall()]
    finally:
        cur.close()
    parts = list(dict.fromkeys(p for p, _ in rows))
    subs = [sp for _, sp in rows if sp is not None]
    if not parts:
        raise table_settings.not_partitioned(rule, table.qualified, "partitions")
    split = {"method": "partition"}
    if load.type == "partitions-auto":
        return partitions.named(table, [[p] for p in parts], split)
    if load.type == "subpartitions-auto":
        if not subs:
            raise table_settings.not_partitioned(rule, table.qualified, "subpartitions")
        return partitions.named(table, [[sp] for sp in subs], split)
    unknown = [n for n in load.partitions if n not in parts] + [n for n in load.subpartitions if n not in subs]
    if unknown:
        raise ConfigError(
            f"table-settings rule {rule.rule_name!r}: {table.qualified} has no partition "
            f"{', '.join(map(repr, unknown))} (its partitions: {', '.join(parts + subs)})",
            "fix the partitions list (names are case-sensitive)",
        )
    listed = set(load.partitions)
    # A subpartition of a listed partition is already in that partition's part.
    chosen_subs = [sp for p, sp in rows if sp in load.subpartitions and p not in listed]
    groups = [[p] for p in load.partitions] + [[sp] for sp in chosen_subs]
    split_up = {p for p, sp in rows if sp in chosen_subs}  # partitions read subpartition by subpartition
    rest = list(
        dict.fromkeys(
            (sp if p in split_up else p) for p, sp in rows if p not in listed and (sp is None or sp not in chosen_subs)
        )
    )
    return partitions.named(table, groups + ([rest] if rest else []), split)


# The MySQL types DMS migrates as LOBs (TEXT and BLOB of every size, JSON).
_LOB_TYPES = frozenset(
    {"tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob", "longblob", "json"}
)


def lob_columns(table: Table) -> list[str]:
    """The copied columns DMS's LOB settings apply to."""
    out = []
    for col in table.copied_columns:
        try:
            name = types.parse_column_type(col.source_type).name
        except ValueError:
            continue
        if name in _LOB_TYPES:
            out.append(col.name)
    return out


def measure_lobs(task: Any, requests: list[tuple[Table, list[str]]]) -> list[dict[str, int]]:
    """Per request, the largest value of each named column in bytes (``LENGTH``), over the rows the table's
    filter moves; a column with no non-NULL value is left out.  Like the key bounds, read on a plain
    connection after the catalog's snapshot: a value written since is still copied whole, never cut."""
    conn = my.connect(task.source)
    out: list[dict[str, int]] = []
    try:
        for table, columns in requests:
            exprs = ", ".join(f"MAX(LENGTH({quote_ident(c)}))" for c in columns)
            where = f" WHERE {table.filter}" if table.filter else ""
            row = _one(conn, f"SELECT {exprs} FROM {quote_ident(table.schema)}.{quote_ident(table.name)}{where}")
            out.append({c: int(_text(v)) for c, v in zip(columns, row or (), strict=False) if v is not None})
    finally:
        conn.close()
    return out


def check_columns(conn: Any, tables: list[Table]) -> None:
    """Refuse to extract a table whose planned columns changed since the plan (data would land in the wrong
    target columns).  Columns added since are not read, and columns the mappings left out are not checked."""
    for table in tables:
        cur = conn.cursor()
        try:
            cur.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (table.schema, table.name),
            )
            now = {_text(r[0]): _text(r[1]) for r in cur.fetchall()}
        finally:
            cur.close()
        table.refuse_changed_columns(now, "on the source")


# ----------------------------------------------------------------------------------------------- reading


class BadValue(Exception):
    """A value the plan's type cannot hold exactly; turned into a SourceError naming the row."""

    def __init__(self, index: int, value: Any, why: str, hint: str) -> None:
        super().__init__(why)
        self.index, self.value, self.why, self.hint = index, value, why, hint


def select_sql(table: Table, partition: Partition | None, as_text: frozenset[str], float_as_double: bool) -> str:
    """The partition's SELECT: each copied column through its ``read_as`` template, in plan order."""
    exprs = []
    for col in table.copied_columns:
        expr = (col.read_as or "{col}").replace("{col}", quote_ident(col.name))
        if col.name in as_text:
            expr = f"CAST({expr} AS CHAR)"
        elif col.arrow_type == "float32":
            # MySQL prints FLOAT with 6 significant digits; as DOUBLE the text round-trips the stored value.
            expr = f"CAST({expr} AS DOUBLE)" if float_as_double else f"({expr}) + 0E0"
        exprs.append(expr)
    sql = f"SELECT {', '.join(exprs)} FROM {quote_ident(table.schema)}.{quote_ident(table.name)}"
    if partition is not None and partition.bounds.get("partitions"):  # DMS parallel-load by partitions
        sql += f" PARTITION ({', '.join(quote_ident(p) for p in partition.bounds['partitions'])})"
    if partition is not None and partition.where:
        sql += f" WHERE {partition.where}"
    return sql


class Reader:
    """One worker's connection inside a :class:`Snapshot`: streams partitions as Arrow record batches."""

    def __init__(
        self, conn: Any, snapshot: str, position: dict[str, Any], batch_rows: int = 65536, float_as_double: bool = True
    ) -> None:
        self.conn = conn
        self.snapshot = snapshot
        self.snapshot_lsn: str | None = position.get("lsn")
        self.position = dict(position)
        self.batch_rows = batch_rows
        self.float_as_double = float_as_double
        self._closed = False

    def source_position(self) -> dict[str, Any]:
        """What a part's sidecar records about where its rows come from."""
        keys = ("binlog_file", "binlog_pos", "gtid_set", "server_id", "exported_by")
        return {k: self.position.get(k) for k in keys}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(my.DriverError):
            self.conn.close()

    def batches(
        self, table: Table, partition: Partition | None, as_text: frozenset[str] = frozenset()
    ) -> Iterator[pa.RecordBatch]:
        """The partition's rows in batches of up to ``batch_rows``, typed as ``arrow_schema(table)`` says."""
        schema = arrow_schema(table, as_text)
        columns = table.copied_columns
        names = [c.name for c in columns]
        key_at = [names.index(k) for k in table.primary_key if k in names]
        sql = select_sql(table, partition, as_text, self.float_as_double)
        where = f"{table.qualified}" + (f" part {partition.index}" if partition is not None else "")
        cur = self.conn.cursor()
        finished = False
        try:
            cur.execute(sql)
            while True:
                rows = cur.fetchmany(self.batch_rows)
                if not rows:
                    break
                arrays = []
                for col, fld, values in zip(columns, schema, zip(*rows, strict=True), strict=True):
                    try:
                        arrays.append(to_arrow(values, col, fld.type))
                    except BadValue as bad:
                        key = {names[k]: _text(rows[bad.index][k]) for k in key_at} or "(no primary key)"
                        raise SourceError(
                            f"{where}: column {col.name!r} at key {key} holds {_show(bad.value)}: {bad.why}",
                            bad.hint,
                        ) from None
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            finished = True
        except my.DriverError as exc:
            if my.error_code(exc) == ER_TABLE_DEF_CHANGED:
                raise SourceError(
                    f"reading {where}: the table was altered after the snapshot was taken",
                    "re-plan with `bulkmig plan --force` once the schema change is done",
                ) from None
            raise SourceError(
                f"reading {where} failed: {my.error_text(exc)}",
                "check the source server's log; rerun extract to retry this part",
            ) from None
        finally:
            if finished:
                cur.close()
            else:
                # An unfinished streamed result would be drained row by row by cursor.close(); drop the
                # connection instead (its snapshot is lost with it: the worker is done anyway).
                self.close()


def _show(value: Any) -> str:
    text = repr(_text(value))
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------- text → Arrow


def to_arrow(values: Sequence[Any], col: Column, typ: pa.DataType) -> pa.Array:
    """One column of a batch, from the server's text (bytes/str/None) to ``typ``, exactly or not at all."""
    if pa.types.is_binary(typ):
        return pa.array([v.encode() if isinstance(v, str) else v for v in values], pa.binary())
    if col.logical_type == "array" and types.parse_column_type(col.source_type).name == "set":
        values = [None if v is None else set_literal(_text(v)) for v in values]
    text = _string_array(values)
    if pa.types.is_string(typ):
        if col.logical_type == "enum":
            _check_enum(text, values, col)
        return text
    if pa.types.is_boolean(typ):
        ok = pc.or_(pc.is_in(text, value_set=pa.array(["0", "1"])), pc.is_null(text))
        if not pc.all(ok).as_py():
            i = _first_false(ok)
            raise BadValue(
                i,
                values[i],
                "tinyint(1) maps to boolean, which holds only 0 and 1",
                "set tinyint1_as_boolean: false (keeps smallint), or fix the value on the source",
            )
        return pc.equal(text, "1")
    target = typ
    if pa.types.is_timestamp(typ) and typ.tz is not None:
        target = pa.timestamp(typ.unit)  # MySQL's text has no offset: it is UTC (session time_zone +00:00)
    try:
        out = text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _bad_cast(values, target, col) from None
    return out.cast(typ) if target is not typ else out


def _string_array(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for i, v in enumerate(values):
            if isinstance(v, bytes | bytearray):
                try:
                    v.decode()
                except UnicodeDecodeError:
                    raise BadValue(i, v, "not valid UTF-8", "read this column as binary (a bytea target)") from None
        raise


def _first_false(mask: pa.Array) -> int:
    for i, ok in enumerate(mask.to_pylist()):
        if ok is False:
            return i
    return 0


def _bad_cast(values: Sequence[Any], typ: pa.DataType, col: Column) -> BadValue:
    """Find the first value that does not parse as ``typ`` and say what to do about it."""
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            pa.array([_text(v)], pa.string()).cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = _text(v)
            if (pa.types.is_date(typ) or pa.types.is_timestamp(typ)) and _is_zero_date(text):
                return BadValue(
                    i,
                    v,
                    "a zero date, which PostgreSQL cannot store",
                    "fix the row on the source, or with zero_dates: null on a nullable column it loads as NULL",
                )
            return BadValue(i, v, f"not a valid {col.source_type} value for {typ}", "fix the value on the source")
    return BadValue(0, values[0] if values else None, f"cannot be read as {typ}", "report this as a bulkmig bug")


def _is_zero_date(text: str) -> bool:
    date = text.split(" ", 1)[0]
    parts = date.split("-")
    return len(parts) == 3 and (parts[1] == "00" or parts[2] == "00")


def _check_enum(text: pa.Array, values: Sequence[Any], col: Column) -> None:
    """MySQL stores '' for an invalid ENUM value outside strict mode; PostgreSQL's enum cannot take it."""
    labels = types.parse_column_type(col.source_type).args
    if "" in labels:
        return
    empty = pc.equal(text, "")
    if pc.any(empty).as_py():
        i = _first_false(pc.invert(empty))
        raise BadValue(
            i,
            values[i],
            "the empty string MySQL stores for an invalid ENUM value",
            "fix the row on the source (UPDATE it to a valid label or NULL)",
        )


def set_literal(text: str) -> str:
    """A SET value (``'a,b'``) as PostgreSQL's text[] input (``{"a","b"}``); ``''`` is the empty set."""
    if text == "":
        return "{}"
    members = ('"' + m.replace("\\", "\\\\").replace('"', '\\"') + '"' for m in text.split(","))
    return "{" + ",".join(members) + "}"
