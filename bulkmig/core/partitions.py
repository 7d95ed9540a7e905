"""Range partitioning, the same for every source engine: the engines only say which column (or page range)
to split on and what its bounds are; the cutting into parts lives here once.

Every range set is open-ended at both ends (the first part has no lower bound, the last no upper bound), so rows
outside the bounds seen at plan time (inserted later, or a key below the minimum) are never lost.
"""

from __future__ import annotations

from collections.abc import Callable

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
