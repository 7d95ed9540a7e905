"""Read a SQLite database's catalog into a :class:`bulkmig.core.catalog.Catalog` (dialect "sqlite", schema "main").

Where each fact comes from:

- tables: ``PRAGMA table_list`` (3.37+; else ``sqlite_schema``) — internal ``sqlite_%`` tables and the
  shadow tables of virtual tables are left out; a virtual table (FTS, R*Tree) is copied as a plain table.
- columns: ``PRAGMA table_xinfo`` (declared type, NOT NULL, default as written, primary-key position,
  hidden/generated); collation, AUTOINCREMENT and generation expressions from the CREATE TABLE text.
- primary key: a single ``INTEGER`` primary key of a rowid table is the rowid itself: SQLite assigns
  ``max(rowid) + 1`` to rows inserted without one (``sqlite_sequence`` keeps the high-water mark under
  AUTOINCREMENT), so it becomes an identity column whose next value is ``auto_increment``.
- indexes: ``PRAGMA index_list`` / ``index_xinfo``; a partial index's WHERE and an expression index's
  expressions from the CREATE INDEX text (``Index.where``, ``Index.expressions``).
- foreign keys: ``PRAGMA foreign_key_list``, named from the CREATE TABLE text where it names them.
- checks: only in the CREATE TABLE text (:mod:`.sqltext`).  Defaults, checks, generation expressions,
  index expressions, view and trigger bodies stay in SQLite's dialect: conversion translates them.
- sizes: ``count(*)`` for rows (exact and cheap), ``dbstat`` for bytes (else the file's pages shared by rows).

The value scan (``scan=True``): SQLite lets any cell hold any storage class, so every column's values are
checked against the PostgreSQL type it maps to, with the same check the reader applies (:mod:`.values`).
Each kind of trouble becomes a note on the column with a count and an example row: values that do not
fit ("needs action": the load would refuse them), dates stored as numbers (read as julian day / unix
epoch), NULLs in a primary key, rows that break a foreign key.  So ``bulkmig convert`` reports up front
what the load would stop on.

Where each part is: :mod:`.tables` (listing the tables, naming a row, collations), :mod:`.scan` (the value
scan), :mod:`.constraints` (keys, indexes, foreign keys, checks); this module puts a table's catalog together,
with its sizes, views and triggers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from bulkmig.core.catalog import (
    ACTION,
    Catalog,
    CatalogColumn,
    CatalogTable,
    Note,
    SchemaObject,
)
from bulkmig.core.errors import SourceError
from bulkmig.core.model import Table
from bulkmig.engines.sqlite import sqltext, types
from bulkmig.engines.sqlite.constraints import (
    check_foreign_key_collations,
    check_foreign_keys,
    read_checks,
    read_foreign_keys,
    read_indexes,
)
from bulkmig.engines.sqlite.scan import COLUMN_TYPES_SETTING, scan_table, type_untyped, value_expression
from bulkmig.engines.sqlite.tables import (
    BINARY,
    INTERNAL_PREFIX,
    SCHEMA,
    ReflectedColumn,
    RowRef,
    SourceTable,
    collation,
    collation_note,
    fetch_all,
    list_tables,
    quote_ident,
    row_ref,
)


def reflect(
    conn: sqlite3.Connection,
    settings: types.TypeSettings | None = None,
    *,
    tables: Collection[str] | None = None,
    objects: bool = True,
    scan: bool | Collection[str] = True,
) -> Catalog:
    """Reflect the ``main`` database of ``conn``.  ``tables`` limits it to those names (the table
    mappings' selection), ``objects=False`` skips views and triggers, ``scan=False`` skips the value scan
    (rows are then still counted), a collection of names scans only those tables."""
    settings = settings or types.TypeSettings()
    every = list_tables(conn)
    found = [t for t in every if tables is None or t.name in tables]
    sizes = _table_bytes(conn)
    names = [t.name for t in every]
    out = []
    for src in found:
        out.append(_reflect_table(conn, src, settings, scan if isinstance(scan, bool) else src.name in scan, names))
    _estimate_bytes(conn, out, sizes)
    catalog = Catalog("sqlite", sqlite3.sqlite_version, False, SCHEMA, out, [], [], [])
    if objects:
        catalog.views, catalog.triggers = _views_and_triggers(conn, {t.table.name for t in out})
    return catalog


def _reflect_table(
    conn: sqlite3.Connection, src: SourceTable, settings: types.TypeSettings, scan: bool, table_names: list[str]
) -> CatalogTable:
    name = src.name
    parsed = sqltext.parse_create_table(src.sql) if src.kind == "table" else sqltext.TableDef()
    try:
        info = fetch_all(conn, f"PRAGMA main.table_xinfo({quote_ident(name)})")
    except sqlite3.DatabaseError as exc:
        raise SourceError(
            f"cannot read the columns of {SCHEMA}.{name} ({src.module or 'table'}): {exc}",
            "exclude the table with a selection rule in the table mappings",
        ) from None
    cols: list[ReflectedColumn] = []
    for _cid, cname, declared, notnull, default, pk, hidden in info:
        if hidden == 1:  # a virtual table's hidden column (e.g. FTS5's rank): not data
            continue
        declared = declared or ""
        effective = settings.declared(name, cname, declared)
        cols.append(
            ReflectedColumn(
                cname,
                declared,
                bool(notnull),
                default,
                pk,
                hidden,
                types.map_declared(effective, settings=settings),
                override=effective != declared,
            )
        )
    primary_key = [c.name for c in sorted((c for c in cols if c.pk), key=lambda c: c.pk)]
    index_rows = fetch_all(conn, f"PRAGMA main.index_list({quote_ident(name)})")
    has_pk_index = any(r[3] == "pk" for r in index_rows)
    alias = None
    if len(primary_key) == 1 and not src.without_rowid and src.kind == "table" and not has_pk_index:
        pk_col = next(c for c in cols if c.name == primary_key[0])
        if pk_col.declared.upper() == "INTEGER":
            alias = pk_col
    ref = row_ref([c.name for c in cols], src.without_rowid, primary_key)
    untyped = [c for c in cols if not c.override and types.rule_key(types.parse_declared(c.declared)) == types.UNTYPED]
    if untyped and src.kind != "virtual":
        type_untyped(conn, name, untyped, settings)
    rows = scan_table(conn, name, cols, ref, alias, src, settings) if scan else _count(conn, name)
    fks = read_foreign_keys(conn, name, parsed, [c.name for c in cols], table_names)
    if scan and src.kind == "table":
        check_foreign_keys(conn, name, fks, cols)
        check_foreign_key_collations(conn, name, fks, cols, ref)
    for c in cols:
        if c.override:
            note = types.override_note(name, c.name, c.declared, settings)
            if note:
                c.mapping.notes.insert(0, note)
        cdef = parsed.columns.get(c.name.lower())
        note = collation_note(cdef.collation if cdef else None, c.mapping.logical_type)
        if note is not None:
            c.mapping.notes.append(note)
        c.mapping.notes.extend(c.notes)
    if src.kind == "virtual" and cols:
        cols[0].mapping.notes.append(
            Note(
                ACTION,
                f"{name} is a virtual table (USING {src.module}): copied as a plain table; recreate what "
                "the module did (full-text search: a tsvector column and a GIN index)",
            )
        )
    autoinc = None
    if alias is not None:
        autoincrement = parsed.columns.get(alias.name.lower(), sqltext.ColumnDef("")).autoincrement
        autoinc = _next_rowid(conn, name, alias.name, autoincrement)
    catalog_cols = [_catalog_column(c, parsed, alias, src, primary_key) for c in cols]
    table = Table(
        schema=SCHEMA,
        name=name,
        columns=[cc.to_model() for cc in catalog_cols],
        primary_key=primary_key,
        estimated_rows=rows,
    )
    return CatalogTable(
        table=table,
        columns=catalog_cols,
        indexes=read_indexes(conn, name, index_rows, parsed, primary_key, alias is not None),
        foreign_keys=fks,
        checks=read_checks(name, parsed),
        engine=f"virtual table ({src.module})" if src.kind == "virtual" else None,
        collation=None,
        auto_increment=autoinc,
        comment="",
        partitioned=False,
    )


def _catalog_column(
    c: ReflectedColumn,
    parsed: sqltext.TableDef,
    alias: ReflectedColumn | None,
    src: SourceTable,
    primary_key: list[str],
) -> CatalogColumn:
    cdef = parsed.columns.get(c.name.lower())
    # SQLite lets a primary-key column hold NULL in a rowid table (a legacy bug it keeps); the rowid alias
    # and WITHOUT ROWID keys cannot.  The scan reports NULLs found in a key PostgreSQL makes NOT NULL.
    never_null = c.notnull or c is alias or (src.without_rowid and c.name in primary_key)
    return CatalogColumn(
        name=c.name,
        column_type=c.declared,
        data_type=types.parse_declared(c.declared).name.lower(),
        nullable=not never_null,
        default=None if c.generated else c.default,
        auto_increment=c is alias,
        on_update_current_timestamp=False,
        generated=c.generated,
        generation_expression=cdef.generated if cdef and c.generated else None,
        charset=None,
        collation=cdef.collation if cdef else None,
        comment="",
        is_json=c.mapping.logical_type == "json",
        mapping=c.mapping,
    )


def _count(conn: sqlite3.Connection, name: str) -> int:
    return int(fetch_all(conn, f"SELECT count(*) FROM main.{quote_ident(name)}")[0][0])


def _next_rowid(conn: sqlite3.Connection, name: str, key: str, autoincrement: bool) -> int:
    """The rowid SQLite would give the next row: past the largest one (``key`` is the rowid's column), and
    under AUTOINCREMENT past the largest ever used (``sqlite_sequence``), so the target never reuses a key."""
    (top,) = fetch_all(conn, f"SELECT max({quote_ident(key)}) FROM main.{quote_ident(name)}")[0]
    top = int(top or 0)
    if autoincrement:
        try:
            seq = fetch_all(conn, "SELECT seq FROM main.sqlite_sequence WHERE name = ?", (name,))
        except sqlite3.DatabaseError:  # no AUTOINCREMENT table ever got a row: no sqlite_sequence yet
            seq = []
        if seq and seq[0][0] is not None:
            top = max(top, int(seq[0][0]))
    return top + 1


# ------------------------------------------------------------------------------------------ sizes


def _table_bytes(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Bytes per table b-tree from the ``dbstat`` virtual table (None when SQLite was built without it)."""
    try:
        return {
            name: int(size or 0)
            for name, size in fetch_all(conn, "SELECT name, sum(pgsize) FROM main.dbstat GROUP BY name")
        }
    except sqlite3.DatabaseError:
        return None


def _estimate_bytes(conn: sqlite3.Connection, tables: list[CatalogTable], sizes: dict[str, int] | None) -> None:
    if sizes is not None:
        for t in tables:
            t.table.estimated_bytes = sizes.get(t.table.name, 0)
        return
    (pages,) = fetch_all(conn, "PRAGMA main.page_count")[0]
    (page_size,) = fetch_all(conn, "PRAGMA main.page_size")[0]
    total_rows = sum(t.table.estimated_rows for t in tables) or 1
    for t in tables:
        t.table.estimated_bytes = int(pages) * int(page_size) * t.table.estimated_rows // total_rows


# ------------------------------------------------------------------------------------ views, triggers


def _views_and_triggers(conn: sqlite3.Connection, tables: set[str]) -> tuple[list[SchemaObject], list[SchemaObject]]:
    """Every view, and the triggers of the reflected tables and of views (INSTEAD OF triggers)."""
    views, triggers = [], []
    rows = fetch_all(
        conn,
        "SELECT type, name, tbl_name, sql FROM main.sqlite_master WHERE type IN ('view', 'trigger') "
        "ORDER BY type, name",
    )
    view_names = {name for kind, name, _tbl, _sql in rows if kind == "view"}
    for kind, name, tbl, sql in rows:
        sql = sql or ""
        if kind == "view":
            views.append(SchemaObject("view", SCHEMA, name, sqltext.view_select(sql), sql))
        elif tbl in tables or tbl in view_names:
            parts = sqltext.trigger_parts(sql)
            triggers.append(
                SchemaObject(
                    "trigger",
                    SCHEMA,
                    name,
                    str(parts.pop("body")),
                    sql,
                    table=tbl,
                    details=parts,
                )
            )
    return views, triggers


__all__ = [
    "BINARY",
    "COLUMN_TYPES_SETTING",
    "INTERNAL_PREFIX",
    "SCHEMA",
    "RowRef",
    "SourceTable",
    "collation",
    "collation_note",
    "list_tables",
    "quote_ident",
    "reflect",
    "row_ref",
    "value_expression",
]
