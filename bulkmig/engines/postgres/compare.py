"""PostgreSQL's side of ``bulkmig validate`` when the target is another engine (MySQL/MariaDB): what to SELECT
per column and the driver's values turned into the canonical forms of :mod:`bulkmig.core.canonical`.

Columns that travelled as PostgreSQL's text (arrays, intervals, tsvector, …) are read as that text, which is
exactly what the target holds; uuid as its text (the target's CHAR(36)); json and jsonb as their text (psycopg
would parse them with numbers as floats; the target's text is parsed with exact decimals, so both are); everything
else as psycopg hands it over, then through the engine-neutral canonical form — the same one the target's values
go through.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from bulkmig.core.canonical import RowNormaliser, canonical, per_column
from bulkmig.core.model import TRANSFER_TEXT, Column, Table
from bulkmig.engines.postgres.connect import connect as pg_connect
from bulkmig.engines.postgres.sql import ident, qualified, select


def connect(endpoint: Any) -> Any:
    return pg_connect(endpoint)


def cursor(conn: Any) -> Any:
    """A server-side cursor: the table streams instead of arriving whole."""
    return conn.cursor(name="bulkmig_validate_source")


def source_expression(column: Column) -> str:
    col = ident(column.name)
    if column.transfer == TRANSFER_TEXT or column.logical_type in ("uuid", "enum", "json"):
        return f"{col}::text"
    return col


def select_sql(table: Table, columns: list[Column], ordered: bool) -> str:
    exprs = (source_expression(c) for c in columns)
    return select(table.schema, table.name, exprs, table.filter, table.primary_key if ordered else ())


def row_normaliser(columns: list[Column]) -> RowNormaliser:
    return per_column([canonical(c) for c in columns])


def leaf_filter(conn: Any, table: Table, quote: Any, literal: Any) -> str | None:
    """For a leaf of a range-partitioned table that lands in one target table: the target rows that are this
    leaf's, as a WHERE over the partition key (``FOR VALUES FROM (a) TO (b)`` → ``key >= a AND key < b``).
    None when the table is not a leaf; LookupError when its bound is not a one-column range."""
    if not table.parent:
        return None
    row = conn.execute(
        "SELECT pg_get_partkeydef(i.inhparent), pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhrelid = %s::regclass",
        (qualified(table.schema, table.name),),
    ).fetchone()
    key, bound = row[0], row[1]
    k = re.fullmatch(r"RANGE \((\w+)\)", key or "")
    b = re.fullmatch(r"FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)", bound or "")
    if not (k and b):
        raise LookupError(f"{table.qualified}: partition bound {bound!r} is not a one-column range")
    lo, hi = (literal(_mysql_value(v)) for v in b.groups())
    return f"{quote(k.group(1))} >= {lo} AND {quote(k.group(1))} < {hi}"


def _mysql_value(text: str) -> str:
    """A bound's text as MySQL compares it: a timestamptz's offset folded to UTC wall-clock."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ")
