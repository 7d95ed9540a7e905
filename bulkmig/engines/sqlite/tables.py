"""A SQLite file's tables as reflection reads them: listing them, naming one row, a column being reflected, and
what a declared collation becomes (shared by :mod:`.reflect`, its value scan :mod:`.scan` and its keys
:mod:`.constraints`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from bulkmig.core.catalog import (
    CHANGED,
    ColumnMapping,
    Note,
)
from bulkmig.engines.postgres.sql import ident
from bulkmig.engines.sqlite import sqltext

SCHEMA = "main"
# SQLite's own objects: never user data (sqlite_sequence, sqlite_stat1, …).
INTERNAL_PREFIX = "sqlite_"
# SQLite's own collations besides BINARY (byte-wise, as PostgreSQL's equality): what changes on the target.
COLLATION_NOTES = {
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


def fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every row of one statement (SQLite's cursors are cheap: no cursor to close)."""
    return conn.execute(sql, params).fetchall()


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
        name: sql or ""
        for name, sql in fetch_all(conn, "SELECT name, sql FROM main.sqlite_master WHERE type = 'table'")
    }
    found: list[SourceTable] = []
    try:
        listed = fetch_all(conn, "PRAGMA main.table_list")
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


@dataclass
class ReflectedColumn:
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


def collation(name: str | None) -> str | None:
    """A collation as the catalog keeps it: None for BINARY (byte-wise, the default), SQLite's own in
    upper case (SQLite matches collation names ignoring case), an application's own as it is spelled."""
    if not name or name.upper() == BINARY:
        return None
    return name.upper() if name.upper() in COLLATION_NOTES else name


def collation_note(name: str | None, logical_type: str) -> Note | None:
    """The report's note on a column declared with a collation other than BINARY.  Only text compares
    by collation: on a number or a date the collation changes nothing the target keeps."""
    coll = collation(name)
    if coll is None or logical_type != "text":
        return None
    if coll in COLLATION_NOTES:
        return Note(CHANGED, COLLATION_NOTES[coll])
    return Note(
        CHANGED,
        f"collation {coll} is the application's own (registered at run time): PostgreSQL compares the values "
        "byte-wise; check what it did and compare accordingly in queries",
    )
