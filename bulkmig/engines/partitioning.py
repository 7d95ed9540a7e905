"""How a foreign source's tables are cut into parts: the one order of decisions every source engine follows.

A table's DMS table-settings ``parallel-load`` comes first: ``none`` and ``ranges`` need no engine
(:func:`bulkmig.core.partitions.by_settings`); the partition types need the engine's own partitions (``native``,
which refuses where the engine has none); a table with no such setting is cut by size (``by_size``).  The
engines differ only in those two steps, so the order lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bulkmig.config import table_settings
from bulkmig.core import partitions
from bulkmig.core.model import Partition, Table


def partition_by_settings(
    task: Any,
    tables: list[Table],
    conn: Any,
    *,
    quote_ident: Callable[[str], str],
    literal: Callable[[Any], str],
    native: Callable[[Any, Table, table_settings.TableSettingsRule], list[Partition]],
    by_size: Callable[[Any, Table, int, int], list[Partition]],
) -> None:
    """Fill every table's ``partitions``: by its ``parallel-load`` setting, else ``by_size(conn, table,
    max_part_bytes, workers)`` with the task's settings; both engine steps read the source through ``conn``."""
    for table in tables:
        rule = table_settings.rule_for(task, table)
        load = rule.parallel_load if rule is not None else None
        parts = partitions.by_settings(table, load, quote_ident=quote_ident, literal=literal)
        if parts is None and rule is not None and load is not None:
            parts = native(conn, table, rule)
        if parts is None:
            parts = by_size(conn, table, task.settings.max_part_bytes, task.settings.workers)
        table.partitions = parts
