"""Read the catalog of a PostgreSQL source into :mod:`bulkmig.core.model` tables, and split them into parts.

Runs inside the plan's snapshot, so the table list, the sizes, the key bounds and the schema dump all
describe one moment of the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from bulkmig.config import table_settings
from bulkmig.core import partitions
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Column, Partition, Table, part_count
from bulkmig.engines.postgres import types
from bulkmig.engines.postgres.sql import FROM_USER_RELATIONS, ident, literal, qualified

# Schemas that are never user data.  ``bulkmig`` holds our own ledger on a target.
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "bulkmig")

_TABLES_SQL = f"""
SELECT n.nspname, c.relname, c.oid, c.relispartition,
       pg_table_size(c.oid) AS bytes,
       GREATEST(c.reltuples, 0)::bigint AS rows,
       CASE WHEN c.relispartition THEN
         (SELECT rn.nspname || '.' || rc.relname FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace
          WHERE rc.oid = pg_partition_root(c.oid))
       END AS root,
       CASE WHEN c.relispartition THEN
         (SELECT rc.relname FROM pg_class rc WHERE rc.oid = pg_partition_root(c.oid))
       END AS root_name,
       pg_relation_size(c.oid) / current_setting('block_size')::int AS pages
{FROM_USER_RELATIONS}
  AND c.relkind = 'r'
ORDER BY n.nspname, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod) AS source_type,
       a.attnotnull,
       a.attgenerated <> '' AS generated,
       CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END AS base_name,
       CASE WHEN t.typtype = 'd' THEN bt.typtype ELSE t.typtype END AS base_typtype,
       CASE WHEN t.typtype = 'd' THEN bt.typcategory = 'A' ELSE t.typcategory = 'A' END AS is_array,
       t.typtype = 'd' AS is_domain,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS domain_base
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_KEY_SQL = """
SELECT i.indisprimary, array_agg(a.attname ORDER BY k.ord) AS cols,
       array_agg(format_type(a.atttypid, NULL) ORDER BY k.ord) AS types,
       bool_and(a.attnotnull) AS notnull
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(oid)s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
GROUP BY i.indexrelid, i.indisprimary
ORDER BY i.indisprimary DESC, count(*), i.indexrelid
"""

_INTEGER_TYPES = ("smallint", "integer", "bigint")

# Dictionary encoding pays only for columns with few distinct values; on the rest it costs half the
# Parquet writing time and makes files bigger (measured on the bench's `wide` table).  The planner's
# own statistics say which columns qualify; without statistics no column is dictionary-encoded.
DICTIONARY_MAX_DISTINCT = 10_000

_STATS_SQL = """
SELECT attname, n_distinct FROM pg_stats WHERE schemaname = %(schema)s AND tablename = %(table)s
"""


@dataclass
class SourceTable:
    """A table as the catalog shows it, before partitioning."""

    table: Table
    oid: int
    pages: int
    root: str | None  # "schema.name" of a partitioned table's root, for leaves
    root_name: str | None


def list_tables(conn: psycopg.Connection) -> list[SourceTable]:
    """Every ordinary table and partition leaf outside system and extension schemas.

    Partitioned parents hold no rows of their own, so their leaves are moved one by one (the target
    has the same leaves, created from the schema dump).
    """
    out = []
    for nsp, rel, oid, is_leaf, nbytes, rows, root, root_name, pages in conn.execute(
        _TABLES_SQL, {"skip": list(SYSTEM_SCHEMAS)}
    ).fetchall():
        table = Table(
            schema=nsp,
            name=rel,
            columns=_columns(conn, oid),
            kind="partition" if is_leaf else "table",
            parent=root,
            estimated_rows=int(rows),
            estimated_bytes=int(nbytes),
        )
        table.primary_key = _primary_key(conn, oid)
        _mark_dictionary_columns(conn, table)
        out.append(SourceTable(table, oid, int(pages), root, root_name))
    return out


def _columns(conn: psycopg.Connection, oid: int) -> list[Column]:
    cols = []
    for (
        name,
        source_type,
        notnull,
        generated,
        base,
        typtype,
        is_array,
        is_domain,
        domain_base,
    ) in conn.execute(_COLUMNS_SQL, {"oid": oid}).fetchall():
        logical, arrow, transfer = types.classify(base, typtype, bool(is_array))
        cols.append(
            Column(
                name=name,
                source_type=source_type,
                logical_type=logical,
                arrow_type=arrow,
                transfer=transfer,
                nullable=not notnull,
                generated=bool(generated),
                # Read a domain as its base type so the driver sees a type it knows.
                read_as=domain_base if is_domain and transfer == "native" else None,
            )
        )
    return cols


