"""Refuse up front a DMS LOB setting that would cut or drop a value (table-settings ``lob-settings`` or the task
settings' ``TargetMetadata`` LOB mode).

DMS in limited LOB mode truncates a longer LOB "and a warning is issued to the log file"; with
``SupportLobs: false`` it leaves LOB columns out.  bulkmig copies every value whole, so rather than quietly do
something other than what the setting says, ``plan`` measures the largest value of each LOB column under a
limit and refuses the plan when one is longer, naming the table, the column and the size — before a byte is
extracted.  Full LOB mode (``unlimited``, ``FullLobMode``) is what bulkmig always does and costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable

from bulkmig.config.table_settings import check_lob_sizes, lob_limit
from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Table

LobColumns = Callable[[Table], list[str]]
Measure = Callable[[list[tuple[Table, list[str]]]], list[dict[str, int]]]


def check_lob_limits(task: object, tables: list[Table], lob_columns: LobColumns, measure: Measure) -> None:
    """Raise one ConfigError naming every LOB column whose values a limited LOB mode would cut, and every
    table whose LOB columns ``SupportLobs: false`` would leave out.  ``lob_columns`` and ``measure`` are the
    source engine's (which columns are LOBs to DMS; the largest value of each, in bytes)."""
    problems: list[str] = []
    requests: list[tuple[Table, list[str]]] = []
    limits = []
    for table in tables:
        limit = lob_limit(task, table)
        if limit.mode == "full":
            continue
        columns = lob_columns(table)
        if not columns:
            continue
        if limit.mode == "excluded":
            problems.append(
                f"{table.qualified} has LOB columns ({', '.join(columns)}) that {limit.origin} would leave out"
            )
            continue
        requests.append((table, columns))
        limits.append(limit)
    if requests:
        for (table, _), limit, sizes in zip(requests, limits, measure(requests), strict=True):
            problems.extend(check_lob_sizes(table.qualified, limit, sizes))
    if problems:
        hint = (
            "raise the limit above the largest value (lob-settings bulk-max-size / TargetMetadata.LobMaxSize, in "
            "KB), or use full LOB mode (lob-settings mode unlimited, or FullLobMode true)"
        )
        if any(p.endswith("would leave out") for p in problems):
            hint = (
                "set TargetMetadata.SupportLobs true (bulkmig copies LOBs whole), or leave those columns out "
                "with remove-column rules; " + hint
            )
        raise ConfigError("; ".join(problems) + " (bulkmig never truncates or drops a value)", hint)
