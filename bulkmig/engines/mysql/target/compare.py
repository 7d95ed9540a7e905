"""Validation reads on a MySQL/MariaDB target: the rows of one table streamed from source and target and
paired value by value with :mod:`bulkmig.validation.compare`'s merge / hash join, into the same report as → PostgreSQL.

The target is read with the MySQL source's own expressions and normalisers (``engines/mysql/compare.py``), so
for MySQL → MySQL both sides go through the very same canonical form and any difference is a real one.
"""

from __future__ import annotations

import importlib
from typing import Any

from bulkmig.core.canonical import canonical, per_column
from bulkmig.core.model import Table
from bulkmig.engines.mysql import compare as mysql_compare
from bulkmig.validation.compare import ORDERED_LOGICAL, Tally, _OutOfOrder, _stream, engine_module, hash_join, merge


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

    def run(ordered: bool) -> Tally:
        method = "merge" if ordered else ("multiset" if key_idx is None else "hash")
        result = Tally(tally.columns, single_key=tally.single_key, method=method)
        src = source.connect(task.source)
        dst = mysql_compare.connect(task.target)
        try:
            s_cur = source.cursor(src) if hasattr(source, "cursor") else src.cursor()
            s_rows = _stream(s_cur, source.select_sql(table, columns, ordered), source.row_normaliser(columns))
            t_rows = _stream(dst.cursor(), target.select_sql(table, columns, ordered, where), target_norm)
            if ordered:
                assert key_idx is not None
                merge(s_rows, t_rows, key_idx, result)
            else:
                hash_join(s_rows, t_rows, key_idx, result, expected)
            return result
        finally:
            dst.close()
            src.close()

    if mergeable:
        try:
            return run(True)
        except _OutOfOrder:
            pass
    return run(False)
