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
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from bulkmig.core.catalog import (
    ACTION,
    CHANGED,
    Catalog,
    CatalogColumn,
    CatalogTable,
    CheckConstraint,
    ColumnMapping,
    ForeignKey,
    Index,
    Note,
    SchemaObject,
)
from bulkmig.core.errors import SourceError
from bulkmig.core.model import Table
from bulkmig.engines.postgres.sql import ident
from bulkmig.engines.sqlite import sqltext, types, values

SCHEMA = "main"
# SQLite's own objects: never user data (sqlite_sequence, sqlite_stat1, …).
INTERNAL_PREFIX = "sqlite_"
COLUMN_TYPES_SETTING = "settings.sqlite.column_types"
# SQLite's own collations besides BINARY (byte-wise, as PostgreSQL's equality): what changes on the target.
_COLLATION_NOTES = {
    "NOCASE": "collation NOCASE: SQLite compares ASCII letters case-insensitively, PostgreSQL compares "
    "case-sensitively, so comparisons become case-sensitive; use lower(col) in queries or a citext / "
    "nondeterministic ICU collation (unique keys over it become unique indexes on lower(col))",
    "RTRIM": "collation RTRIM: SQLite ignores trailing spaces when comparing, PostgreSQL does not, so 'a' and "
    "'a ' become different values; compare rtrim(col) in queries (unique keys over it become unique indexes "
    "on rtrim(col))",
}
BINARY = "BINARY"


# SQLite quotes identifiers as PostgreSQL does (double quotes, embedded ones doubled): one function for
# both, kept under the engine-local name its many callers (here and in ``source``) use.
quote_ident = ident


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


# ------------------------------------------------------------------------------------------ tables


@dataclass
class SourceTable:
    """One table as ``sqlite_schema`` and ``PRAGMA table_list`` describe it."""

    name: str
    sql: str
    kind: str  # table | virtual
    without_rowid: bool
    strict: bool = False
    module: str | None = None  # a virtual table's module (fts5, rtree, …)


def list_tables(conn: sqlite3.Connection) -> list[SourceTable]:
    """The user tables of ``main``, in name order."""
    sqls = {
        name: sql or "" for name, sql in _rows(conn, "SELECT name, sql FROM main.sqlite_master WHERE type = 'table'")
    }
    found: list[SourceTable] = []
    try:
        listed = _rows(conn, "PRAGMA main.table_list")
    except sqlite3.DatabaseError:  # before 3.37: no table_list, no way to tell shadow tables apart
        listed = [
            ("main", name, "virtual" if sql.upper().startswith("CREATE VIRTUAL") else "table", 0, None, 0)
            for name, sql in sqls.items()
        ]
    for row in listed:
        schema, name, kind = row[0], row[1], row[2]
        if schema != SCHEMA or kind not in ("table", "virtual") or name.lower().startswith(INTERNAL_PREFIX):
            continue
        sql = sqls.get(name, "")
        parsed = sqltext.parse_create_table(sql) if kind == "table" else sqltext.TableDef()
        without_rowid = bool(row[4]) if row[4] is not None else parsed.without_rowid
        module = sqltext.using_module(sql) if kind == "virtual" else None
        found.append(SourceTable(name, sql, kind, without_rowid, bool(row[5]) or parsed.strict, module))
    return sorted(found, key=lambda t: t.name)


@dataclass
class RowRef:
    """How to name one row of a table in reports and errors: its rowid, else its primary key."""

    sql: str | None  # an SQL expression over the table, or None when no row can be named
    label: str  # "rowid", "key (a, b)"

    def describe(self, value: Any) -> str:
        return f"{self.label} {value}" if self.sql else "a row"


def row_ref(column_names: Collection[str], without_rowid: bool, primary_key: list[str]) -> RowRef:
    """The rowid under a name no user column shadows (rowid, _rowid_, oid), else the primary key."""
    taken = {c.lower() for c in column_names}
    if not without_rowid:
        for alias in ("rowid", "_rowid_", "oid"):
            if alias not in taken:
                return RowRef(alias, "rowid")
    if primary_key:
        expr = " || ', ' || ".join(f"quote({quote_ident(k)})" for k in primary_key)
        return RowRef(expr, f"key ({', '.join(primary_key)}) =")
    return RowRef(None, "")