def _mark_dictionary_columns(conn: psycopg.Connection, table: Table) -> None:
    stats = dict(conn.execute(_STATS_SQL, {"schema": table.schema, "table": table.name}).fetchall())
    for col in table.columns:
        n_distinct = stats.get(col.name)
        if n_distinct is None:
            continue
        distinct = n_distinct if n_distinct >= 0 else -n_distinct * max(table.estimated_rows, 1)
        col.dictionary = 0 < distinct <= DICTIONARY_MAX_DISTINCT


def _primary_key(conn: psycopg.Connection, oid: int) -> list[str]:
    for is_primary, cols, _types, _notnull in conn.execute(_KEY_SQL, {"oid": oid}).fetchall():
        if is_primary:
            return list(cols)
    return []


def split_key(conn: psycopg.Connection, oid: int) -> str | None:
    """A single integer column that is unique and not null: the cheapest way to split a table."""
    for _primary, cols, col_types, notnull in conn.execute(_KEY_SQL, {"oid": oid}).fetchall():
        if len(cols) == 1 and col_types[0] in _INTEGER_TYPES and notnull:
            return cols[0]
    return None


def select_expressions(table: Table, as_text: frozenset[str] = frozenset()) -> list[str]:
    """The SELECT list for extraction: one value per copied column, then one flag per temporal column.

    Aliases are positional (``v0``, ``f0``): a user column can be called anything, including our aliases.
    Columns named in ``as_text`` are read as text whatever their type (the far-date fallback).
    """
    values, flags = [], []
    for i, col in enumerate(table.copied_columns):
        ref = ident(col.name)
        if col.transfer == "text" or col.name in as_text:
            values.append(f"{ref}::text AS v{i}")
            continue
        if col.read_as:
            ref = f"{ref}::{col.read_as}"
        values.append(f"{ref} AS v{i}")
        if types.is_temporal(col.arrow_type):
            safe_max = types.DATE_SAFE_MAX if col.arrow_type == "date32" else types.TIMESTAMP_SAFE_MAX
            flags.append(
                f"CASE WHEN {ref} = 'infinity' THEN 1::int2 WHEN {ref} = '-infinity' THEN -1::int2 "
                f"WHEN {ref} > {literal(safe_max)} THEN 2::int2 END AS f{i}"
            )
    return values + flags


# part_count and MIN_SPLIT_PART_BYTES moved to bulkmig.core.model: every engine splits tables the same way.


def partition_table(
    conn: psycopg.Connection, src: SourceTable, max_part_bytes: int, workers: int = 1
) -> list[Partition]:
    """Split a table into parts of at most about ``max_part_bytes`` of heap + TOAST, and into at least
    ``workers`` parts when it is large (:data:`MIN_SPLIT_PART_BYTES` each).

    By ranges of a unique integer key when there is one (cheap index range scans), else by ctid page
    ranges (TID range scans).  The first and last ranges are open-ended, so rows outside the bounds
    seen at plan time are never lost.
    """
    table = src.table
    n = part_count(table.estimated_bytes, max_part_bytes, workers)
    if n == 1:
        return partitions.whole(table)
    if key := split_key(conn, src.oid):
        lo, hi = conn.execute(
            f"SELECT min({ident(key)}), max({ident(key)}) FROM {qualified(table.schema, table.name)}"
        ).fetchone()
        if lo is None:
            return partitions.whole(table)
        split = {"method": "key-range", "column": key}
        return partitions.ranges(table, n, lo, hi, ref=ident(key), split=split, bounds_extra={"column": key})
    return partitions.ranges(
        table,
        n,
        0,
        max(src.pages, 1) - 1,
        ref="ctid",
        split={"method": "ctid-range"},
        literal=lambda page: f"'({page},0)'::tid",
        bound_keys=("page_lo", "page_hi"),
    )


# --------------------------------------------------------------------------- DMS table-settings (parallel-load)

_TREE_SQL = """
SELECT t.relid::oid, t.parentrelid::oid, t.isleaf, t.level, c.relname
FROM pg_catalog.pg_partition_tree(to_regclass(%(root)s)) t JOIN pg_class c ON c.oid = t.relid
"""


def _tree(conn: psycopg.Connection, schema: str, root: str) -> dict[int, tuple[int | None, bool, int, str]]:
    """oid -> (parent oid, is leaf, level, name) for every member of a partitioned table's tree."""
    rows = conn.execute(_TREE_SQL, {"root": qualified(schema, root)}).fetchall()
    return {int(r[0]): (int(r[1]) if r[1] is not None else None, bool(r[2]), int(r[3]), str(r[4])) for r in rows}


