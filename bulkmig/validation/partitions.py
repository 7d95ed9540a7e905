"""Key-range partitions of a table for PG → PG validation, and the SQL that names a range of them.

A table is cut into partitions of about ``partition_size`` rows (DMS's ``PartitionSize``, 10,000 by
default) by primary-key ranges, so both servers can sum row hashes per partition and a differing
partition can be read again through the primary key's index, alone.  Two shapes:

- :class:`IntegerRanges`: a one-column integer key whose values are dense (the span between the lowest
  and the highest key is at most ``DENSE_FACTOR`` times the rows).  Partition ``b`` is the key range
  ``[lo + b·w, lo + (b+1)·w)``; a row's partition is arithmetic (no boundaries to fetch, no comparison
  per boundary), and each partition splits into ``FANOUT`` aligned sub-ranges, level after level, down
  to ranges of about ``LEAF_ROWS`` rows: the bisection reads only the ranges that differ.  Keys outside
  ``[lo, hi]`` (rows written while validation runs) fall into the first or last range, so every row
  has exactly one range at every level.
- :class:`KeyBoundaries`: any other key (text, uuid, composite, sparse integers): boundaries taken from
  the source in key order, every ``partition_size``-th key (from a block sample when the table is large);
  partition ``i`` is ``[B[i-1], B[i])`` with open ends.  A differing partition is read row by row.

Key values travel as their text and are cast back to each column's type on each server, so any key
type works; comparisons are the server's own (its collation), which is the index's order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bulkmig.engines.postgres.sql import literal

FANOUT = 16  # sub-ranges per range when a differing range is bisected
LEAF_ROWS = 256  # a range this small is read row by row
DENSE_FACTOR = 4  # integer keys spanning at most this many values per row are cut arithmetically
MAX_SPAN = 1 << 62  # beyond this the arithmetic could overflow bigint: use boundaries instead
SAMPLE_ROWS_PER_PARTITION = 32  # boundaries from a sample: this many sampled keys per partition
MAX_SAMPLE_ROWS = 500_000
EXACT_BOUNDARIES_ROWS = 200_000  # below this many rows boundaries come from every key, not a sample


@dataclass(frozen=True)
class IntegerRanges:
    """Aligned arithmetic ranges over a dense integer key (see the module docstring).

    Level 0 ranges are ``leaf_width · FANOUT**depth`` keys wide; level ``depth`` ranges are ``leaf_width``
    wide; range ``b`` of level ``L`` holds ranges ``b·FANOUT … b·FANOUT + FANOUT-1`` of level ``L+1``.
    """

    lo: int
    hi: int
    leaf_width: int
    depth: int
    fanout: int = FANOUT

    def width(self, level: int) -> int:
        return self.leaf_width * self.fanout ** (self.depth - level)

    @property
    def partitions(self) -> int:
        return (self.hi - self.lo) // self.width(0) + 1

    def bucket_sql(self, key: str, level: int) -> str:
        """The range of a row at ``level``; clamped first, so it never overflows and keys written outside
        ``[lo, hi]`` since the plan land in the first or last range."""
        return f"((least(greatest({key}::bigint, {self.lo}), {self.hi}) - {self.lo}) / {self.width(level)})"

    def children(self, bucket: int) -> range:
        return range(bucket * self.fanout, (bucket + 1) * self.fanout)

    def bounds(self, level: int, bucket: int) -> tuple[int | None, int | None]:
        """``[low, high)`` of one range; None for an open end (the first and the last range)."""
        w = self.width(level)
        low = self.lo + bucket * w
        high = low + w
        return (None if bucket == 0 else low, None if high > self.hi else high)

    def predicate(self, key: str, level: int, buckets: Iterable[int]) -> str:
        """SQL true for the rows of these ranges (adjacent ranges merged): index range scans."""
        spans: list[list[int]] = []
        for b in sorted(set(buckets)):
            if spans and spans[-1][1] == b - 1:
                spans[-1][1] = b
            else:
                spans.append([b, b])
        parts = []
        for first, last in spans:
            low, _ = self.bounds(level, first)
            _, high = self.bounds(level, last)
            conds = ([f"{key} >= {low}"] if low is not None else []) + ([f"{key} < {high}"] if high is not None else [])
            parts.append(" AND ".join(conds) or "TRUE")
        return "(" + " OR ".join(f"({p})" for p in parts) + ")" if parts else "FALSE"


def plan_integer(kmin: int, kmax: int, rows: int, partition_size: int) -> IntegerRanges | None:
    """Arithmetic ranges for keys in ``[kmin, kmax]`` over about ``rows`` rows; None when the keys are too
    sparse (ranges would hold very unequal numbers of rows) or span too much for bigint arithmetic."""
    span = kmax - kmin + 1
    rows = max(rows, 1)
    if span > DENSE_FACTOR * rows or span >= MAX_SPAN:
        return None
    width0 = max(1, math.ceil(span * partition_size / rows))
    depth = 0
    while partition_size / FANOUT**depth > LEAF_ROWS:
        depth += 1
    leaf_width = max(1, math.ceil(width0 / FANOUT**depth))
    return IntegerRanges(kmin, kmax, leaf_width, depth)


def key_row(columns: Sequence[str]) -> str:
    """The key as one comparable value: the column, or a row constructor for a composite key."""
    return columns[0] if len(columns) == 1 else "(" + ", ".join(columns) + ")"


def key_value(values: Sequence[str], types: Sequence[str]) -> str:
    """A key's text values as SQL literals cast to the columns' types."""
    lits = [f"{literal(v)}::{t}" for v, t in zip(values, types, strict=True)]
    return lits[0] if len(lits) == 1 else "(" + ", ".join(lits) + ")"


@dataclass(frozen=True)
class KeyBoundaries:
    """Partitions cut at key values taken from the source (see the module docstring).

    ``boundaries[i]`` is the i-th boundary key as the text of each key column; partition 0 holds the keys
    below ``boundaries[0]``, partition ``len(boundaries)`` the keys from the last boundary on.
    """

    boundaries: tuple[tuple[str, ...], ...]

    @property
    def partitions(self) -> int:
        return len(self.boundaries) + 1

    def bounds(self, i: int) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        low = self.boundaries[i - 1] if i > 0 else None
        high = self.boundaries[i] if i < len(self.boundaries) else None
        return low, high

    def range_sql(self, key: Sequence[str], types: Sequence[str], i: int) -> str:
        low, high = self.bounds(i)
        k = key_row(key)
        conds = ([f"{k} >= {key_value(low, types)}"] if low else []) + (
            [f"{k} < {key_value(high, types)}"] if high else []
        )
        return " AND ".join(conds) or "TRUE"

    def predicate(self, key: Sequence[str], types: Sequence[str], partitions: Iterable[int]) -> str:
        parts = [self.range_sql(key, types, i) for i in sorted(set(partitions))]
        return "(" + " OR ".join(f"({p})" for p in parts) + ")" if parts else "FALSE"


def boundary_step(rows: int, partition_size: int) -> tuple[float | None, int]:
    """How to pick boundaries from about ``rows`` source rows: (TABLESAMPLE SYSTEM percent or None for
    every row, take every n-th key in key order)."""
    if rows <= EXACT_BOUNDARIES_ROWS:
        return None, partition_size
    partitions = math.ceil(rows / partition_size)
    sample = min(MAX_SAMPLE_ROWS, partitions * SAMPLE_ROWS_PER_PARTITION)
    percent = min(100.0, 100.0 * sample / rows)
    return percent, max(1, round(sample / partitions))