# ----------------------------------------------------------------------------------------- reflect


@dataclass
class _Col:
    """A column while it is being reflected."""

    name: str
    declared: str
    notnull: bool
    default: str | None
    pk: int
    hidden: int
    mapping: ColumnMapping
    override: bool = False
    notes: list[Note] = field(default_factory=list)

    @property
    def generated(self) -> str | None:
        return {2: "VIRTUAL", 3: "STORED"}.get(self.hidden)


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
        info = _rows(conn, f"PRAGMA main.table_xinfo({quote_ident(name)})")
    except sqlite3.DatabaseError as exc:
        raise SourceError(
            f"cannot read the columns of {SCHEMA}.{name} ({src.module or 'table'}): {exc}",
            "exclude the table with a selection rule in the table mappings",
        ) from None
    cols: list[_Col] = []
    for _cid, cname, declared, notnull, default, pk, hidden in info:
        if hidden == 1:  # a virtual table's hidden column (e.g. FTS5's rank): not data
            continue
        declared = declared or ""
        effective = settings.declared(name, cname, declared)
        cols.append(
            _Col(
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
    index_rows = _rows(conn, f"PRAGMA main.index_list({quote_ident(name)})")
    has_pk_index = any(r[3] == "pk" for r in index_rows)
    alias = None
    if len(primary_key) == 1 and not src.without_rowid and src.kind == "table" and not has_pk_index:
        pk_col = next(c for c in cols if c.name == primary_key[0])
        if pk_col.declared.upper() == "INTEGER":
            alias = pk_col
    ref = row_ref([c.name for c in cols], src.without_rowid, primary_key)
    untyped = [c for c in cols if not c.override and types.rule_key(types.parse_declared(c.declared)) == types.UNTYPED]
    if untyped and src.kind != "virtual":
        _type_untyped(conn, name, untyped, settings)
    rows = _scan(conn, name, cols, ref, alias, src, settings) if scan else _count(conn, name)
    fks = _foreign_keys(conn, name, parsed, [c.name for c in cols], table_names)
    if scan and src.kind == "table":
        _check_foreign_keys(conn, name, fks, cols)
        _check_foreign_key_collations(conn, name, fks, cols, ref)
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
        indexes=_indexes(conn, name, index_rows, parsed, primary_key, alias is not None),
        foreign_keys=fks,
        checks=_checks(name, parsed),
        engine=f"virtual table ({src.module})" if src.kind == "virtual" else None,
        collation=None,
        auto_increment=autoinc,
        comment="",
        partitioned=False,
    )


def collation(name: str | None) -> str | None:
    """A collation as the catalog keeps it: None for BINARY (byte-wise, the default), SQLite's own in
    upper case (SQLite matches collation names ignoring case), an application's own as it is spelled."""
    if not name or name.upper() == BINARY:
        return None
    return name.upper() if name.upper() in _COLLATION_NOTES else name


def collation_note(name: str | None, logical_type: str) -> Note | None:
    """The report's note on a column declared with a collation other than BINARY.  Only text compares
    by collation: on a number or a date the collation changes nothing the target keeps."""
    coll = collation(name)
    if coll is None or logical_type != "text":
        return None
    if coll in _COLLATION_NOTES:
        return Note(CHANGED, _COLLATION_NOTES[coll])
    return Note(
        CHANGED,
        f"collation {coll} is the application's own (registered at run time): PostgreSQL compares the values "
        "byte-wise; check what it did and compare accordingly in queries",
    )


def _catalog_column(
    c: _Col, parsed: sqltext.TableDef, alias: _Col | None, src: SourceTable, primary_key: list[str]
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
    return int(_rows(conn, f"SELECT count(*) FROM main.{quote_ident(name)}")[0][0])


def _next_rowid(conn: sqlite3.Connection, name: str, key: str, autoincrement: bool) -> int:
    """The rowid SQLite would give the next row: past the largest one (``key`` is the rowid's column), and
    under AUTOINCREMENT past the largest ever used (``sqlite_sequence``), so the target never reuses a key."""
    (top,) = _rows(conn, f"SELECT max({quote_ident(key)}) FROM main.{quote_ident(name)}")[0]
    top = int(top or 0)
    if autoincrement:
        try:
            seq = _rows(conn, "SELECT seq FROM main.sqlite_sequence WHERE name = ?", (name,))
        except sqlite3.DatabaseError:  # no AUTOINCREMENT table ever got a row: no sqlite_sequence yet
            seq = []
        if seq and seq[0][0] is not None:
            top = max(top, int(seq[0][0]))
    return top + 1


# ---------------------------------------------------------------------------------------- value scan


def _type_untyped(conn: sqlite3.Connection, name: str, cols: list[_Col], settings: types.TypeSettings) -> None:
    """A column without a declared type becomes bytea when it holds only blobs, else text (see types)."""
    exprs = []
    for c in cols:
        q = quote_ident(c.name)
        exprs.append(f"count(CASE WHEN typeof({q}) = 'blob' THEN 1 END)")
        exprs.append(f"count(CASE WHEN typeof({q}) IN ('text', 'integer', 'real') THEN 1 END)")
    counts = _rows(conn, f"SELECT {', '.join(exprs)} FROM main.{quote_ident(name)}")[0]
    for i, c in enumerate(cols):
        blobs, others = counts[2 * i], counts[2 * i + 1]
        if blobs and not others:
            c.mapping = types.map_declared(c.declared, blobs_only=True, settings=settings)


def kind(mapping: ColumnMapping) -> values.Kind:
    return values.kind_of(mapping.logical_type, mapping.arrow_type, mapping.target_type)


def value_expression(column_sql: str, read_as: str | None) -> str:
    """The SELECT expression for a column: its ``read_as`` template (dates stored as numbers) or itself."""
    return read_as.replace("{col}", column_sql) if read_as else column_sql


def _scan(
    conn: sqlite3.Connection,
    name: str,
    cols: list[_Col],
    ref: RowRef,
    alias: _Col | None,
    src: SourceTable,
    settings: types.TypeSettings,
) -> int:
    """One pass over the table: count misfits per column (with the first row's reference), dates stored
    as numbers, and NULLs in primary-key columns.  Returns the row count."""
    scanned = [c for c in cols if not c.generated]
    kinds = [kind(c.mapping) for c in scanned]

    checks = [values.checker(k) for k in kinds]

    def misfit(i: int, value: Any) -> int:
        return 0 if checks[i](value) is None else 1

    conn.create_function("bulkmig_misfit", 2, misfit, deterministic=True)
    r = ref.sql or "NULL"
    inner = [f"{r} AS r"]
    outer = ["count(*)"]
    for i, (c, k) in enumerate(zip(scanned, kinds, strict=True)):
        q = quote_ident(c.name)
        expr = value_expression(q, c.mapping.read_as)
        inner.append(f"CASE WHEN {values.ok_sql(k, q)} THEN 0 ELSE bulkmig_misfit({i}, {expr}) END AS b{i}")
        outer += [f"count(CASE WHEN b{i} THEN 1 END)", f"min(CASE WHEN b{i} THEN r END)"]
        if c.mapping.read_as and c.mapping.logical_type in types.DATE_LOGICAL:
            inner.append(f"typeof({q}) IN ('integer', 'real') AS d{i}")
            outer += [f"count(CASE WHEN d{i} THEN 1 END)", f"min(CASE WHEN d{i} THEN r END)"]
        if c.pk and not c.notnull and c is not alias and not src.without_rowid:
            inner.append(f"{q} IS NULL AS n{i}")
            outer += [f"count(CASE WHEN n{i} THEN 1 END)", f"min(CASE WHEN n{i} THEN r END)"]
    materialized = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35, 0) else ""
    sql = (
        f"WITH s AS {materialized}(SELECT {', '.join(inner)} FROM main.{quote_ident(name)}) "
        f"SELECT {', '.join(outer)} FROM s"
    )
    row = list(_rows(conn, sql)[0])
    total = int(row.pop(0))
    for c, k in zip(scanned, kinds, strict=True):
        bad, first = row.pop(0), row.pop(0)
        q = quote_ident(c.name)
        expr = value_expression(q, c.mapping.read_as)
        if bad:
            example = _example(conn, name, expr, ref, first)
            why = values.misfit(k, example) or "does not fit"
            override = f"{{'{name}.{c.name}': 'TEXT'}}"
            c.notes.append(
                Note(
                    ACTION,
                    f"{bad} value(s) do not fit {c.mapping.target_type}, e.g. {ref.describe(first)}: {why}; the load "
                    f"refuses them: fix them, or read the column as another type ({COLUMN_TYPES_SETTING}: {override})",
                )
            )
        if c.mapping.read_as and c.mapping.logical_type in types.DATE_LOGICAL:
            count, first = row.pop(0), row.pop(0)
            if count:
                raw = _example(conn, name, q, ref, first)
                text = _example(conn, name, expr, ref, first)
                c.notes.append(
                    Note(
                        CHANGED,
                        f"{count} date(s) stored as numbers are read as SQLite's date functions read them "
                        f"(numeric_dates: {settings.numeric_dates}), e.g. {ref.describe(first)}: {raw!r} → {text}",
                    )
                )
        if c.pk and not c.notnull and c is not alias and not src.without_rowid:
            count, first = row.pop(0), row.pop(0)
            if count:
                c.notes.append(
                    Note(
                        ACTION,
                        f"{count} NULL(s) in primary-key column {c.name!r} (SQLite allows them, PostgreSQL does "
                        f"not), e.g. {ref.describe(first)}: give those rows a key or delete them",
                    )
                )
    return total


def _example(conn: sqlite3.Connection, name: str, expr: str, ref: RowRef, at: Any) -> Any:
    if ref.sql is None or at is None:
        return None
    got = _rows(conn, f"SELECT {expr} FROM main.{quote_ident(name)} WHERE {ref.sql} = ? LIMIT 1", (at,))
    return got[0][0] if got else None


# --------------------------------------------------------------------------------- keys and indexes


def _indexes(
    conn: sqlite3.Connection,
    table: str,
    index_rows: list[tuple[Any, ...]],
    parsed: sqltext.TableDef,
    primary_key: list[str],
    rowid_alias: bool,
) -> list[Index]:
    out: list[Index] = []
    pk_def = next((k for k in parsed.keys if k.kind == "PRIMARY"), None)
    if rowid_alias:  # the rowid is the key: no index of its own, but the target needs one
        out.append(
            Index(
                (pk_def.name if pk_def else None) or "PRIMARY",
                list(primary_key),
                True,
                True,
                "BTREE",
                [None],
                [False],
                collations=[None],  # an integer: no collation applies
            )
        )
    for _seq, name, unique, origin, partial in sorted(index_rows, key=lambda r: (r[3] != "pk", r[1])):
        parts = [r for r in _rows(conn, f"PRAGMA main.index_xinfo({quote_ident(name)})") if r[5]]  # key columns
        sql_rows = _rows(conn, "SELECT sql FROM main.sqlite_master WHERE type = 'index' AND name = ?", (name,))
        sql = (sql_rows[0][0] if sql_rows else None) or ""
        idef = sqltext.parse_create_index(sql) if sql else sqltext.IndexDef([], None)
        columns, expressions = [], []
        for seqno, cid, cname, _desc, _coll, _key in parts:  # _coll: the part's own COLLATE, else its column's
            if cid == -2:
                columns.append(idef.parts[seqno] if seqno < len(idef.parts) else "?")
                expressions.append(True)
            else:
                columns.append(cname if cid != -1 else "rowid")
                expressions.append(cid == -1)
        if origin in ("pk", "u"):  # made for a PRIMARY KEY / UNIQUE constraint: named after it
            kind = "PRIMARY" if origin == "pk" else "UNIQUE"
            match = next(
                (
                    k
                    for k in parsed.keys
                    if k.kind == kind and [c.lower() for c in k.columns] == [c.lower() for c in columns]
                ),
                None,
            )
            name = (match.name if match else None) or (
                "PRIMARY" if origin == "pk" else f"{table}_{'_'.join(columns)}_key"
            )
        out.append(
            Index(
                name=name,
                columns=columns,
                unique=bool(unique),
                primary=origin == "pk",
                kind="BTREE",
                prefix_lengths=[None] * len(columns),
                descending=[bool(p[3]) for p in parts],
                expressions=expressions if any(expressions) else [],
                where=idef.where if partial else None,
                collations=[collation(p[4]) for p in parts],
            )
        )
    return out


def _foreign_keys(
    conn: sqlite3.Connection, table: str, parsed: sqltext.TableDef, own: list[str], tables: list[str]
) -> list[ForeignKey]:
    grouped: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in _rows(conn, f"PRAGMA main.foreign_key_list({quote_ident(table)})"):
        grouped[row[0]].append(row)
    named = list(parsed.foreign_keys)
    out, used = [], set()
    for fid in sorted(grouped):
        rows = sorted(grouped[fid], key=lambda r: r[1])
        parent = _rows(conn, f"PRAGMA main.table_info({quote_ident(rows[0][2])})")
        # SQLite matches names case-insensitively: give them as their tables declare them.
        ref_table = next((t for t in tables if t.lower() == rows[0][2].lower()), rows[0][2])
        own_names = {c.lower(): c for c in own}
        parent_names = {r[1].lower(): r[1] for r in parent}
        cols = [own_names.get(r[3].lower(), r[3]) for r in rows]
        ref_cols = [parent_names.get(r[4].lower(), r[4]) if r[4] is not None else None for r in rows]
        if any(c is None for c in ref_cols):  # REFERENCES parent without columns: the parent's primary key
            pk = [r[1] for r in sorted(parent, key=lambda r: r[5]) if r[5]]
            ref_cols = pk if len(pk) == len(cols) else ref_cols
        match = next(
            (
                d
                for d in named
                if [c.lower() for c in d.columns] == [c.lower() for c in cols]
                and d.ref_table.lower() == ref_table.lower()
                and id(d) not in used
            ),
            None,
        )
        if match is not None:
            used.add(id(match))
        name = (match.name if match else None) or f"{table}_{'_'.join(cols)}_fkey"
        out.append(
            ForeignKey(
                name=name,
                columns=cols,
                ref_schema=SCHEMA,
                ref_table=ref_table,
                ref_columns=[c or "?" for c in ref_cols],
                on_update=rows[0][5],
                on_delete=rows[0][6],
                self_referencing=ref_table.lower() == table.lower(),
            )
        )
    # foreign_key_list numbers constraints last-declared first; report them in declaration order.
    return list(reversed(out))


def _check_foreign_keys(conn: sqlite3.Connection, table: str, fks: list[ForeignKey], cols: list[_Col]) -> None:
    """Rows that break a foreign key (SQLite enforces them only with PRAGMA foreign_keys=ON, off by default):
    PostgreSQL would refuse to create the constraint after the load."""
    try:
        broken = _rows(conn, f"PRAGMA main.foreign_key_check({quote_ident(table)})")
    except sqlite3.DatabaseError as exc:  # "foreign key mismatch": the parent key is not unique, or missing
        if fks and cols:
            first = next((c for c in cols if c.name == fks[0].columns[0]), cols[0])
            first.notes.append(Note(ACTION, f"the foreign keys of {table} cannot be checked: {exc}"))
        return
    n_fks = len(fks)
    per_fk: dict[int, list[Any]] = defaultdict(list)
    for _t, rowid, _parent, fkid in broken:
        per_fk[fkid].append(rowid)
    by_name = {c.name: c for c in cols}
    for fkid, rowids in per_fk.items():
        fk = fks[n_fks - 1 - fkid] if 0 <= fkid < n_fks else None  # fks are in declaration order (reversed ids)
        if fk is None:
            continue
        where = f"rowid {rowids[0]}" if rowids[0] is not None else "a row"
        target = by_name.get(fk.columns[0])
        if target is not None:
            target.notes.append(
                Note(
                    ACTION,
                    f"{len(rowids)} row(s) break foreign key {fk.name} ({', '.join(fk.columns)} → {fk.ref_table}), "
                    f"e.g. {where}: PostgreSQL will refuse the constraint; fix or delete those rows",
                )
            )


def _check_foreign_key_collations(
    conn: sqlite3.Connection, table: str, fks: list[ForeignKey], cols: list[_Col], ref: RowRef
) -> None:
    """Rows whose foreign key finds its parent only through the parent key's collation: SQLite compares
    with it (child 'ABC' matches parent 'abc' under NOCASE), PostgreSQL compares exactly and would refuse
    the constraint after the load.  Rows with no parent at all are :func:`_check_foreign_keys`' business."""
    by_name = {c.name: c for c in cols}
    for fk in fks:
        target = by_name.get(fk.columns[0])
        sql = _rows(conn, "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (fk.ref_table,))
        if target is None or not sql or not sql[0][0] or "?" in fk.ref_columns:
            continue
        parent = sqltext.parse_create_table(sql[0][0])
        colls = [collation(d.collation) if (d := parent.columns.get(c.lower())) else None for c in fk.ref_columns]
        if not any(colls):
            continue
        pairs = list(zip(fk.ref_columns, fk.columns, strict=True))
        # Found under the parent's collation (its key index answers), but not byte-wise: NOT IN over an
        # explicit BINARY left side, which SQLite answers from one transient index (a correlated
        # NOT EXISTS could not use the parent's NOCASE index and would scan the parent once per row).
        loose = " AND ".join(f"p.{quote_ident(pc)} = c.{quote_ident(cc)}" for pc, cc in pairs)  # the parent's
        present = " AND ".join(f"c.{quote_ident(cc)} IS NOT NULL" for cc in fk.columns)
        keys = ", ".join(f"c.{quote_ident(cc)} COLLATE BINARY" for cc in fk.columns)
        parent_keys = ", ".join(f"p.{quote_ident(pc)}" for pc in fk.ref_columns)
        parent_present = " AND ".join(f"p.{quote_ident(pc)} IS NOT NULL" for pc in fk.ref_columns)
        parent_sql = f"main.{quote_ident(fk.ref_table)} AS p"
        r = ref.sql or "NULL"
        try:
            count, first = _rows(
                conn,
                f"SELECT count(*), min(r) FROM (SELECT {r} AS r FROM main.{quote_ident(table)} AS c WHERE {present} "
                f"AND EXISTS (SELECT 1 FROM {parent_sql} WHERE {loose}) "
                f"AND ({keys}) NOT IN (SELECT {parent_keys} FROM {parent_sql} WHERE {parent_present}))",
            )[0]
        except sqlite3.DatabaseError:  # row values (several columns) need SQLite 3.15
            continue
        if count:
            used = ", ".join(f"{pc} {c}" for pc, c in zip(fk.ref_columns, colls, strict=True) if c)
            target.notes.append(
                Note(
                    ACTION,
                    f"{count} row(s) find their parent in {fk.ref_table} only through its collation ({used}), "
                    f"e.g. {ref.describe(first)}: PostgreSQL compares exactly and will refuse foreign key "
                    f"{fk.name}; spell those values as their parent rows do",
                )
            )


def _checks(table: str, parsed: sqltext.TableDef) -> list[CheckConstraint]:
    """CHECK constraints, named as written, else as PostgreSQL would name them (``t_col_check``, ``t_check``)."""
    out, taken = [], set()
    for chk in parsed.checks:
        name = chk.name
        if not name:
            base = f"{table}_{chk.column}_check" if chk.column else f"{table}_check"
            name, n = base, 0
            while name.lower() in taken:
                n += 1
                name = f"{base}{n}"
        taken.add(name.lower())
        out.append(CheckConstraint(name, chk.clause))
    return out


# ------------------------------------------------------------------------------------------ sizes


def _table_bytes(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Bytes per table b-tree from the ``dbstat`` virtual table (None when SQLite was built without it)."""
    try:
        return {
            name: int(size or 0)
            for name, size in _rows(conn, "SELECT name, sum(pgsize) FROM main.dbstat GROUP BY name")
        }
    except sqlite3.DatabaseError:
        return None


def _estimate_bytes(conn: sqlite3.Connection, tables: list[CatalogTable], sizes: dict[str, int] | None) -> None:
    if sizes is not None:
        for t in tables:
            t.table.estimated_bytes = sizes.get(t.table.name, 0)
        return
    (pages,) = _rows(conn, "PRAGMA main.page_count")[0]
    (page_size,) = _rows(conn, "PRAGMA main.page_size")[0]
    total_rows = sum(t.table.estimated_rows for t in tables) or 1
    for t in tables:
        t.table.estimated_bytes = int(pages) * int(page_size) * t.table.estimated_rows // total_rows


# ------------------------------------------------------------------------------------ views, triggers


def _views_and_triggers(conn: sqlite3.Connection, tables: set[str]) -> tuple[list[SchemaObject], list[SchemaObject]]:
    """Every view, and the triggers of the reflected tables and of views (INSTEAD OF triggers)."""
    views, triggers = [], []
    rows = _rows(
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