def partition_tables(
    conn: psycopg.Connection, chosen: list[SourceTable], task: Any, max_part_bytes: int, workers: int
) -> None:
    """Fill every chosen table's parts: as its DMS table-settings ``parallel-load`` says, else by size
    (:func:`partition_table`).

    PostgreSQL moves the leaves of a partitioned table one by one, so the partition types read the tree
    under the rule's table: ``partitions-auto`` makes each leaf one part (a sub-partitioned partition's rows
    are in its leaves); ``subpartitions-auto`` the same, refused when no partition is itself partitioned;
    ``partitions-list`` makes each leaf under a listed partition one part and moves the other leaves as
    without the setting (bulkmig never skips rows), refusing a name the table does not have.
    """
    trees: dict[str, dict[int, tuple[int | None, bool, int, str]]] = {}
    for src in chosen:
        table = src.table
        rule = table_settings.rule_for(task, table)
        load = rule.parallel_load if rule is not None else None
        parts = partitions.by_settings(table, load, quote_ident=ident, literal=lambda v: literal(str(v)))
        if parts is not None:
            table.partitions = parts
            continue
        if load is None or rule is None:
            table.partitions = partition_table(conn, src, max_part_bytes, workers)
            continue
        if src.root is None or f"{rule.schema}.{rule.table}" != src.root:
            raise table_settings.not_partitioned(rule, table.qualified, "partitions")
        tree = trees.get(src.root)
        if tree is None:
            tree = trees[src.root] = _tree(conn, rule.schema, rule.table)
        chain = _ancestors(tree, src.oid)
        if load.type == "subpartitions-auto" and not any(leaf and level >= 2 for _, leaf, level, _ in tree.values()):
            raise table_settings.not_partitioned(rule, src.root, "subpartitions (no partition of it is partitioned)")
        if load.type == "partitions-list":
            names = {name for _, _, level, name in tree.values() if level >= 1}
            unknown = [n for n in (*load.partitions, *load.subpartitions) if n not in names]
            if unknown:
                raise ConfigError(
                    f"table-settings rule {rule.rule_name!r}: {src.root} has no partition "
                    f"{', '.join(map(repr, unknown))} (its partitions: {', '.join(sorted(names))})",
                    "fix the partitions list (names are case-sensitive)",
                )
            if not set(chain) & {*load.partitions, *load.subpartitions}:
                table.partitions = partition_table(conn, src, max_part_bytes, workers)
                continue
        table.partitions = partitions.whole(table)
        table.split = {"method": "partition", "partitions": [table.name]}


def _ancestors(tree: dict[int, tuple[int | None, bool, int, str]], oid: int) -> list[str]:
    """The names of ``oid`` and its ancestors below the root (level >= 1), leaf first."""
    out = []
    node: int | None = oid
    while node is not None and node in tree:
        parent, _, level, name = tree[node]
        if level >= 1:
            out.append(name)
        node = parent
    return out


# ------------------------------------------------------------------------------- LOB sizes (DMS LOB modes)

# The types DMS migrates as LOBs from PostgreSQL (its BLOB/CLOB/NCLOB mapping): unbounded text, bytea, JSON,
# XML and arrays.  Bounded varchar(n) is not a LOB to DMS, and is never cut by a LOB limit.
_LOB_TYPES = ("text", "bytea", "json", "jsonb", "xml", "character varying")


def lob_columns(table: Table) -> list[str]:
    """The copied columns DMS's LOB settings apply to."""
    out = []
    for col in table.copied_columns:
        base = col.read_as or col.source_type
        if base in _LOB_TYPES or base.endswith("[]"):
            out.append(col.name)
    return out


def measure_lobs(conn: psycopg.Connection, requests: list[tuple[Table, list[str]]]) -> list[dict[str, int]]:
    """Per request, the largest value of each named column in bytes (as stored text; bytea as bytes), over the
    rows the table's filter moves; a column with no non-NULL value is left out.  Reads every row of each table
    once, inside the caller's snapshot."""
    out: list[dict[str, int]] = []
    for table, columns in requests:
        types_of = {c.name: c.read_as or c.source_type for c in table.columns}
        exprs = [f"max(octet_length({ident(c)}{'' if types_of.get(c) == 'bytea' else '::text'}))" for c in columns]
        where = f" WHERE {table.filter}" if table.filter else ""
        row = conn.execute(
            f"SELECT {', '.join(exprs)} FROM ONLY {qualified(table.schema, table.name)}{where}"
        ).fetchone()
        out.append({c: int(v) for c, v in zip(columns, row or (), strict=False) if v is not None})
    return out


def tablespaces(conn: Any, table: Table) -> tuple[str, list[tuple[str, str]]]:
    """The source tablespace of ``table`` and of each of its indexes ("pg_default": the database's default)."""
    rel = qualified(table.schema, table.name)
    (space,) = conn.execute(
        "SELECT coalesce(t.spcname, 'pg_default') FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace WHERE c.oid = %s::regclass",
        (rel,),
    ).fetchone()
    rows = conn.execute(
        "SELECT ic.relname, coalesce(t.spcname, 'pg_default') FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid "
        "LEFT JOIN pg_catalog.pg_tablespace t ON t.oid = ic.reltablespace WHERE i.indrelid = %s::regclass ORDER BY 1",
        (rel,),
    ).fetchall()
    return str(space), [(str(n), str(s)) for n, s in rows]
