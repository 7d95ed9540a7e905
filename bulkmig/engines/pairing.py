"""Compare one table across engines (a MySQL/MariaDB or SQLite source, or a MySQL/MariaDB target), value by value.

PostgreSQL → PostgreSQL validation lets both servers hash the same canonical row text; across engines there
is no common text (MySQL prints ``1.5``, ``0000-00-00``, ``a,c``; PostgreSQL ``1.50``, NULL, ``{a,c}``), so
both sides are streamed here, every value is turned into one canonical Python value by its logical type,
and rows are paired by primary key:

- integers → int, decimals → Decimal (equal by value: 1.50 is 1.5), floats → their exact ``repr`` (a float32 column
  is compared as float32: MySQL's text for FLOAT keeps 6 digits, so the source reads it widened to double),
  booleans → bool (MySQL's tinyint(1) 0/1), dates/timestamps → date/datetime (timestamptz in UTC),
  time/interval → timedelta, JSON → parsed (key order and spacing do not count), sets → tuples, CHAR →
  without trailing blanks (both engines ignore them), text → exactly as stored (no trimming, no Unicode
  normalisation: a changed code point is a changed value), bytes → bytes.
- A source value PostgreSQL cannot hold and that the load turned into something else on purpose (a MySQL
  zero date loaded as NULL under ``zero_dates: null``) arrives as :class:`Converted`: it is counted as a
  *converted value*, with its column and key, never as equal and never as a mismatch.
- Integer-like keys sort the same in every engine, so both sides are read ``ORDER BY`` the key and merged
  in one pass, ``CHUNK_ROWS`` at a time (memory stays flat whatever the table's size).  Text keys sort by
  each engine's collation ('_' before or after 'a'; 'B' before or after 'a'), so they are paired through a
  dict instead, split into buckets by key hash and spilled to temporary files when the table is larger than
  ``BUCKET_ROWS``, so memory stays bounded per bucket.  Tables without a primary key are compared as
  multisets of rows (a digest per canonical row, counted).

Each engine's quirks (what to SELECT, how its driver hands values over) live in
``bulkmig/engines/<engine>/compare.py`` (a source's side) and ``engines/<engine>/target/compare.py`` (a target's:
its ``compare`` is what ``bulkmig validate`` calls); this module holds what is common: the pairing and the tally
(the canonical forms are ``bulkmig.core.canonical``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import operator
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bulkmig.core.canonical import (
    Converted,
    RowNormaliser,
    canonical_decimal,
    key_text,
    show,
)

CHUNK_ROWS = 10_000  # rows fetched per round trip on each side
BUCKET_ROWS = 200_000  # rows held in memory at once when pairing through a dict
SPILL_BATCH = 2_000  # rows per pickle when a bucket spills to its temporary file
MAX_SHOWN = 10  # differences shown with their values
MAX_KEYS = 20  # keys listed per kind (differing, converted)

# Logical types whose values sort the same in every engine: keys made of them are merged in order.
ORDERED_LOGICAL = frozenset({"integer", "decimal", "bool", "date", "timestamp", "timestamptz"})

# Source engine -> the module holding its side of the comparison (``connect``, ``select_sql``, ``row_normaliser``).
ENGINE_MODULES = {"mysql": "bulkmig.engines.mysql.compare", "sqlite": "bulkmig.engines.sqlite.compare"}


# ------------------------------------------------------------------------------------------ the tally


@dataclass
class Tally:
    """What one table's comparison found; becomes the foreign fields of ``validate.TableResult``.

    Keys are handed in as they come (a value for a one-column key, a tuple otherwise) and turned into text
    only when something is recorded, so equal rows cost no formatting."""

    columns: list[str]
    single_key: bool = True
    source_rows: int = 0
    target_rows: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    converted: int = 0
    method: str = ""
    differences: list[dict[str, Any]] = field(default_factory=list)
    differing_keys: list[str] = field(default_factory=list)
    conversions: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.differing) and self.source_rows == self.target_rows

    def key_text(self, key: Any) -> str | None:
        if key is None:
            return None
        return key_text((key,) if self.single_key else key)

    def _key(self, key: str | None) -> None:
        if key is not None and len(self.differing_keys) < MAX_KEYS:
            self.differing_keys.append(key)

    def missing_row(self, key: Any, row: tuple[Any, ...], count: int = 1) -> None:
        self.missing += count
        self._row_difference("missing on target", key, row)

    def extra_row(self, key: Any, row: tuple[Any, ...], count: int = 1) -> None:
        self.extra += count
        self._row_difference("extra on target", key, row)

    def _row_difference(self, kind: str, key: Any, row: tuple[Any, ...]) -> None:
        """A whole row on one side only: its key kept, and the row shown while there is room."""
        text = self.key_text(key)
        self._key(text)
        if len(self.differences) < MAX_SHOWN:
            self.differences.append({"key": text, "kind": kind, "row": _show_row(self.columns, row)})

    def convert(self, column: str, value: Converted, key: Any) -> None:
        self.converted += 1
        entry = self.conversions.setdefault(column, {"column": column, "why": value.why, "count": 0, "keys": []})
        entry["count"] += 1
        if len(entry["keys"]) < MAX_KEYS:
            entry["keys"].append(self.key_text(key) if key is not None else f"value {value.original}")

    def pair(self, key: Any, source: tuple[Any, ...], target: tuple[Any, ...]) -> None:
        """Compare two rows with the same key, column by column (equal rows: one tuple comparison)."""
        if source == target and list(map(type, source)) == list(map(type, target)):
            return
        bad = []
        for name, s, t in zip(self.columns, source, target, strict=True):
            if isinstance(s, Converted):
                if t == s.target and type(t) is type(s.target):
                    self.convert(name, s, key)
                    continue
                bad.append({"column": name, "source": show(s), "target": show(t)})
            elif s != t or type(s) is not type(t):
                bad.append({"column": name, "source": show(s), "target": show(t)})
        if bad:
            self.differing += 1
            text = self.key_text(key)
            self._key(text)
            if len(self.differences) < MAX_SHOWN:
                self.differences.append({"key": text, "kind": "differs", "columns": bad})


def _show_row(columns: list[str], row: tuple[Any, ...]) -> dict[str, str]:
    return {name: show(v) for name, v in zip(columns, row, strict=True)}


# ------------------------------------------------------------------------------------------ pairing


class _OutOfOrder(Exception):
    """A side's keys did not come in ascending order (a collation surprise): pair through a dict instead."""


