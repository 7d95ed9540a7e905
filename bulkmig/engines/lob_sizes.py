"""The largest value of LOB columns, as every foreign source measures them for DMS's LOB settings.

The query is the same everywhere (one ``SELECT max(length(...))`` per table over the rows its filter moves);
only the length expression, the table's name and how a row is read differ, so each engine passes those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bulkmig.core.model import Table


def largest_values(
    requests: list[tuple[Table, list[str]]],
    *,
    length_sql: Callable[[str], str],
    table_sql: Callable[[Table], str],
    one_row: Callable[[str], Sequence[Any] | None],
    number: Callable[[Any], int] = int,
) -> list[dict[str, int]]:
    """Per request, the largest value of each named column in bytes; a column with no non-NULL value is left
    out.  ``length_sql``: a column's length in bytes, as SQL; ``one_row``: run a query, its one row."""
    out: list[dict[str, int]] = []
    for table, columns in requests:
        exprs = ", ".join(length_sql(c) for c in columns)
        where = f" WHERE {table.filter}" if table.filter else ""
        row = one_row(f"SELECT {exprs} FROM {table_sql(table)}{where}")
        out.append({c: number(v) for c, v in zip(columns, row or (), strict=False) if v is not None})
    return out
