"""Validation reads on a MySQL/MariaDB target: the rows of one table streamed from source and target and
paired value by value with :mod:`bulkmig.engines.pairing`'s merge / hash join, into the same report as → PostgreSQL.

The target is read with the MySQL source's own expressions and normalisers (``engines/mysql/compare.py``), so
for MySQL → MySQL both sides go through the very same canonical form and any difference is a real one.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from bulkmig.core.canonical import canonical, per_column
from bulkmig.core.model import Table
from bulkmig.engines.mysql import compare as mysql_compare
from bulkmig.engines.pairing import ORDERED_LOGICAL, RowStreams, Tally, engine_module, pair_streams, stream_rows


def compare_table(task: Any, target: Any, table: Table) -> Tally:
    """Pair the source's and the target's rows of ``table``; raises LookupError when the target lacks it."""
    if task.source.engine == "postgresql":
        source: Any = importlib.import_module("bulkmig.engines.postgres.compare")
        target_norm = per_column([canonical(c) for c in table.copied_columns])  # both sides: the canonical form
    else:
        source = engine_module(task.source.engine)
        target_norm = mysql_compare.row_normaliser(table.copied_columns)
    columns = table.copied_columns
    tally = Tally([c.target for c in columns], single_key=len(table.primary_key) == 1)
    position = {c.name: i for i, c in enumerate(columns)}
    key_idx = [position[k] for k in table.primary_key] if table.primary_key else None
    by_name = {c.name: c for c in table.columns}
    mergeable = key_idx is not None and all(by_name[k].logical_type in ORDERED_LOGICAL for k in table.primary_key)
    name = table.target_name or table.name
    where = None
    if task.source.engine == "postgresql" and table.parent:  # leaves of one partitioned table share a target
        from bulkmig.engines.mysql.source import literal

        pg = source.connect(task.source)
        try:
            where = source.leaf_filter(pg, table, mysql_compare.quote_ident, literal)
        finally:
            pg.close()
    probe = mysql_compare.connect(task.target)
    try:
        cur = probe.cursor()
        cur.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
            (name,),
        )
        found = cur.fetchall()
    finally:
        probe.close()
    if not found:
        raise LookupError(name)
    expected = max(int(found[0][0] or 0), table.estimated_rows)

    @contextlib.contextmanager
    def streams(ordered: bool) -> Iterator[RowStreams]:
        src = source.connect(task.source)
        dst = mysql_compare.connect(task.target)
        try:
            s_cur = source.cursor(src) if hasattr(source, "cursor") else src.cursor()
            s_rows = stream_rows(s_cur, source.select_sql(table, columns, ordered), source.row_normaliser(columns))
            t_rows = stream_rows(dst.cursor(), target.select_sql(table, columns, ordered, where), target_norm)
            yield s_rows, t_rows
        finally:
            dst.close()
            src.close()

    return pair_streams(tally, key_idx, mergeable, expected, streams)
