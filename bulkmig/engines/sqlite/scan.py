"""The value scan of a SQLite table (``reflect(scan=True)``): every column's values checked against the type it maps to.

SQLite lets any cell hold any storage class, so each column is checked with the same check the reader applies
(:mod:`.values`); each kind of trouble becomes a note on the column with a count and an example row (see
:mod:`.reflect`).  A column with no declared type is typed here too, by what it holds.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bulkmig.core.catalog import (
    ACTION,
    CHANGED,
    ColumnMapping,
    Note,
)
from bulkmig.engines.sqlite import types, values
from bulkmig.engines.sqlite.tables import ReflectedColumn, RowRef, SourceTable, fetch_all, quote_ident

COLUMN_TYPES_SETTING = "settings.sqlite.column_types"


def type_untyped(
    conn: sqlite3.Connection, name: str, cols: list[ReflectedColumn], settings: types.TypeSettings
) -> None:
    """A column without a declared type becomes bytea when it holds only blobs, else text (see types)."""
    exprs = []
    for c in cols:
        q = quote_ident(c.name)
        exprs.append(f"count(CASE WHEN typeof({q}) = 'blob' THEN 1 END)")
        exprs.append(f"count(CASE WHEN typeof({q}) IN ('text', 'integer', 'real') THEN 1 END)")
    counts = fetch_all(conn, f"SELECT {', '.join(exprs)} FROM main.{quote_ident(name)}")[0]
    for i, c in enumerate(cols):
        blobs, others = counts[2 * i], counts[2 * i + 1]
        if blobs and not others:
            c.mapping = types.map_declared(c.declared, blobs_only=True, settings=settings)


def kind(mapping: ColumnMapping) -> values.Kind:
    return values.kind_of(mapping.logical_type, mapping.arrow_type, mapping.target_type)


def value_expression(column_sql: str, read_as: str | None) -> str:
    """The SELECT expression for a column: its ``read_as`` template (dates stored as numbers) or itself."""
    return read_as.replace("{col}", column_sql) if read_as else column_sql


def scan_table(
    conn: sqlite3.Connection,
    name: str,
    cols: list[ReflectedColumn],
    ref: RowRef,
    alias: ReflectedColumn | None,
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
    row = list(fetch_all(conn, sql)[0])
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
    got = fetch_all(conn, f"SELECT {expr} FROM main.{quote_ident(name)} WHERE {ref.sql} = ? LIMIT 1", (at,))
    return got[0][0] if got else None
