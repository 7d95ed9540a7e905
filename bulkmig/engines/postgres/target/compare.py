"""The PostgreSQL target's side of a value-by-value comparison (a MySQL/MariaDB or SQLite source): what to SELECT
so psycopg hands over values the canonical forms read, and the comparison of one table
(:func:`compare_foreign`, the target's ``compare``); the pairing is :mod:`bulkmig.engines.pairing`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bulkmig.core.canonical import canonical, per_column
from bulkmig.core.model import Column, Table
from bulkmig.engines.pairing import ORDERED_LOGICAL, Tally, engine_module, pair_streams, stream_rows
from bulkmig.engines.postgres.connect import connect as pg_connect
from bulkmig.engines.postgres.sql import ident, qualified


def target_expression(column: Column) -> str:
    """What to SELECT on PostgreSQL for the column: types psycopg does not hand over as plain values are
    read as text (then parsed like the source's text), time as interval (so 24:00:00 fits)."""
    col = ident(column.target)
    logical, ttype = column.logical_type, (column.target_type or "").lower()
    if logical in ("time", "interval"):
        return f"{col}::interval"
    if logical == "geometry" and ttype.startswith("geometry"):
        return f"ST_AsBinary({col})"
    if logical == "array":
        return f"{col}::text[]"
    if logical in ("json", "bits", "uuid", "network", "enum") or logical not in _PLAIN_LOGICAL:
        return f"{col}::text"
    return col


_PLAIN_LOGICAL = frozenset(
    {"integer", "bool", "decimal", "float", "text", "binary", "geometry", "date", "timestamp", "timestamptz"}
)


def target_select(table: Table, columns: list[Column], ordered: bool) -> str:
    schema, name = table.target_qualified
    sql = f"SELECT {', '.join(target_expression(c) for c in columns)} FROM {qualified(schema, name)}"
    if ordered and table.primary_key:
        by_name = {c.name: c for c in table.columns}
        sql += " ORDER BY " + ", ".join(ident(by_name[k].target) for k in table.primary_key)
    return sql


def compare_foreign(task: Any, table: Table) -> Tally:
    """Stream the table from the source and the target and pair the rows; see the module docstring.

    Raises :class:`LookupError` when the target has no such table (the caller reports it).
    """
    engine = engine_module(task.source.engine)
    columns = table.copied_columns
    tally = Tally([c.target for c in columns], single_key=len(table.primary_key) == 1)
    position = {c.name: i for i, c in enumerate(columns)}
    key_idx = [position[k] for k in table.primary_key] if table.primary_key else None
    source_norm = engine.row_normaliser(columns)
    target_norm = per_column([canonical(c) for c in columns])
    by_name = {c.name: c for c in table.columns}
    mergeable = key_idx is not None and all(by_name[k].logical_type in ORDERED_LOGICAL for k in table.primary_key)

    dst = pg_connect(task.target, autocommit=True)
    try:
        found = dst.execute("SELECT to_regclass(%s)", (qualified(*table.target_qualified),)).fetchone()[0]
        if found is None:
            raise LookupError(".".join(table.target_qualified))
        (estimate,) = dst.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
            (qualified(*table.target_qualified),),
        ).fetchone()
    finally:
        dst.close()
    expected = max(int(estimate or 0), table.estimated_rows)

    @contextlib.contextmanager
    def streams(ordered: bool) -> Iterator[tuple[Iterator[tuple[Any, ...]], Iterator[tuple[Any, ...]]]]:
        src = engine.connect(task.source)
        dst = pg_connect(task.target)
        try:
            s_cur = src.cursor()
            t_cur = dst.cursor(name="bulkmig_validate")
            s_rows = stream_rows(s_cur, engine.select_sql(table, columns, ordered), source_norm)
            t_rows = stream_rows(t_cur, target_select(table, columns, ordered), target_norm)
            yield s_rows, t_rows
        finally:
            dst.close()
            src.close()

    return pair_streams(tally, key_idx, mergeable, expected, streams)
