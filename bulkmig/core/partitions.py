"""Range partitioning, the same for every source engine: the engines only say which column (or page range)
to split on and what its bounds are; the cutting into parts lives here once.

Every range set is open-ended at both ends (the first part has no lower bound, the last no upper bound), so rows
outside the bounds seen at plan time (inserted later, or a key below the minimum) are never lost.

A table can also be cut as its DMS ``table-settings`` say (:mod:`bulkmig.config.table_settings`): by the
``ranges`` a user gave (:func:`value_ranges`) or by the source's own partitions (:func:`named`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bulkmig.core.errors import ConfigError
from bulkmig.core.model import Partition, Table


def base_filter(table: Table) -> str | None:
    """The table's row filter (from the mappings) as a WHERE fragment, or None."""
    return f"({table.filter})" if table.filter else None


def whole(table: Table) -> list[Partition]:
    """One part for the whole table (with the table's filter, if any)."""
    table.split = {"method": "whole"}
    return [Partition(0, base_filter(table), {}, table.estimated_bytes)]


def ranges(
    table: Table,
    n: int,
    lo: int,
    hi: int,
    *,
    ref: str,
    split: dict[str, str],
    literal: Callable[[int], str] = str,
    bound_keys: tuple[str, str] = ("lo", "hi"),
    bounds_extra: dict[str, str] | None = None,
) -> list[Partition]:
    """``n`` parts (fewer when ``hi - lo + 1`` is smaller) over ``ref`` from ``lo`` to ``hi``, inclusive.

    ``ref`` is the SQL the engine compares (a quoted key column, ``rowid``, ``ctid``); ``literal`` writes a
    bound in the engine's SQL (``'(12,0)'::tid`` for a page); ``split`` is what the plan records as the
    table's split; ``bound_keys`` and ``bounds_extra`` name the bounds in each part's manifest entry.
    """
    n = max(1, min(n, hi - lo + 1))
    bounds = [lo + (hi - lo + 1) * i // n for i in range(n + 1)]
    table.split = split
    per_part = table.estimated_bytes // n
    extra = base_filter(table)
    low, high = bound_keys
    parts = []
    for i in range(n):
        conds = []
        if i > 0:
            conds.append(f"{ref} >= {literal(bounds[i])}")
        if i < n - 1:
            conds.append(f"{ref} < {literal(bounds[i + 1])}")
        where = " AND ".join(conds + ([extra] if extra else [])) or None
        b = {**(bounds_extra or {}), low: bounds[i] if i > 0 else None, high: bounds[i + 1] if i < n - 1 else None}
        parts.append(Partition(i, where, b, per_part))
    return parts


def _below(refs: Sequence[str], values: Sequence[str]) -> str:
    """``(c1, c2, …) < (v1, v2, …)`` in row order, spelled out as DMS documents it (portable to every engine):
    ``(c1 < v1) OR (c1 = v1 AND c2 < v2) OR …``.  NULL in a column makes a term NULL, never TRUE."""
    terms = []
    for m in range(len(refs)):
        conds = [f"{refs[j]} = {values[j]}" for j in range(m)] + [f"{refs[m]} < {values[m]}"]
        terms.append("(" + " AND ".join(conds) + ")")
    return " OR ".join(terms)


def value_ranges(
    table: Table,
    columns: Sequence[str],
    boundaries: Sequence[Sequence[Any]],
    *,
    quote_ident: Callable[[str], str],
    literal: Callable[[Any], str],
) -> list[Partition]:
    """One part per DMS ``ranges`` boundary plus one for the rest: ``len(boundaries) + 1`` parts.

    Each boundary is the (exclusive) upper bound of its part, compared in row order over ``columns``, as DMS
    does.  Part ``i`` holds the rows below boundary ``i`` that are below no earlier boundary; the last part
    holds every other row.  So every row lands in exactly one part whatever the boundaries are (even out of
    order), and rows whose range columns are NULL — which DMS leaves out — go to the last part.
    """
    known = [c.name for c in table.columns]
    missing = [c for c in columns if c not in known]
    if missing:
        raise ConfigError(
            f"table-settings of {table.qualified}: parallel-load ranges column {', '.join(map(repr, missing))} "
            f"is not a column of the table (its columns: {', '.join(known)})",
            "fix columns in the table-settings rule (names are case-sensitive)",
        )
    refs = [quote_ident(c) for c in columns]
    below = [_below(refs, [literal(v) for v in b]) for b in boundaries]
    n = len(boundaries) + 1
    table.split = {"method": "ranges", "columns": list(columns), "boundaries": [list(b) for b in boundaries]}
    extra = base_filter(table)
    parts = []
    for i in range(n):
        conds = []
        if i < n - 1:
            conds.append(f"({below[i]})")
        if i > 0:
            earlier = " OR ".join(f"({b})" for b in below[:i])
            conds.append(f"NOT COALESCE({earlier}, FALSE)")
        where = " AND ".join(conds + ([extra] if extra else []))
        bounds = {
            "columns": list(columns),
            "lo": list(boundaries[i - 1]) if i > 0 else None,
            "hi": list(boundaries[i]) if i < n - 1 else None,
        }
        parts.append(Partition(i, where, bounds, table.estimated_bytes // n))
    return parts


def named(table: Table, groups: Sequence[Sequence[str]], split: dict[str, Any]) -> list[Partition]:
    """One part per group of the source's own partitions (``bounds["partitions"]``: the names the engine's
    reader selects from, e.g. MySQL's ``FROM t PARTITION (p0, p1)``), each with the table's filter."""
    table.split = split
    n = max(1, len(groups))
    return [
        Partition(i, base_filter(table), {"partitions": list(g)}, table.estimated_bytes // n)
        for i, g in enumerate(groups)
    ]


def by_settings(
    table: Table, load: Any, *, quote_ident: Callable[[str], str], literal: Callable[[Any], str]
) -> list[Partition] | None:
    """The parts a DMS ``parallel-load`` (:class:`bulkmig.config.table_settings.ParallelLoad`) gives without
    the engine's help: ``none`` (one part) and ``ranges``.  None for no setting, or for the partition types,
    which only the engine can read."""
    if load is None or load.uses_partitions:
        return None
    if load.type == "none":
        return whole(table)
    return value_ranges(table, load.columns, load.boundaries, quote_ident=quote_ident, literal=literal)
