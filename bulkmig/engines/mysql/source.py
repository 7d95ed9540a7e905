"""MySQL/MariaDB as a full-load source: one consistent snapshot for N readers, partitioning, rows → Arrow.

Where each part is: :mod:`.snapshot` (the consistent snapshot, its binlog position), :mod:`.reader` (a
partition's SELECT and the text → Arrow casts); this module is the engine's entry (``bulkmig.engines``): the
catalog, partitioning, LOB sizes, literals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bulkmig.config import table_settings
from bulkmig.config.engine_settings import settings_of
from bulkmig.core import partitions
from bulkmig.core.catalog import Catalog
from bulkmig.core.errors import ConfigError
from bulkmig.core.log import say
from bulkmig.core.model import Partition, Table, part_count
from bulkmig.engines.literals import scalar_literal
from bulkmig.engines.lob_sizes import largest_values
from bulkmig.engines.mysql import connect as my
from bulkmig.engines.mysql import scan, types
from bulkmig.engines.mysql.reader import BadValue, Reader, select_sql, set_literal, to_arrow
from bulkmig.engines.mysql.reflect import quote_ident, reflect
from bulkmig.engines.mysql.snapshot import (
    EXPORTED_BY,
    LOCK_WAIT_SECONDS,
    Snapshot,
    binlog_position,
    check_columns,
    open_snapshot,
)
from bulkmig.engines.partitioning import partition_by_settings

NON_TRANSACTIONAL_ENGINES = ("MyISAM", "Aria", "MEMORY", "CSV", "ARCHIVE", "MRG_MyISAM", "MERGE")
INTEGER_TYPES = ("tinyint", "smallint", "mediumint", "int", "bigint")


def literal(value: Any) -> str:
    """A MySQL literal for a value in generated SQL (the session's sql_mode keeps backslash escapes)."""
    plain = scalar_literal(value, true="TRUE", false="FALSE")
    if plain is not None:
        return plain
    text = str(value).replace("\\", "\\\\").replace("'", "''").replace("\0", "\\0")
    return f"'{text}'"


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
    row = my.one_row(conn, f"SELECT MIN({ref}), MAX({ref}) FROM {quote_ident(table.schema)}.{quote_ident(table.name)}")
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
        partition_by_settings(
            task,
            tables,
            conn,
            quote_ident=quote_ident,
            literal=literal,
            native=_native_partitions,
            by_size=partition_table,
        )
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
        rows = [(my.text_of(p), my.text_of(sp) if sp is not None else None) for p, sp in cur.fetchall()]
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
    try:
        return largest_values(
            requests,
            length_sql=lambda c: f"MAX(LENGTH({quote_ident(c)}))",
            table_sql=lambda table: f"{quote_ident(table.schema)}.{quote_ident(table.name)}",
            one_row=lambda sql: my.one_row(conn, sql),
            number=lambda v: int(my.text_of(v)),
        )
    finally:
        conn.close()


__all__ = [
    "EXPORTED_BY",
    "LOCK_WAIT_SECONDS",
    "BadValue",
    "Reader",
    "Snapshot",
    "binlog_position",
    "check_cdc_ready",
    "check_columns",
    "literal",
    "lob_columns",
    "measure_lobs",
    "open_catalog",
    "open_catalog_snapshot",
    "open_snapshot",
    "partition_table",
    "partition_tables",
    "scan_catalog",
    "select_sql",
    "set_literal",
    "split_key",
    "to_arrow",
    "type_settings",
]