def key_getter(key_idx: list[int]) -> Callable[[tuple[Any, ...]], Any]:
    """The key of a row: the value itself for a one-column key, else a tuple (``operator.itemgetter``)."""
    return operator.itemgetter(*key_idx)


def _ordered(rows: Iterable[tuple[Any, ...]], key_idx: list[int]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """(key, row) in the order given, checking that keys strictly ascend; NULLs and keys of kinds that do
    not compare (a Converted zero date, text in an integer key) have no order to trust."""
    get = key_getter(key_idx)
    last: Any = _START
    for row in rows:
        key = get(row)
        try:
            if key is None or (len(key_idx) > 1 and None in key) or not last < key:
                raise _OutOfOrder
        except TypeError:
            raise _OutOfOrder from None
        last = key
        yield key, row


class _Start:
    """Less than any key: the first key of a stream is in order."""

    def __lt__(self, other: Any) -> bool:
        return True


_START = _Start()


def merge(
    source: Iterable[tuple[Any, ...]], target: Iterable[tuple[Any, ...]], key_idx: list[int], tally: Tally
) -> None:
    """One pass over two key-ordered streams.  Raises :class:`_OutOfOrder` when the keys cannot be merged
    (not ascending on a side, or of kinds that do not compare): the caller pairs through a dict instead."""
    src, tgt = _ordered(source, key_idx), _ordered(target, key_idx)
    s, t = next(src, None), next(tgt, None)
    while s is not None and t is not None:
        try:
            if s[0] == t[0]:
                tally.pair(s[0], s[1], t[1])
                tally.source_rows += 1
                tally.target_rows += 1
                s, t = next(src, None), next(tgt, None)
            elif s[0] < t[0]:
                tally.source_rows += 1
                tally.missing_row(s[0], s[1])
                s = next(src, None)
            else:
                tally.target_rows += 1
                tally.extra_row(t[0], t[1])
                t = next(tgt, None)
        except TypeError:
            raise _OutOfOrder from None
    while s is not None:
        tally.source_rows += 1
        tally.missing_row(s[0], s[1])
        s = next(src, None)
    while t is not None:
        tally.target_rows += 1
        tally.extra_row(t[0], t[1])
        t = next(tgt, None)


def _as_target(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row the target should hold: converted values replaced by what they were converted to."""
    return tuple(v.target if isinstance(v, Converted) else v for v in row)


def _digest(row: tuple[Any, ...]) -> bytes:
    """A row's identity for multiset comparison: one spelling per value (decimals without trailing zeros)."""
    spelled = tuple(canonical_decimal(v) if type(v) is Decimal else v for v in row)
    return hashlib.blake2b(repr(spelled).encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Buckets:
    """Rows spread over ``n`` buckets by key hash: a list in memory when n == 1, else temporary files
    (written in pickled batches of ``SPILL_BATCH`` rows: one pickle per row costs twice as much)."""

    def __init__(self, n: int, directory: Path) -> None:
        self.n = n
        self.pending: list[list[tuple[Any, Any]]] = [[] for _ in range(n)]
        self.files: list[Any] = []
        if n > 1:
            directory.mkdir()
            self.files = [open(directory / f"b{i}", "w+b") for i in range(n)]  # noqa: SIM115

    def add(self, key: Any, row: tuple[Any, ...]) -> None:
        if not self.files:
            self.pending[0].append((key, row))
            return
        i = hash(key) % self.n
        batch = self.pending[i]
        batch.append((key, row))
        if len(batch) >= SPILL_BATCH:
            pickle.dump(batch, self.files[i], pickle.HIGHEST_PROTOCOL)
            self.pending[i] = []

    def bucket(self, i: int) -> Iterator[tuple[Any, Any]]:
        if self.files:
            f = self.files[i]
            f.seek(0)
            while True:
                try:
                    yield from pickle.load(f)
                except EOFError:
                    break
            f.close()
        yield from self.pending[i]
        self.pending[i] = []

    def close(self) -> None:
        for f in self.files:
            f.close()


def hash_join(
    source: Iterable[tuple[Any, ...]],
    target: Iterable[tuple[Any, ...]],
    key_idx: list[int] | None,
    tally: Tally,
    expected_rows: int,
) -> None:
    """Pair rows through a dict, bucket by bucket.  ``key_idx`` None: no primary key, so the whole row is the
    key and rows are counted (a multiset).  Buckets spill to temporary files above ``BUCKET_ROWS`` rows."""
    n = max(1, math.ceil(expected_rows / BUCKET_ROWS))
    get = key_getter(key_idx) if key_idx else None
    with tempfile.TemporaryDirectory(prefix="bulkmig-validate-") as tmp:
        src, tgt = _Buckets(n, Path(tmp) / "s"), _Buckets(n, Path(tmp) / "t")
        try:
            for row in source:
                tally.source_rows += 1
                if get is None:
                    for name, v in zip(tally.columns, row, strict=True):
                        if isinstance(v, Converted):
                            tally.convert(name, v, None)
                    row = _as_target(row)
                    src.add(_digest(row), row)
                else:
                    src.add(_key_value(get(row)), row)
            for row in target:
                tally.target_rows += 1
                tgt.add(_digest(row) if get is None else get(row), row)
            for i in range(n):
                _join_bucket(src.bucket(i), tgt.bucket(i), get is None, tally)
        finally:
            src.close()
            tgt.close()


def _key_value(key: Any) -> Any:
    """A key with any Converted part replaced by its source text (a zero date in a key pairs with nothing)."""
    if isinstance(key, Converted):
        return key.original
    if isinstance(key, tuple) and any(isinstance(v, Converted) for v in key):
        return tuple(v.original if isinstance(v, Converted) else v for v in key)
    return key


def _join_bucket(
    source: Iterable[tuple[Any, Any]], target: Iterable[tuple[Any, Any]], multiset: bool, tally: Tally
) -> None:
    if multiset:
        counts: dict[Any, list[Any]] = {}
        for digest, row in source:
            entry = counts.setdefault(digest, [0, row])
            entry[0] += 1
        for digest, row in target:
            entry = counts.get(digest)
            if entry is None or entry[0] == 0:
                tally.extra_row(None, row)
            else:
                entry[0] -= 1
        for count, row in counts.values():
            if count:
                tally.missing_row(None, row, count)
        return
    rows: dict[Any, tuple[Any, ...]] = {}
    for key, row in source:
        if key in rows and len(tally.notes) < MAX_SHOWN:
            tally.notes.append(f"key {tally.key_text(key)} appears twice on the source (after normalisation)")
        rows[key] = row
    for key, row in target:
        s = rows.pop(key, None)
        if s is None:
            tally.extra_row(key, row)
        else:
            tally.pair(key, s, row)
    for key, row in rows.items():
        tally.missing_row(key, row)


# ------------------------------------------------------------------------------------------ one table


def engine_module(engine: str) -> Any:
    """The source engine's side of the comparison: ``connect(endpoint)`` (a DB-API connection whose
    cursors stream), ``select_sql(table, columns, ordered)`` and ``row_normaliser(columns)`` (the selected
    row → one canonical value per column)."""
    try:
        return importlib.import_module(ENGINE_MODULES[engine])
    except KeyError:
        raise ValueError(f"no cross-engine comparison for {engine!r} sources") from None


def stream_rows(cursor: Any, sql: str, normalise: RowNormaliser) -> Iterator[tuple[Any, ...]]:
    cursor.execute(sql)
    while chunk := cursor.fetchmany(CHUNK_ROWS):
        for row in chunk:
            yield normalise(row)


RowStreams = tuple[Iterator[tuple[Any, ...]], Iterator[tuple[Any, ...]]]


def pair_streams(
    tally: Tally,
    key_idx: list[int] | None,
    mergeable: bool,
    expected: int,
    streams: Callable[[bool], contextlib.AbstractContextManager[RowStreams]],
) -> Tally:
    """Pair a table's source and target rows into a fresh :class:`Tally` like ``tally``: by a merge of both sides
    in key order when the key sorts alike on both (``mergeable``), else (or when the merge finds rows out of
    order) by a hash join on the key, or a multiset of whole rows without one.  ``streams(ordered)`` opens the
    two normalised row streams, ordered by the key or not, and closes their connections after."""

    def run(ordered: bool) -> Tally:
        method = "merge" if ordered else ("multiset" if key_idx is None else "hash")
        result = Tally(tally.columns, single_key=tally.single_key, method=method)
        with streams(ordered) as (s_rows, t_rows):
            if ordered:
                assert key_idx is not None
                merge(s_rows, t_rows, key_idx, result)
            else:
                hash_join(s_rows, t_rows, key_idx, result, expected)
        return result

    if mergeable:
        try:
            return run(True)
        except _OutOfOrder:
            pass  # rare (a key with NULLs or mixed kinds); fall through to the dict
    return run(False)
